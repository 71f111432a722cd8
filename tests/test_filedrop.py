"""The file-drop source: completion conventions, stability, claim/done/error moves, resume after a crash."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters import (
    FileIngestResult,
    IngestOutcome,
    RawRecord,
    StoreUnavailable,
    discover,
    validate_config,
)
from gateway.pipeline.fileingest import ingest_file_with
from gateway_adapters.filedrop import ADAPTER, FiledropConfig, FiledropSource, original_name

SAMPLES = Path(__file__).parent / "samples" / "files"


class Crash(BaseException):
    """The process dies here: nothing after this point runs, nothing not committed survives."""


@dataclass
class FakeStore:
    """What survives a crash: the committed records and cursors (one transaction per ingest call)."""

    records: list[RawRecord] = field(default_factory=list)
    cursors: dict[str, str] = field(default_factory=dict)
    commits: list[tuple[int, tuple[str, str] | None]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # audit entries of the source

    def refs(self) -> list[str]:
        return [record.ref for record in self.records]


class FakeContext:
    """An in-memory SourceContext.  ``crash_before`` / ``crash_after`` name the ingest call (from 1) at
    which the process dies before or after its transaction commits; ``fail_calls`` raise ``failure``
    (an ordinary error, not a store outage) and ``outage_calls`` raise StoreUnavailable, without committing."""

    def __init__(
        self,
        store: FakeStore,
        options: Mapping[str, Any] | None = None,
        *,
        system: str = "county",
        crash_before: int | None = None,
        crash_after: int | None = None,
        fail_calls: Sequence[int] = (),
        outage_calls: Sequence[int] = (),
        failure: Exception | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.system = system
        self.data_dir = data_dir or Path(".")
        self.log = logging.getLogger(f"test.filedrop.{system}")
        self.stopping = asyncio.Event()
        self.store = store
        self.options = dict(options or {})
        self.crash_before = crash_before
        self.crash_after = crash_after
        self.fail_calls = set(fail_calls)
        self.outage_calls = set(outage_calls)
        self.failure = failure or ConnectionError("database is locked")
        self.calls = 0

    async def ingest(
        self, records: Sequence[RawRecord], *, cursor: tuple[str, str] | None = None
    ) -> list[IngestOutcome]:
        self.calls += 1
        if self.calls == self.crash_before:
            raise Crash(f"killed before commit of call {self.calls}")
        if self.calls in self.fail_calls:
            raise self.failure
        if self.calls in self.outage_calls:
            raise StoreUnavailable("the store could not commit (disk I/O error); nothing was committed")
        await asyncio.sleep(0)
        self.store.records.extend(records)
        if cursor is not None:
            self.store.cursors[cursor[0]] = cursor[1]
        self.store.commits.append((len(records), cursor))
        if self.calls == self.crash_after:
            raise Crash(f"killed after commit of call {self.calls}")
        return [IngestOutcome(ref=r.ref, status="quarantined" if r.error else "accepted") for r in records]

    async def ingest_file(self, path: Path, *, ref_prefix: str, cursor: str, batch: int = 1000) -> FileIngestResult:
        return await ingest_file_with(self, path, ref_prefix=ref_prefix, cursor=cursor, batch=batch)

    async def get_cursor(self, name: str) -> str | None:
        return self.store.cursors.get(name)

    async def audit(self, action: str, detail: Mapping[str, Any]) -> None:
        self.store.events.append((action, dict(detail)))

    def input_options(self) -> Mapping[str, Any]:
        return self.options


def make_config(root: Path, **overrides: Any) -> FiledropConfig:
    options = {
        "path": str(root),
        "stability_seconds": 0.05,
        "poll_interval": 0.02,
        "instance": "gw1",
        **overrides,
    }
    return FiledropConfig.model_validate(options)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def run_until(
    source: FiledropSource, ctx: FakeContext, done: Callable[[], bool], timeout: float = 10.0
) -> BaseException | None:
    """Run the source until ``done()`` holds (then stop it) or it dies; return what killed it, if anything."""
    task = asyncio.create_task(source.run(ctx))
    deadline = asyncio.get_running_loop().time() + timeout
    while not done() and not task.done():
        if asyncio.get_running_loop().time() > deadline:
            ctx.stopping.set()
            await task
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
    ctx.stopping.set()
    try:
        await asyncio.wait_for(task, timeout=5)
    except Crash as crash:
        return crash
    return None


def csv_file(path: Path, rows: int, *, start: int = 1) -> Path:
    lines = ["SBLSH,SQRMC"] + [f"{n:06d},申请人{n}" for n in range(start, start + rows)]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="gb18030")
    return path


# --------------------------------------------------------------------------- adapter object


def test_adapter_is_registered_under_its_entry_point_and_validates_config(tmp_path: Path) -> None:
    assert discover(["filedrop"])["filedrop"] is ADAPTER
    config = validate_config(ADAPTER.source_config, {"path": "drop"}, tmp_path)
    assert config.path == tmp_path / "drop" and config.batch_size == 1000 and config.completion == "rename"
    with pytest.raises(ValueError, match="extra"):
        validate_config(ADAPTER.source_config, {"path": "drop", "folder": "x"}, tmp_path)
    with pytest.raises(ValueError, match="completion"):
        validate_config(ADAPTER.source_config, {"path": "drop", "completion": "lock"}, tmp_path)


# --------------------------------------------------------------------------- conventions


async def test_rename_convention_ignores_temporary_names_and_takes_the_renamed_file(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    for name in (".cases.csv", "cases.csv.tmp", "cases.csv.part", "~cases.csv", "notes.txt"):
        csv_file(root / name, 2)
    store = FakeStore()
    source = FiledropSource("county", make_config(root, include=["*.csv"]))
    ctx = FakeContext(store)

    task = asyncio.create_task(source.run(ctx))
    await asyncio.sleep(0.3)
    assert store.records == []  # nothing complete yet
    os.rename(root / "cases.csv.part", root / "cases.csv")
    while not listing(root / "done"):
        await asyncio.sleep(0.01)
    ctx.stopping.set()
    await task

    assert store.refs() == ["cases.csv line 2", "cases.csv line 3"]
    assert store.records[0].payload == {"SBLSH": "000001", "SQRMC": "申请人1"}
    assert store.records[0].system == "county"
    assert [original_name(name) for name in listing(root / "done")] == ["cases.csv"]
    assert sorted(listing(root)) == sorted(
        [".cases.csv", "cases.csv.tmp", "~cases.csv", "notes.txt", "processing", "done", "error"]
    )
    assert listing(root / "processing" / "gw1") == []


async def test_marker_convention_waits_for_the_marker_and_removes_it(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    csv_file(root / "cases.csv", 3)
    store = FakeStore()
    source = FiledropSource("county", make_config(root, completion="marker"))
    ctx = FakeContext(store)

    task = asyncio.create_task(source.run(ctx))
    await asyncio.sleep(0.3)
    assert store.records == [] and (root / "cases.csv").exists()
    (root / "cases.csv.done").write_bytes(b"")
    while not listing(root / "done"):
        await asyncio.sleep(0.01)
    ctx.stopping.set()
    await task

    assert len(store.records) == 3
    assert not (root / "cases.csv.done").exists()
    assert not (root / "cases.csv").exists()


async def test_a_file_still_growing_is_not_claimed_until_it_is_stable(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    store = FakeStore()
    source = FiledropSource("county", make_config(root, stability_seconds=0.4, poll_interval=0.05))
    ctx = FakeContext(store)
    path = root / "growing.csv"
    path.write_text("SBLSH,SQRMC\r\n", encoding="utf-8")

    task = asyncio.create_task(source.run(ctx))
    for n in range(1, 16):  # 15 appends, 0.05 s apart: longer than the stability window in total
        await asyncio.sleep(0.05)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{n},x\r\n")
        assert path.exists(), f"claimed while still growing (after {n} appends)"
    while not listing(root / "done"):
        await asyncio.sleep(0.02)
    ctx.stopping.set()
    await task

    assert len(store.records) == 15  # the whole file, not the part written when it was first seen


# --------------------------------------------------------------------------- formats through the source


@pytest.mark.parametrize("sample", ["cases_gb18030.csv", "cases_utf8_bom.csv", "cases_utf8.csv"])
async def test_csv_exports_in_each_encoding_arrive_with_chinese_fields(tmp_path: Path, sample: str) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    (root / sample).write_bytes((SAMPLES / sample).read_bytes())
    store = FakeStore()
    source = FiledropSource("county", make_config(root))
    await run_until(
        source,
        FakeContext(store, {"format": "csv", "encoding": "auto"}),
        lambda: bool(listing(root / "done")),
    )

    assert [r.payload["申请人名称"] for r in store.records][0] == "烟台市某某食品有限公司"
    assert store.records[2].payload["申请人名称"] == '某某"商贸"有限公司'
    assert store.refs() == [f"{sample} line {n}" for n in (2, 3, 5)]  # row 2 spans lines 3-4


async def test_bad_csv_rows_are_error_records_and_the_file_still_goes_to_done(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    good = [f"{n},申请人{n}" for n in range(1, 7)]
    good[2] = "3,申请人3,多余"  # wrong column count
    data = ("SBLSH,SQRMC\r\n" + "\r\n".join(good) + "\r\n").encode("gb18030")
    data = data.replace("5,申请人5".encode("gb18030"), b"5,\xff\xfe")
    (root / "export.csv").write_bytes(data)
    store = FakeStore()
    await run_until(
        FiledropSource("county", make_config(root)), FakeContext(store), lambda: bool(listing(root / "done"))
    )

    by_ref = {r.ref: r for r in store.records}
    assert len(store.records) == 6
    assert by_ref["export.csv line 4"].error.startswith("line 4 has 3 columns where the header has 2: 1 extra value")
    assert by_ref["export.csv line 4"].rule == "csv_columns"
    assert by_ref["export.csv line 4"].payload == {}
    assert by_ref["export.csv line 6"].error.startswith("line 6: ") and "byte offset" in by_ref["export.csv line 6"].error
    assert by_ref["export.csv line 7"].payload == {"SBLSH": "6", "SQRMC": "申请人6"}
    assert by_ref["export.csv line 7"].raw == "6,申请人6".encode("gb18030")
    assert listing(root / "error") == []


async def test_malformed_xml_tail_ingests_the_records_before_it_plus_one_error(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    (root / "cases.xml").write_bytes(
        b"<DATAS><APPROVEDATAINFO><SBLSH>1</SBLSH></APPROVEDATAINFO><APPROVEDATAINFO><SBLSH>2</SBLSH>"
        b"</APPROVEDATAINFO><APPROVEDATAINFO><SBLSH>3</SB"
    )
    store = FakeStore()
    options = {"format": "xml", "record": "APPROVEDATAINFO"}
    await run_until(
        FiledropSource("county", make_config(root)),
        FakeContext(store, options),
        lambda: bool(listing(root / "done")),
    )

    assert [r.payload.get("SBLSH") for r in store.records[:2]] == ["1", "2"]
    assert len(store.records) == 3
    assert store.records[2].ref.startswith("cases.xml line 1 column ")
    assert "not well-formed" in store.records[2].error


# --------------------------------------------------------------------------- files refused whole


async def test_xxe_file_goes_to_error_with_a_report_and_the_secret_appears_nowhere(
    tmp_path: Path, caplog
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-d41d8cd9", encoding="utf-8")
    root = tmp_path / "drop"
    root.mkdir()
    (root / "evil.xml").write_bytes(
        f'<?xml version="1.0"?><!DOCTYPE DATAS [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'
        f"<DATAS><APPROVEDATAINFO><SQRMC>&xxe;</SQRMC></APPROVEDATAINFO></DATAS>".encode()
    )
    (root / "bomb.xml").write_bytes((SAMPLES / "billion_laughs.xml").read_bytes())
    store = FakeStore()
    options = {"format": "xml", "record": "APPROVEDATAINFO"}
    caplog.set_level(logging.DEBUG)
    await run_until(
        FiledropSource("county", make_config(root)),
        FakeContext(store, options),
        lambda: len(listing(root / "error")) == 4,
    )

    assert store.records == []
    errors = listing(root / "error")
    assert sorted(original_name(n) for n in errors) == [
        "bomb.xml",
        "bomb.xml.error.txt",
        "evil.xml",
        "evil.xml.error.txt",
    ]
    for report_name in (n for n in errors if n.endswith(".error.txt")):
        report = (root / "error" / report_name).read_text(encoding="utf-8")
        assert "system: county" in report
        assert f"file: {original_name(report_name).removesuffix('.error.txt')}" in report
        assert "DTD/entity declarations are refused" in report
        assert "time: 20" in report
    everything = "".join(
        (root / "error" / n).read_text(encoding="utf-8", errors="replace")
        for n in errors
        if n.endswith(".txt")
    )
    everything += caplog.text + repr(store.records)
    assert "TOP-SECRET" not in everything
    assert listing(root / "done") == [] and listing(root / "processing" / "gw1") == []


async def test_unknown_format_goes_to_error_with_the_reason(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    (root / "report.dat").write_bytes(b"\x00\x01")
    store = FakeStore()
    await run_until(
        FiledropSource("county", make_config(root, include=["*"])),
        FakeContext(store),
        lambda: len(listing(root / "error")) == 2,
    )
    report = next((root / "error").glob("*.error.txt")).read_text(encoding="utf-8")
    assert "unknown format" in report and "file: report.dat" in report


# --------------------------------------------------------------------------- crashes and resume


def ten_items(root: Path) -> Path:
    return csv_file(root / "cases.csv", 10)


EXPECTED = [f"cases.csv line {n}" for n in range(2, 12)]


@pytest.mark.parametrize(
    "crash",
    [{"crash_before": n} for n in (1, 2, 3, 4)] + [{"crash_after": n} for n in (1, 2, 3, 4)],
    ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()),
)
async def test_resume_after_a_crash_mid_file_loses_nothing_and_repeats_nothing(
    tmp_path: Path, crash: dict[str, int]
) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    ten_items(root)
    store = FakeStore()
    config = make_config(root, batch_size=3)  # 4 batches: 3 + 3 + 3 + 1

    with pytest.raises(Crash):
        await asyncio.wait_for(FiledropSource("county", config).run(FakeContext(store, **crash)), timeout=5)
    claimed = listing(root / "processing" / "gw1")
    assert len(claimed) == 1  # the file waits in processing/ for the next start
    committed_before = len(store.records)

    # The next start of the gateway: a new source object and context over the same store.
    await run_until(
        FiledropSource("county", config), FakeContext(store), lambda: bool(listing(root / "done"))
    )

    assert store.refs() == EXPECTED
    assert len(store.records) >= committed_before
    assert listing(root / "done") == claimed
    assert store.cursors == {f"filedrop:county:{claimed[0]}": "10"}


async def test_crash_between_claim_and_first_commit_resumes_from_processing(
    tmp_path: Path, monkeypatch
) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    ten_items(root)
    store = FakeStore()
    config = make_config(root, batch_size=4)
    source = FiledropSource("county", config)

    async def die(ctx: Any, claimed: str) -> None:
        raise Crash("killed just after the claim")

    monkeypatch.setattr(source, "_process", die)
    with pytest.raises(Crash):
        await asyncio.wait_for(source.run(FakeContext(store)), timeout=5)
    assert len(listing(root / "processing" / "gw1")) == 1 and not (root / "cases.csv").exists()

    await run_until(
        FiledropSource("county", config), FakeContext(store), lambda: bool(listing(root / "done"))
    )
    assert store.refs() == EXPECTED


async def test_crash_before_the_move_to_done_only_moves_the_file_on_resume(
    tmp_path: Path, monkeypatch
) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    ten_items(root)
    store = FakeStore()
    config = make_config(root, batch_size=4)
    source = FiledropSource("county", config)

    def die(claimed: str) -> None:
        raise Crash("killed before rename to done/")

    monkeypatch.setattr(source, "_finish", die)
    with pytest.raises(Crash):
        await asyncio.wait_for(source.run(FakeContext(store)), timeout=5)
    assert store.refs() == EXPECTED

    resumed = FakeContext(store)
    await run_until(FiledropSource("county", config), resumed, lambda: bool(listing(root / "done")))
    assert store.refs() == EXPECTED
    assert resumed.calls == 0  # nothing left to ingest


async def test_stale_marker_left_by_a_crash_is_removed_on_resume(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    ten_items(root)
    (root / "cases.csv.done").write_bytes(b"")
    store = FakeStore()
    config = make_config(root, completion="marker")
    source = FiledropSource("county", config)
    real_unlink = Path.unlink

    def die_on_marker(self: Path, missing_ok: bool = False) -> None:
        if self.name == "cases.csv.done":
            raise Crash("killed between claim and marker removal")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", die_on_marker)
    with pytest.raises(Crash):
        await asyncio.wait_for(source.run(FakeContext(store)), timeout=5)
    monkeypatch.setattr(Path, "unlink", real_unlink)
    assert (root / "cases.csv.done").exists() and not (root / "cases.csv").exists()

    await run_until(
        FiledropSource("county", config), FakeContext(store), lambda: bool(listing(root / "done"))
    )
    assert not (root / "cases.csv.done").exists()
    assert store.refs() == EXPECTED


async def test_a_failing_ingest_keeps_the_file_in_processing_and_retries_it(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    ten_items(root)
    store = FakeStore()
    source = FiledropSource("county", make_config(root, batch_size=3))
    ctx = FakeContext(store, fail_calls=(2, 3))

    await run_until(source, ctx, lambda: bool(listing(root / "done")))

    assert store.refs() == EXPECTED
    assert source.stats.ingest_failures == 2 and source.stats.done == 1
    assert "database is locked" in (source.stats.last_error or "")


async def test_a_store_outage_is_waited_out_however_long_it_lasts_and_the_file_completes(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    ten_items(root)
    store = FakeStore()
    source = FiledropSource("county", make_config(root, batch_size=3, max_attempts=2, poll_interval="1ms"))
    ctx = FakeContext(store, outage_calls=range(2, 8))  # six failed commits in a row, max_attempts is 2

    await run_until(source, ctx, lambda: bool(listing(root / "done")))

    assert store.refs() == EXPECTED and listing(root / "error") == []
    assert source.stats.ingest_failures == 6 and source.stats.done == 1


async def test_a_file_that_keeps_failing_for_another_reason_goes_to_error_with_a_report(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    ten_items(root)
    store = FakeStore()
    source = FiledropSource("county", make_config(root, batch_size=3, max_attempts=3, poll_interval="1ms"))
    died = RuntimeError("the helper process reading cases.csv died (exit code -9)")
    ctx = FakeContext(store, fail_calls=range(2, 100), failure=died)

    await run_until(source, ctx, lambda: bool(listing(root / "error")))

    (claimed,) = [name for name in listing(root / "error") if not name.endswith(".error.txt")]
    report = (root / "error" / f"{claimed}.error.txt").read_text(encoding="utf-8")
    assert "failed 3 times (max_attempts = 3), last: RuntimeError: the helper process reading" in report
    assert "items committed before the failure: 3" in report
    assert listing(root / "processing" / "gw1") == [] and source.stats.failed == 1
    assert [action for action, _ in store.events].count("file_rejected") == 1


async def test_stop_is_prompt_between_batches_and_the_next_start_continues(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    csv_file(root / "big.csv", 5000)
    store = FakeStore()
    config = make_config(root, batch_size=100)
    ctx = FakeContext(store)
    task = asyncio.create_task(FiledropSource("county", config).run(ctx))
    while len(store.records) < 300:
        await asyncio.sleep(0.001)
    ctx.stopping.set()
    await asyncio.wait_for(task, timeout=1)
    assert len(store.records) < 5000
    assert len(listing(root / "processing" / "gw1")) == 1

    await run_until(
        FiledropSource("county", config), FakeContext(store), lambda: bool(listing(root / "done"))
    )
    assert store.refs() == [f"big.csv line {n}" for n in range(2, 5002)]


async def test_two_gateways_on_one_drop_folder_never_take_the_same_file(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    for n in range(30):
        csv_file(root / f"f{n:02d}.csv", 5, start=n * 5 + 1)
    store = FakeStore()
    first = FiledropSource("county", make_config(root, instance="gw1", stability_seconds=0))
    second = FiledropSource("county", make_config(root, instance="gw2", stability_seconds=0))
    ctx1, ctx2 = FakeContext(store), FakeContext(store)
    tasks = [asyncio.create_task(first.run(ctx1)), asyncio.create_task(second.run(ctx2))]
    while len(listing(root / "done")) < 30:
        await asyncio.sleep(0.01)
    ctx1.stopping.set()
    ctx2.stopping.set()
    await asyncio.gather(*tasks)

    assert sorted(store.refs()) == sorted(f"f{n:02d}.csv line {r}" for n in range(30) for r in range(2, 7))
    assert first.stats.done + second.stats.done == 30


async def test_a_missing_drop_folder_is_waited_for_not_created(tmp_path: Path, caplog) -> None:
    root = tmp_path / "mnt" / "drop"
    store = FakeStore()
    source = FiledropSource("county", make_config(root))
    ctx = FakeContext(store)
    task = asyncio.create_task(source.run(ctx))
    await asyncio.sleep(0.15)
    assert not root.exists()  # creating it would watch a local folder instead of the mount
    assert "does not exist" in caplog.text
    root.mkdir(parents=True)
    csv_file(root / "late.csv", 2)
    while not listing(root / "done"):
        await asyncio.sleep(0.01)
    ctx.stopping.set()
    await task
    assert store.refs() == ["late.csv line 2", "late.csv line 3"]


async def test_a_file_that_cannot_be_claimed_is_reported_once_and_the_others_go_on(
    tmp_path: Path, caplog
) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    long_name = "案" * 80 + ".csv"  # 244 bytes: fits the folder, but not with the claim timestamp in front
    csv_file(root / long_name, 1)
    csv_file(root / "ok.csv", 1)
    store = FakeStore()
    loop = asyncio.get_running_loop()
    started = loop.time()
    # Run for many poll intervals (0.02 s) so that repeated scans would show repeated reports.
    await run_until(
        FiledropSource("county", make_config(root)),
        FakeContext(store),
        lambda: bool(listing(root / "done")) and loop.time() - started > 0.5,
    )

    assert store.refs() == ["ok.csv line 2"]
    assert (root / long_name).exists()
    assert caplog.text.count("cannot claim") == 1


async def test_claimed_done_and_rejected_files_are_in_the_audit_trail_with_their_fingerprint(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    good = csv_file(root / "cases.csv", 3)
    fingerprint = hashlib.sha256(good.read_bytes()).hexdigest()
    (root / "broken.csv").write_bytes("\ufeff".encode("utf-16-le") + "a,b\n".encode("utf-16-le"))
    store = FakeStore()
    await run_until(
        FiledropSource("county", make_config(root, include=["*.csv"])),
        FakeContext(store, {"format": "csv"}),
        lambda: len(listing(root / "done")) == 1 and len(listing(root / "error")) == 2,
    )
    events = {(action, detail["file"]): detail for action, detail in store.events}
    assert events[("file_claimed", "cases.csv")]["sha256"] == fingerprint
    assert events[("file_done", "cases.csv")]["items"] == 3
    assert events[("file_done", "cases.csv")]["outcomes"] == {"accepted": 3}
    assert "UTF-16" in events[("file_rejected", "broken.csv")]["reason"]
    # the claim is recorded before any record, the outcome before the file moves
    order = [action for action, detail in store.events if detail["file"] == "cases.csv"]
    assert order == ["file_claimed", "file_done"]


async def test_a_rejected_files_report_and_audit_entries_carry_no_id_number_in_full(tmp_path: Path) -> None:
    id_no = "11010519491231002X"
    root = tmp_path / "drop"
    root.mkdir()
    (root / f"申请-{id_no}.dat").write_bytes(b"\x00\x01")  # a name typed by a clerk, and a format nobody reads
    store = FakeStore()
    await run_until(
        FiledropSource("county", make_config(root, include=["*"])),
        FakeContext(store),
        lambda: len(listing(root / "error")) == 2,
    )
    report_path = next((root / "error").glob("*.error.txt"))
    report = report_path.read_text(encoding="utf-8")
    assert "unknown format" in report and "申请-110105********002X.dat" in report
    assert id_no not in report
    assert [action for action, _ in store.events] == ["file_claimed", "file_rejected"]
    assert id_no not in repr(store.events) and "110105********002X" in store.events[1][1]["reason"]
    # the rejected file itself keeps its name beside the report: it is the evidence
    assert (root / "error" / report_path.name.removesuffix(".error.txt")).exists()
