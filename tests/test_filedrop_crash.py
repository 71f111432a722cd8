"""Kill -9 the file-drop source at random instants, restart it, and check every item was committed exactly once.

The child process runs the real source against a SQLite-backed context that commits
records and cursor in one transaction, as the core does.  Nothing is mocked inside the
source; the kills land wherever they land.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

CHILD = textwrap.dedent(
    """
    import asyncio, logging, sqlite3, sys
    from pathlib import Path
    from gateway_adapters.filedrop import FiledropConfig, FiledropSource
    from gateway.adapters import IngestOutcome
    from gateway.pipeline.fileingest import ingest_file_with

    root, db, expected = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])

    class SqliteContext:
        system = "county"
        data_dir = root
        log = logging.getLogger("child")

        def __init__(self):
            self.stopping = asyncio.Event()
            self.conn = sqlite3.connect(db, isolation_level=None)
            self.conn.execute("pragma journal_mode=wal")
            self.conn.execute("create table if not exists records (ref text not null)")
            self.conn.execute("create table if not exists cursors (name text primary key, value text)")

        async def ingest(self, records, *, cursor=None):
            self.conn.execute("begin immediate")
            self.conn.executemany("insert into records (ref) values (?)", [(r.ref,) for r in records])
            if cursor is not None:
                self.conn.execute("insert or replace into cursors values (?, ?)", cursor)
            self.conn.execute("commit")
            await asyncio.sleep(0.01)  # let the kill land between as well as inside commits
            return [IngestOutcome(ref=r.ref, status="accepted") for r in records]

        async def ingest_file(self, path, **options):
            return await ingest_file_with(self, path, **options)

        async def audit(self, action, detail):
            pass  # this test counts records; the file events are covered in test_filedrop

        async def get_cursor(self, name):
            row = self.conn.execute("select value from cursors where name = ?", (name,)).fetchone()
            return row[0] if row else None

        def input_options(self):
            return {"format": "csv"}

    async def main():
        ctx = SqliteContext()
        config = FiledropConfig(path=root, stability_seconds=0, poll_interval=0.02, batch_size=100, instance="gw")
        source = FiledropSource("county", config)
        task = asyncio.create_task(source.run(ctx))
        while len(list((root / "done").glob("*"))) < expected and not task.done():
            await asyncio.sleep(0.02)
        ctx.stopping.set()
        await task

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_killed_at_random_instants_nothing_is_lost_and_nothing_is_ingested_twice(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    files, rows = 6, 5000
    for f in range(files):
        lines = ["SBLSH,SQRMC"] + [f"{f}-{n},申请人{n}" for n in range(1, rows + 1)]
        (root / f"batch{f}.csv").write_text("\r\n".join(lines) + "\r\n", encoding="gb18030")
    db = tmp_path / "store.db"
    command = [sys.executable, "-c", CHILD, str(root), str(db), str(files)]
    rng = random.Random(20261101)

    kills = 0
    for _ in range(12):
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 0.8))
        if child.poll() is not None:
            break  # finished before this kill
        child.send_signal(signal.SIGKILL)
        child.wait()
        kills += 1
    final = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr

    with sqlite3.connect(db) as conn:
        total = conn.execute("select count(*) from records").fetchone()[0]
        distinct = conn.execute("select count(distinct ref) from records").fetchone()[0]
    print(f"\n{kills} kills; {total} records committed for {files * rows} items")
    assert kills >= 5
    assert distinct == files * rows  # nothing lost
    assert total == files * rows  # nothing twice
    assert len(list((root / "done").iterdir())) == files
    assert list((root / "processing" / "gw").iterdir()) == []
