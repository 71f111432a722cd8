"""An intruder with write access to the database but not the signing key: every change to the sealed trail is found.

One sealed, signed store with a witness log is built once per backend; each example copies it
(a file copy for SQLite, a database cloned from it for PostgreSQL), changes the stored audit
rows the way such an intruder could (any column, single bytes, deleted, inserted, swapped and
re-stated rows, signatures stripped, the newest history cut off) and runs the verifier with
the witness. Every change must be found. SQLite runs the full property test; PostgreSQL a
smaller sample of it and every named attack.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_audit import fill, fill_to

from gateway.audit import Sealer, SealRefused, load_certificates, load_or_create_dev_signer
from gateway.audit.chain import GENESIS, canonical, digest_function, entry_hash
from gateway.audit.verify import verify_path
from gateway.audit.witness import WitnessLog
from gateway.store import Store, make_store, sqlite_path, store_url
from gateway.store.postgresql import connect, parse_url

TABLES = {
    "audit": ("seq", "hash", "body"),
    "audit_seals": ("seal", "from_seq", "to_seq", "statement", "statement_hash", "signature", "key_id",
                    "signature_algorithm"),
    "audit_keys": ("key_id", "algorithm", "certificate"),
}
KEYS = {"audit": "seq", "audit_seals": "seal", "audit_keys": "key_id"}


@dataclass
class Sealed:
    """The sealed store of one backend, and how to make a working copy of it."""

    backend: str
    url: str
    base: Path
    witness: Path
    trusted: dict[str, Any]
    server: Any = None  # PostgresServer, for PostgreSQL
    _copies: Any = None

    def copy(self, tmp: Path) -> str:
        """A working copy to tamper with: its store URL."""
        if self.backend == "sqlite":
            shutil.copy(sqlite_path(self.url), tmp / "g.db")
            return store_url(tmp / "g.db")
        if self._copies is None:
            self._copies = itertools.count(1)
        name = f"tampered_{os.getpid()}_{next(self._copies)}"
        return self.server.create_database(name, template=_database(self.url))

    def discard(self, url: str) -> None:
        if self.backend == "postgresql":
            self.server.drop_database(_database(url))


def _database(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _build(url: str, base: Path) -> None:
    async def build() -> None:
        store = make_store(url)
        await store.open()
        try:
            await fill_to(store, 150, cases=12, batch=20)
            signer = load_or_create_dev_signer(base / "certs")
            await Sealer(store, signer, max_entries=40, witness=WitnessLog(base / "witness.jsonl")).seal_now()
        finally:
            await store.close()

    asyncio.run(build())


def _sealed(backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    """A store of 150 entries over 12 cases, sealed every 40 entries and signed, and its witness log."""
    base = tmp_path_factory.mktemp(f"sealed-{backend}")
    server = None
    if backend == "sqlite":
        url = store_url(base / "g.db")
    else:
        server = request.getfixturevalue("pg_server")
        _, url = server.fresh_database()
    _build(url, base)
    trusted = load_certificates(base / "certs")
    clean = verify_path(url, trusted=trusted, witness=[base / "witness.jsonl"], workers=1)
    assert clean.ok, clean.render()
    return Sealed(backend, url, base, base / "witness.jsonl", trusted, server)


@pytest.fixture(scope="module")
def sealed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    return _sealed("sqlite", request, tmp_path_factory)


@pytest.fixture(scope="module")
def sealed_pg(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    return _sealed("postgresql", request, tmp_path_factory)


@pytest.fixture(params=["sqlite", "postgresql"])
def sealed_any(request: pytest.FixtureRequest) -> Sealed:
    return request.getfixturevalue("sealed" if request.param == "sqlite" else "sealed_pg")


class _Db:
    """A connection to a working copy, ``?`` placeholders on both backends; ``commit`` ends the change."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:"):
            self.conn: Any = sqlite3.connect(sqlite_path(url))
            self.pg = None
        else:
            self.pg = connect(parse_url(url)[0])
            self.pg.raw.autocommit = False
            self.conn = self.pg

    def execute(self, sql: str, args: Any = ()) -> Any:
        return self.conn.execute(sql, args)

    def commit(self) -> None:
        (self.pg.raw if self.pg is not None else self.conn).commit()

    def close(self) -> None:
        self.conn.close()


