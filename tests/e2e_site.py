"""A gateway site in a temporary directory for end-to-end and crash tests: config, mappings, drop folder."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.demo.generate import generate_items, write_xml_file
from gateway.demo.scenario import MAPPINGS_DIR

TEMPLATE = """\
[gateway]
name = "test-site"
store = "{store}"

[delivery]
{max_attempts}backoff_initial = "{backoff_initial}"
backoff_max = "{backoff_max}"
poll_interval = "0.1s"
lease_seconds = "{lease_seconds}"
concurrency = {concurrency}
probe_initial = "{probe_initial}"
probe_max = "{probe_max}"
circuit_failures = {circuit_failures}

[api]
enabled = false

[supervision]
enabled = {supervision}
destinations = {supervision_destinations}

[sources.county_drop]
adapter = "filedrop"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
path = "drop/county"
include = ["*.xml"]
stability_seconds = 0.05
poll_interval = 0.05
batch_size = {batch_size}
{instance}
[sources.licences]
adapter = "filedrop"
mapping = "mappings/shuanggongshi_xk.in.yaml"
path = "drop/licences"
include = ["*.csv"]
stability_seconds = 0.05
poll_interval = 0.05

[sinks.hall_platform]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{sink_url}"
timeouts = {{ connect = 1.0, sock_read = {read_timeout}, total = {total_timeout} }}
batch_size = {sink_batch}
{extra_sinks}
[[routes]]
name = "everything-to-the-hall"
sources = ["county_drop", "licences"]
to = {route_to}
"""


class Site:
    def __init__(self, root: Path, sink_url: str, **options: Any) -> None:
        self.root = root
        params = {"max_attempts": None, "backoff_initial": "0.05s", "backoff_max": "0.5s", "lease_seconds": "10s",
                  "concurrency": 8, "supervision": "false", "supervision_destinations": "[]", "batch_size": 500, "read_timeout": 2.0,
                  "total_timeout": 3.0, "sink_url": sink_url, "probe_initial": "0.05s", "probe_max": "0.5s",
                  "circuit_failures": 5, "extra_sinks": "", "route_to": '["hall_platform"]',
                  "store": "sqlite:///gateway.db", "instance": None, "sink_batch": 1}
        params.update(options)
        # max_attempts is deprecated (docs/deliveries.md): written only when a test asks for it
        params["max_attempts"] = "" if params["max_attempts"] is None else f"max_attempts = {params['max_attempts']}\n"
        # Gateways sharing one drop folder name their own processing/ folder (adapters/filedrop).
        params["instance"] = "" if params["instance"] is None else f'instance = "{params["instance"]}"\n'
        self.store = params["store"]
        root.mkdir(parents=True, exist_ok=True)
        shutil.copytree(MAPPINGS_DIR, root / "mappings", dirs_exist_ok=True)
        for sub in ("county", "licences"):
            (root / "drop" / sub).mkdir(parents=True, exist_ok=True)
        self.config_path = root / "gateway.toml"
        self.config_path.write_text(TEMPLATE.format(**params), encoding="utf-8")
        self._file_no = 0
        self._next_case = 0

    @property
    def db(self) -> Path:
        return self.root / "gateway.db"

    def config(self):  # noqa: ANN201 - GatewayConfig
        from gateway.config import load_config

        return load_config(self.config_path)

    def drop_cases(self, n: int, *, bad_every: int = 0, per_file: int | None = None) -> list[Path]:
        """Write ``n`` case records as provincial XML files (temp name, then rename)."""
        files = []
        per_file = per_file or n
        recent = datetime.now() - timedelta(hours=1)
        while n > 0:
            count = min(per_file, n)
            path = self.root / "drop" / "county" / f"county-{self._file_no:04d}.xml"
            write_xml_file(path, generate_items(count, seed=self._file_no, bad_every=bad_every,
                                                start=self._next_case, submitted_from=recent, spread_minutes=50))
            files.append(path)
            self._file_no += 1
            self._next_case += count
            n -= count
        return files

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Read the store from outside, as an operator would (WAL allows it while the gateway runs)."""
        if not self.store.startswith("sqlite:"):
            from tests.store_support import raw

            return raw(self.store).execute(sql, *args)
        if not self.db.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()

    def scalar(self, sql: str, *args: Any) -> Any:
        rows = self.query(sql, *args)
        return rows[0][0] if rows else None

    def audit_bodies(self, action: str) -> list[dict[str, Any]]:
        """The decoded audit entries of one action, in chain order."""
        rows = self.query("SELECT body FROM audit ORDER BY seq")
        return [e for e in (json.loads(r[0]) for r in rows) if e["action"] == action]

    def audit_count(self, action: str) -> int:
        return len(self.audit_bodies(action))


async def wait_until(predicate: Callable[[], Any | Awaitable[Any]], timeout: float = 30.0,
                     interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
