"""Retention: signed, chained archive files; verification and evidence export run on across them into the database."""

from __future__ import annotations

import shutil
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from store_support import raw
from test_audit import FlakySigner, fill_to, tamper
from test_audit_evidence import offline_verify

from gateway.audit import (
    ArchiveError,
    Sealer,
    archive,
    export_case,
)
from gateway.audit import verify_store as verify


def db_seqs(db: Any) -> tuple[int, int, int]:
    return tuple(raw(db).one("SELECT min(seq), max(seq), count(*) FROM audit"))  # type: ignore[return-value]


async def test_archive_moves_sealed_entries_out_and_verification_runs_across(store, signer, trusted, tmp_path) -> None:
    await fill_to(store, 1000, cases=9)
    await Sealer(store, signer, max_entries=150).seal_now()  # seals end at 150, 300, 450, 600, …
    head = (await store.audit_head())[0]  # 1000 entries and the chain's records of the seals
    seals = len(await store.list_seals())
    unsealed = head - (await store.audit_seal_head()).to_seq
    out = await archive(store, tmp_path / "archives", signer=signer, before_seq=500)
    assert out.row is not None and (out.row.from_seq, out.row.to_seq) == (1, 450)
    assert (out.row.first_seal, out.row.last_seal) == (1, 3) and out.deleted == 450
    assert out.path and out.path.exists() and out.path.parent == tmp_path / "archives"
    # the database forgot the entries and their seals, and chained an "archived" entry
    assert db_seqs(store) == (451, head + 1, head + 1 - 450)
    last = (await store.audit_entries(after_seq=head))[0].decoded()
    assert last["action"] == "archived" and last["detail"]["to_seq"] == 450
    assert [s.seal for s in await store.list_seals()][0] == 4
    # across the archive and the database: one unbroken chain, every seal checked
    report = await verify(store, archives_dir=tmp_path / "archives", trusted=trusted)
    assert report.ok, report.render()
    assert report.archives_checked == 1 and report.entries_checked == head + 1 and report.seals_checked == seals
    assert (report.first_seq, report.last_seq) == (1, head + 1) and report.unsealed_entries == unsealed + 1
    # without the archives the database part still verifies, and the report says what was not checked
    partial = await verify(store, trusted=trusted)
    assert partial.ok and partial.entries_checked == head + 1 - 450
    assert any("1..450 are in 1 archive file(s) and were not checked" in n for n in partial.notes)


async def test_archives_chain_to_each_other_and_verify_offline_as_a_series(store, signer, trusted, tmp_path) -> None:
    await fill_to(store, 600)
    await Sealer(store, signer, max_entries=100).seal_now()
    first = await archive(store, tmp_path / "a", signer=signer, before_seq=250)
    await fill_to(store, 800)
    await Sealer(store, signer, max_entries=100).seal_now()
    second = await archive(store, tmp_path / "a", signer=signer, before_seq=700)
    assert first.row and second.row and second.row.from_seq == first.row.to_seq + 1
    assert (await verify(store, archives_dir=tmp_path / "a", trusted=trusted)).ok
    shutil.copy(tmp_path / "certs" / "audit-seal.crt", tmp_path / "a" / "trusted.crt")
    result = offline_verify(tmp_path / "a", first.row.file, second.row.file, "--cert", "trusted.crt")
    assert result.returncode == 0, result.stdout
    assert "VERDICT: VERIFIED" in result.stdout
    # out of order, the second does not link to the first
    result = offline_verify(tmp_path / "a", second.row.file, first.row.file, "--cert", "trusted.crt")
    assert result.returncode == 1 and "does not link to" in result.stdout