REFUSED = (sqlite3.IntegrityError, sqlite3.OperationalError, psycopg.Error)


def _rows(conn: Any, table: str) -> list[tuple[Any, ...]]:
    rows = conn.execute(f"SELECT {', '.join(TABLES[table])} FROM {table} ORDER BY {KEYS[table]}").fetchall()
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]


def _dump(url: str) -> list[list[tuple[Any, ...]]]:
    conn = _Db(url)
    try:
        return [_rows(conn, t) for t in TABLES]
    finally:
        conn.close()


def _changed_value(value: Any, data: st.DataObject) -> Any:
    """Another value for a cell: a byte or character changed, a number moved, NULL for a value or the reverse."""
    if value is None:
        return data.draw(st.one_of(st.integers(0, 10_000), st.text(min_size=1, max_size=20),
                                   st.binary(min_size=1, max_size=64)), label="value for NULL")
    if data.draw(st.integers(0, 9), label="null it") == 0:
        return None
    if isinstance(value, int):
        return value + data.draw(st.sampled_from([-1, 1, 7, -value, 2**31]), label="delta")
    if isinstance(value, bytes) and value:
        i = data.draw(st.integers(0, len(value) - 1), label="byte")
        return value[:i] + bytes([value[i] ^ data.draw(st.integers(1, 255), label="xor")]) + value[i + 1:]
    if isinstance(value, str) and value:
        i = data.draw(st.integers(0, len(value) - 1), label="char")
        new = data.draw(st.characters(codec="utf-8"), label="new char")
        return value[:i] + new + value[i + 1:]
    return data.draw(st.text(min_size=1, max_size=5), label="value for empty")


def mutate(url: str, witness: Path, data: st.DataObject) -> str:
    """Apply one intruder's change to the store at ``url``; returns what was done, for the failure message."""
    conn = _Db(url)
    try:
        kind = data.draw(st.sampled_from(["cell", "cell", "cell", "delete", "insert", "swap", "strip", "restate",
                                          "cut"]), label="mutation")
        table = data.draw(st.sampled_from(sorted(TABLES)), label="table")
        rows = _rows(conn, table)
        if kind == "swap" and len(rows) < 2:
            kind = "cell"
        key = KEYS[table]
        cols = TABLES[table]
        if kind == "cell":
            row = data.draw(st.sampled_from(rows), label="row")
            col = data.draw(st.integers(0, len(cols) - 1), label="column")
            new = _changed_value(row[col], data)
            conn.execute(f"UPDATE {table} SET {cols[col]} = ? WHERE {key} = ?", (new, row[0]))
            done = f"{table}.{cols[col]} of {row[0]!r} set to {new!r}"
        elif kind == "delete":
            row = data.draw(st.sampled_from(rows), label="row")
            conn.execute(f"DELETE FROM {table} WHERE {key} = ?", (row[0],))
            done = f"{table} row {row[0]!r} deleted"
        elif kind == "insert":
            row = list(data.draw(st.sampled_from(rows), label="row to copy"))
            if isinstance(row[0], int):
                row[0] = data.draw(st.sampled_from([max(r[0] for r in rows) + 1, max(r[0] for r in rows) + 5]),
                                   label="new key")
            else:
                row[0] = "f" * 64
            conn.execute(f"INSERT INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", row)
            done = f"{table} row inserted as a copy under {row[0]!r}"
        elif kind == "swap":
            a, b = data.draw(st.lists(st.sampled_from(rows), min_size=2, max_size=2, unique=True), label="rows")
            for col in cols[1:]:
                ia = cols.index(col)
                conn.execute(f"UPDATE {table} SET {col} = ? WHERE {key} = ?", (b[ia], a[0]))
                conn.execute(f"UPDATE {table} SET {col} = ? WHERE {key} = ?", (a[ia], b[0]))
            done = f"{table} rows {a[0]!r} and {b[0]!r} swapped"
        elif kind == "strip":
            seal = data.draw(st.sampled_from(_rows(conn, "audit_seals")), label="seal")
            conn.execute("UPDATE audit_seals SET signature = NULL, key_id = NULL, signature_algorithm = NULL"
                         " WHERE seal = ?", (seal[0],))
            done = f"signature of seal {seal[0]} stripped"
        elif kind == "restate":
            done = _rewrite_from(conn, data)
        else:
            done = _cut_newest(conn, data)
        conn.commit()
        return done
    finally:
        conn.close()


