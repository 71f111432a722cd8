"""`gateway store migrate`: a populated SQLite store moves to PostgreSQL (and back) whole, and its trail verifies there.

The source holds what an installation that ran for a while holds: records (current, superseded),
deliveries in every state (pending, in flight, retried, delivered, dead), quarantine entries,
signed seals, people and tokens, cursors. Every table must arrive row for row, the target's
audit trail must verify against the seal certificate, and the target must go on where the
source stopped (ids after the copied ones, the chain continuing from the last entry).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from gateway.audit import Sealer, load_or_create_dev_signer
from gateway.audit.verify import verify_path
from gateway.cli import main
from gateway.store import QuarantineItem, Settlement, make_store, store_url
from tests.store_support import as_bytes, raw
from tests.test_store import item

TABLES_WITH_DATA = ("records", "outbox", "quarantine", "audit", "audit_seals", "users", "api_tokens", "cursors")


async def populate(url: str, certs: Path) -> dict[str, int]:
    """A store as a running installation leaves it; returns the delivery ids by the state they are left in."""
    store = make_store(url)
    await store.open()
    try:
        await store.commit_ingest([item(f"K{i}", case=f"C{i % 7}") for i in range(40)], [],
                                  cursor=("filedrop:county:f", "40"))
        await store.commit_ingest([item("K1", version=2, case="C1")], [])  # supersedes K1 version 1
        await store.commit_ingest([], [QuarantineItem(
            system="county", ref="f.csv row 3", kind="case",
            errors=[{"field": "credit_code", "rule": "gb32100", "value": "9137***", "message": "bad check digit"}],
            payload='{"a": 1}', raw=b"\x00raw bytes\xff", receipt_time="2026-01-01T00:00:00+08:00")])
        now = time.time()
        claimed = await store.claim("hall", 7, 300, now)
        delivered, retried, dead, inflight = claimed[0:3], claimed[3], claimed[4], claimed[5:]
        await store.settle(
            [Settlement(d.delivery_id, "delivered", "hall", d.idempotency_key, d.kind, d.record_key, d.case_no, 1,
                        remote_id=f"R-{d.record_key}") for d in delivered]
            + [Settlement(retried.delivery_id, "retry", "hall", retried.idempotency_key, retried.kind,
                          retried.record_key, retried.case_no, 1, error="503 busy", next_attempt_at=now + 60),
               Settlement(dead.delivery_id, "dead", "hall", dead.idempotency_key, dead.kind, dead.record_key,
                          dead.case_no, 1, error="400 bad credit code")])
        await store.add_user("li.na", "operator", ["county"], "李娜", "$argon2id$fake", actor="setup")
        await store.create_token("tok1", "secret-hash", "li.na", "nightly export", now + 86400, actor="setup")
        await Sealer(store, load_or_create_dev_signer(certs), every_entries=20, max_entries=20).seal_now()
        return {"delivered": len(delivered), "retry": 1, "dead": 1, "inflight": len(inflight)}
    finally:
        await store.close()


def rows_of(url: str, table: str, *, before_seq: int | None = None) -> list[tuple[Any, ...]]:
    """Every row of ``table`` (audit: up to ``before_seq``), columns in name order, rows sorted."""
    db = raw(url)
    columns = [r[0] for r in db.execute(
        "SELECT name FROM pragma_table_info(?) ORDER BY cid", table)] if url.startswith("sqlite:") else [
        r[0] for r in db.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ?"
                                 " ORDER BY ordinal_position", table)]
    where = f" WHERE seq <= {before_seq}" if before_seq is not None and table == "audit" else ""
    rows = db.execute(f"SELECT {', '.join(sorted(columns))} FROM {table}{where}")
    return sorted((tuple(_plain(v) for v in r) for r in rows), key=repr)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return as_bytes(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def migrate(source: str, target: str, certs: Path, *extra: str) -> Any:
    return CliRunner().invoke(main, ["store", "migrate", "--from", source, "--to", target, "--certs", str(certs),
                                     "--workers", "1", *extra])


def test_a_populated_sqlite_store_moves_to_postgresql_whole_and_verifies_there(tmp_path: Path, pg_url: str) -> None:
    source, certs = store_url(tmp_path / "g.db"), tmp_path / "certs"
    left = asyncio.run(populate(source, certs))

    result = migrate(source, pg_url, certs)

    assert result.exit_code == 0, result.output
    assert "audit trail verifies" in result.output and "signed" in result.output
    copied = raw(source).value("SELECT max(seq) FROM audit")
    for table in TABLES_WITH_DATA:
        assert rows_of(pg_url, table, before_seq=copied) == rows_of(source, table), table
    states = dict(raw(pg_url).execute("SELECT state, count(*) FROM outbox GROUP BY state"))
    assert states == {"delivered": left["delivered"], "pending": 41 - left["delivered"] - 1 - left["inflight"],
                      "dead": 1, "inflight": left["inflight"]}
    # The move itself is the target's newest entry, after every entry it brought.
    last = json.loads(as_bytes(raw(pg_url).value("SELECT body FROM audit ORDER BY seq DESC LIMIT 1")))
    assert last["action"] == "store_migrated" and last["detail"]["rows"]["records"] == 41

    async def go_on() -> None:
        store = make_store(pg_url)
        await store.open()
        try:
            before = raw(pg_url).value("SELECT max(id) FROM records")
            await store.commit_ingest([item("NEW", case="C-new")], [])
            assert raw(pg_url).value("SELECT id FROM records WHERE record_key = 'NEW'") > before
            claimed = await store.claim("hall", 100, 30, time.time() + 120)
            assert "NEW" in {d.record_key for d in claimed}
        finally:
            await store.close()

    asyncio.run(go_on())
    report = verify_path(pg_url, workers=1)
    assert report.ok, report.render()


def test_a_postgresql_store_moves_back_to_sqlite(tmp_path: Path, pg_url: str) -> None:
    certs = tmp_path / "certs"
    asyncio.run(populate(pg_url, certs))
    target = store_url(tmp_path / "back.db")

    result = migrate(pg_url, target, certs)

    assert result.exit_code == 0, result.output
    copied = raw(pg_url).value("SELECT max(seq) FROM audit")
    for table in TABLES_WITH_DATA:
        assert rows_of(target, table, before_seq=copied) == rows_of(pg_url, table), table
    assert verify_path(target, workers=1).ok


def test_a_target_holding_data_is_refused_unless_replacing_is_asked_for(tmp_path: Path, pg_url: str) -> None:
    source, certs = store_url(tmp_path / "g.db"), tmp_path / "certs"
    asyncio.run(populate(source, certs))
    assert migrate(source, pg_url, certs).exit_code == 0

    again = migrate(source, pg_url, certs)
    assert again.exit_code != 0
    assert "is not empty" in again.output and "--replace" in again.output

    replaced = migrate(source, pg_url, certs, "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert rows_of(pg_url, "records") == rows_of(source, "records")


def test_a_target_whose_trail_does_not_verify_fails_the_migration(tmp_path: Path, pg_url: str,
                                                                  monkeypatch: Any) -> None:
    """The exit code says the result of the verification: a row altered on the way makes it fail."""
    from gateway.store import migrate as migration

    source, certs = store_url(tmp_path / "g.db"), tmp_path / "certs"
    asyncio.run(populate(source, certs))
    real = migration._Side.write

    def altering(self: Any, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        if table == "audit":
            i = columns.index("body")
            rows = [r[:i] + (as_bytes(r[i]).replace(b"county", b"c0unty"),) + r[i + 1:] for r in rows]
        real(self, table, columns, rows)

    monkeypatch.setattr(migration._Side, "write", altering)
    result = migrate(source, pg_url, certs)

    assert result.exit_code == 1
    assert "MIGRATION INCOMPLETE" in result.output


def test_store_urls_are_checked_before_anything_is_copied(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["store", "migrate", "--from", str(tmp_path / "g.db"), "--to",
                                       "sqlite:///x.db"])
    assert result.exit_code != 0 and "is not a store URL" in result.output
    missing = CliRunner().invoke(main, ["store", "migrate", "--from", f"sqlite:///{tmp_path}/none.db", "--to",
                                        "sqlite:///x.db"])
    assert missing.exit_code != 0 and "does not exist" in missing.output