async def test_a_changed_archive_is_named_by_the_verifier(store, signer, trusted, tmp_path) -> None:
    await fill_to(store, 400)
    await Sealer(store, signer, max_entries=100).seal_now()
    out = await archive(store, tmp_path / "a", signer=signer, before_seq=300)
    assert out.path is not None
    with zipfile.ZipFile(out.path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    lines = members["entries.jsonl"].split(b"\n")
    lines[41] = lines[41].replace(b"county", b"c0unty")
    members["entries.jsonl"] = b"\n".join(lines)
    with zipfile.ZipFile(out.path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    report = await verify(store, archives_dir=tmp_path / "a", trusted=trusted)
    assert report.first_problem == f"archive 1 ({out.row.file}): entry 42: hash does not match its body"
    shutil.copy(tmp_path / "certs" / "audit-seal.crt", tmp_path / "a" / "trusted.crt")
    result = offline_verify(tmp_path / "a", out.row.file, "--cert", "trusted.crt")
    assert result.returncode == 1 and "entry 42: hash does not match its body" in result.stdout


async def test_a_missing_archive_file_is_named(store, signer, trusted, tmp_path) -> None:
    await fill_to(store, 200)
    await Sealer(store, signer, max_entries=50).seal_now()
    out = await archive(store, tmp_path / "a", signer=signer, before_seq=150)
    assert out.path is not None
    out.path.unlink()
    report = await verify(store, archives_dir=tmp_path / "a", trusted=trusted)
    assert report.first_problem == f"archive 1 ({out.row.file}): file not found in {tmp_path / 'a'}"


async def test_evidence_export_finds_a_case_in_archives_and_the_database(store, signer, tmp_path) -> None:
    await fill_to(store, 600, cases=10)
    await Sealer(store, signer, max_entries=100).seal_now()
    before = set(await store.audit_case_seqs("C5"))
    await archive(store, tmp_path / "a", signer=signer, before_seq=350)
    await fill_to(store, 700, cases=10)
    await Sealer(store, signer, max_entries=100).seal_now()
    expected = before | set(await store.audit_case_seqs("C5"))
    assert min(expected) < 300 < max(expected) and max(expected) > 600
    bundle = tmp_path / "a" / "C5.json"
    summary = await export_case(store, "C5", bundle, archives_dir=tmp_path / "a")
    assert summary.entries == len(expected) and summary.provable == summary.entries
    only_db = await export_case(store, "C5", tmp_path / "a" / "C5-db.json")
    assert only_db.entries < summary.entries and any("not" in n and "searched" in n for n in only_db.notes)
    shutil.copy(tmp_path / "certs" / "audit-seal.crt", tmp_path / "a" / "trusted.crt")
    result = offline_verify(tmp_path / "a", "C5.json", "--cert", "trusted.crt")
    assert result.returncode == 0, result.stdout


async def test_pending_seals_are_never_archived(store, signer, tmp_path) -> None:
    flaky = FlakySigner(signer)
    await fill_to(store, 200)
    await Sealer(store, flaky, max_entries=50).seal_now()  # seals 1..4, and 5 over their records: signed
    signed = await store.audit_seal_head()
    flaky.down = True
    await fill_to(store, 400)
    await Sealer(store, flaky, max_entries=50).seal_now()  # seals 6.. pending
    out = await archive(store, tmp_path / "a", signer=signer, before_seq=10_000)
    assert out.row is not None and out.row.to_seq == signed.to_seq and out.row.last_seal == signed.seal == 5
    again = await archive(store, tmp_path / "a", signer=signer, before_seq=10_000)
    assert again.row is None and again.message == "nothing to archive: seal 6 is not signed yet; archiving stops before it"


async def test_archive_refuses_a_broken_range_and_deletes_nothing(store, signer, tmp_path) -> None:
    await fill_to(store, 200)
    await Sealer(store, signer, max_entries=50).seal_now()
    body = bytes(raw(store).value("SELECT body FROM audit WHERE seq=30"))
    tamper(store, "UPDATE audit SET body=? WHERE seq=30", body.replace(b"county", b"c0unty"))
    head = (await store.audit_head())[0]
    with pytest.raises(ArchiveError, match="entry 30: hash does not match its body"):
        await archive(store, tmp_path / "a", signer=signer, before_seq=150)
    assert db_seqs(store) == (1, head, head)
    assert not list((tmp_path / "a").glob("*"))


async def test_archive_refuses_when_the_signer_is_down_and_deletes_nothing(store, signer, tmp_path) -> None:
    flaky = FlakySigner(signer)
    await fill_to(store, 100)
    await Sealer(store, flaky).seal_now()
    flaky.down = True
    head = (await store.audit_head())[0]
    with pytest.raises(ArchiveError, match="signer is unavailable"):
        await archive(store, tmp_path / "a", signer=flaky, before_seq=1000)
    assert db_seqs(store) == (1, head, head)
    assert not list((tmp_path / "a").glob("*"))


async def test_archive_by_age(store, signer, trusted, tmp_path) -> None:
    await fill_to(store, 120)
    await Sealer(store, signer, max_entries=40).seal_now()
    sealed = await store.audit_seal_head()
    young = await archive(store, tmp_path / "a", signer=signer, older_than=timedelta(days=30))
    assert young.row is None and "not older than" in young.message
    old = await archive(store, tmp_path / "a", signer=signer, older_than=timedelta(seconds=0))
    assert old.row is not None and old.row.to_seq == sealed.to_seq
    assert (await verify(store, archives_dir=tmp_path / "a", trusted=trusted)).ok