def _rewrite_from(conn: Any, data: st.DataObject) -> str:
    """The forgery of the issue: change a sealed entry, recompute the chain after it, re-state the seals
    from there on and leave them "pending" (no signature), as a database writer without the key can."""
    seals = _rows(conn, "audit_seals")
    target = data.draw(st.sampled_from(seals), label="seal to rewrite")
    seq = data.draw(st.integers(target[1], target[2]), label="entry to change")
    entries = conn.execute("SELECT seq, body FROM audit WHERE seq >= ? ORDER BY seq", (seq,)).fetchall()
    prev_row = conn.execute("SELECT hash FROM audit WHERE seq = ?", (seq - 1,)).fetchone()
    prev = prev_row[0] if prev_row else GENESIS
    hashes: dict[int, str] = {}
    for i, (s, body) in enumerate(entries):
        body = bytes(body)
        if i == 0:
            doc = json.loads(body)
            doc["at"] = "2020-01-01T00:00:00.000+08:00"  # back-dated: the point of such a forgery
            body = canonical(doc)
        prev = entry_hash(prev, body)
        hashes[s] = prev
        conn.execute("UPDATE audit SET hash = ?, body = ? WHERE seq = ?", (prev, body, s))
    # Re-state the affected seals over the new hashes (no key: they can only be left unsigned).
    from gateway.audit.merkle import merkle_root

    h = digest_function("sha256")
    prev_statement = None
    for s in seals:
        if s[0] < target[0]:
            prev_statement = h(bytes(s[3])).hex()
            continue
        st_doc = json.loads(bytes(s[3]))
        leaves = [bytes.fromhex(r[0]) for r in
                  conn.execute("SELECT hash FROM audit WHERE seq BETWEEN ? AND ? ORDER BY seq", (s[1], s[2]))]
        st_doc["merkle_root"] = merkle_root(leaves).hex()
        st_doc["head_hash"] = leaves[-1].hex()
        before = conn.execute("SELECT hash FROM audit WHERE seq = ?", (s[1] - 1,)).fetchone()
        st_doc["prev_hash"] = before[0] if before else GENESIS
        if prev_statement is not None:
            st_doc["prev_seal"] = prev_statement
        statement = canonical(st_doc)
        prev_statement = h(statement).hex()
        conn.execute("UPDATE audit_seals SET statement = ?, statement_hash = ?, signature = NULL, key_id = NULL,"
                     " signature_algorithm = NULL WHERE seal = ?", (statement, prev_statement, s[0]))
    return f"entry {seq} rewritten, chain recomputed, seals {target[0]}.. re-stated as pending"


def _cut_newest(conn: Any, data: st.DataObject) -> str:
    """Truncation: the newest seal goes, with or without the entries after the seal before it."""
    seals = _rows(conn, "audit_seals")
    last = seals[-1]
    conn.execute("DELETE FROM audit_seals WHERE seal = ?", (last[0],))
    if data.draw(st.booleans(), label="with its entries"):
        conn.execute("DELETE FROM audit WHERE seq >= ?", (last[1],))
        return f"seal {last[0]} deleted with every entry from {last[1]} on"
    return f"seal {last[0]} deleted"


def _one_change(sealed: Sealed, tmp: Path, data: st.DataObject) -> None:
    work = sealed.copy(tmp)
    try:
        before = _dump(work)
        try:
            done = mutate(work, sealed.witness, data)
        except REFUSED:
            return  # the database itself refused the change (a duplicate key, a type, a body its case index cannot read)
        if _dump(work) == before:
            return  # the drawn change wrote the value that was already there
        report = verify_path(work, trusted=sealed.trusted, witness=[sealed.witness], workers=1)
        assert not report.ok, f"not found: {done}\n{report.render()}"
    finally:
        sealed.discard(work)


@settings(max_examples=int(os.environ.get("TAMPER_EXAMPLES", "200")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_change_to_the_stored_trail_is_found(sealed, tmp_path_factory, data) -> None:
    _one_change(sealed, tmp_path_factory.mktemp("tampered"), data)


@settings(max_examples=int(os.environ.get("TAMPER_EXAMPLES_PG", "30")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_change_to_the_stored_trail_on_postgresql_is_found(sealed_pg, tmp_path_factory, data) -> None:
    """The same intruder against PostgreSQL: a database cloned from the sealed one per example."""
    _one_change(sealed_pg, tmp_path_factory.mktemp("tampered"), data)


# ---------------------------------------------------------------------------- the named attacks, one by one


class _Script:
    """A stand-in for hypothesis' data object that replays fixed choices (for the named attacks below)."""

    def __init__(self, *choices: Any) -> None:
        self.choices = list(choices)

    def draw(self, strategy: Any, label: str | None = None) -> Any:
        return self.choices.pop(0)


def _forge(url: str, *, seal_no: int, thorough: bool) -> None:
    """Rewrite an entry under seal ``seal_no`` and re-state the seals from there on as pending.

    The thorough forger also makes the chain's own records agree: each re-stated seal's seal_made
    entry names the new statement, its seal_signed entry is gone, and the chain after the first
    changed record is renumbered and recomputed, so the database is consistent in itself.
    """
    conn = _Db(url)
    try:
        seal = next(s for s in _rows(conn, "audit_seals") if s[0] == seal_no)
        _rewrite_from(conn, _Script(seal, seal[1] + 3))
        if thorough:
            restated = {r[0]: r[4] for r in _rows(conn, "audit_seals") if r[0] >= seal_no}
            tail = conn.execute("SELECT seq, body FROM audit WHERE seq > ? ORDER BY seq",
                                (max(r[2] for r in _rows(conn, "audit_seals")),)).fetchall()
            kept = []
            for _, body in tail:
                doc = json.loads(bytes(body))
                number = doc["detail"].get("seal")
                if doc["action"] == "seal_signed" and number in restated:
                    continue
                if doc["action"] == "seal_made" and number in restated:
                    doc["detail"]["statement_hash"] = restated[number]
                kept.append(doc)
            first = tail[0][0]
            conn.execute("DELETE FROM audit WHERE seq >= ?", (first,))
            prev = conn.execute("SELECT hash FROM audit WHERE seq = ?", (first - 1,)).fetchone()[0]
            for i, doc in enumerate(kept):
                doc["seq"] = first + i
                body = canonical(doc)
                prev = entry_hash(prev, body)
                conn.execute("INSERT INTO audit(seq, hash, body) VALUES (?,?,?)", (first + i, prev, body))
        conn.commit()
    finally:
        conn.close()


async def _open(target: str | Path) -> Store:
    """The store at a URL, or at a SQLite file path."""
    url = store_url(target)
    store = make_store(url)
    await store.open()
    if url.startswith("postgres"):
        # The intruder rewrote the audit table; the chain head row (bookkeeping, not evidence) is where a
        # store keeps appending from, as SQLite reads the newest entry. Point it at the newest stored entry.
        conn = _Db(url)
        try:
            conn.execute("UPDATE audit_head SET seq = a.seq, hash = a.hash FROM (SELECT seq, hash FROM audit"
                         " ORDER BY seq DESC LIMIT 1) a WHERE audit_head.id = 1")
            conn.commit()
        finally:
            conn.close()
    return store


async def test_the_pending_seal_forgery_is_refused_by_verify_and_by_the_sealer(sealed_any, tmp_path) -> None:
    witness, trusted = sealed_any.witness, sealed_any.trusted
    work = sealed_any.copy(tmp_path)
    _forge(work, seal_no=2, thorough=False)
    # the chain still records that seals 2.. were signed: plain verification already refuses
    plain = verify_path(work, trusted=trusted, workers=1)
    assert not plain.ok and any("signature was stripped" in p for p in plain.problems), plain.render()
    assert not verify_path(work, trusted=trusted, witness=[witness], workers=1).ok
    # and the sealer will not lend its signature to it: it refuses, raises the alarm once, signs nothing
    alarms: list[str] = []

    async def alarm(text: str) -> None:
        alarms.append(text)

    store = await _open(work)
    try:
        signer = load_or_create_dev_signer(sealed_any.base / "certs")
        sealer = Sealer(store, signer, witness=WitnessLog(witness), trusted=trusted, on_alarm=alarm,
                        poll_seconds=0.01)
        with pytest.raises(Exception, match="stripped|rewritten"):
            await sealer.sign_pending()
        stopping = asyncio.Event()
        task = asyncio.create_task(sealer.run(stopping))
        await asyncio.sleep(0.2)
        await store.audit_event("user_action", system="console", detail={"user": "after"})  # exchange goes on
        stopping.set()
        await task
        assert len(alarms) == 1 and sealer.status().refused
        assert all(s.signature is None for s in await store.list_seals() if s.seal >= 2)
    finally:
        await store.close()


async def test_a_thorough_forgery_passes_the_database_alone_but_not_the_witness(sealed_any, tmp_path) -> None:
    """What the database alone cannot prove, the witness does (README: trust model)."""
    witness, trusted = sealed_any.witness, sealed_any.trusted
    work = sealed_any.copy(tmp_path)
    _forge(work, seal_no=4, thorough=True)
    alone = verify_path(work, trusted=trusted, workers=1)
    assert alone.ok, alone.render()  # a consistent history with its newest part "not signed yet"
    witnessed = verify_path(work, trusted=trusted, witness=[witness], workers=1)
    assert not witnessed.ok
    assert any("the sealed history was rewritten" in p or "missing from the store" in p
               for p in witnessed.problems), witnessed.render()
    store = await _open(work)
    try:
        sealer = Sealer(store, load_or_create_dev_signer(sealed_any.base / "certs"), witness=WitnessLog(witness))
        with pytest.raises(Exception, match="rewritten|missing"):
            await sealer.seal_now()
    finally:
        await store.close()


async def test_a_store_put_back_from_an_older_copy_by_hand_is_refused_before_the_witness_is_written(
        tmp_path) -> None:
    """A restore with cp looks like the newest history cut off: the sealer must refuse it before it
    seals anything, so the witness never gets a second, different seal under a number it already holds
    (`gateway backup restore` sets the old witness aside for exactly this reason)."""
    db, witness, certs = tmp_path / "g.db", tmp_path / "witness.jsonl", tmp_path / "certs"
    signer = load_or_create_dev_signer(certs)
    store = await _open(db)
    try:
        await fill_to(store, 60, cases=5, batch=20)
        await Sealer(store, signer, max_entries=40, witness=WitnessLog(witness)).seal_now()
    finally:
        await store.close()
    shutil.copy(db, tmp_path / "copy.db")  # the operator's copy, taken while nothing ran
    store = await _open(db)
    try:
        await fill(store, 50, start=5000)
        await Sealer(store, signer, max_entries=40, witness=WitnessLog(witness)).seal_now()
    finally:
        await store.close()
    witnessed = witness.read_bytes()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"g.db{suffix}").unlink(missing_ok=True)
    shutil.copy(tmp_path / "copy.db", db)  # put back by hand
    store = await _open(db)
    try:
        await fill(store, 30, start=9000)
        with pytest.raises(SealRefused, match="missing from the store"):
            await Sealer(store, signer, max_entries=40, witness=WitnessLog(witness)).seal_now()
    finally:
        await store.close()
    assert witness.read_bytes() == witnessed


@pytest.mark.parametrize("with_entries", [False, True])
async def test_the_newest_seal_deleted_is_caught(sealed_any, tmp_path, with_entries: bool) -> None:
    witness, trusted = sealed_any.witness, sealed_any.trusted
    work = sealed_any.copy(tmp_path)
    conn = _Db(work)
    try:
        done = _cut_newest(conn, _Script(with_entries))
        conn.commit()
    finally:
        conn.close()
    report = verify_path(work, trusted=trusted, witness=[witness], workers=1)
    assert not report.ok, done
    assert any("missing from the store" in p or "was deleted" in p for p in report.problems), report.render()
    if not with_entries:  # the chain's record of the seal is still there: the database alone says so too
        assert not verify_path(work, trusted=trusted, workers=1).ok
