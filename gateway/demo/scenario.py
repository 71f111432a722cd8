"""`gateway demo`: a simulated county file drop → the gateway on SQLite → a simulated hall platform.

Everything runs on loopback in one process. The working directory it leaves
behind (configuration, mappings, store, drop folders) is a normal gateway
directory: `gateway status -c DIR/gateway.toml` and the other commands work on it.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from gateway.demo.generate import generate_items, write_xml_file

MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "mappings"
BACKFILLED = 3  # records the demo reports late on purpose

CONFIG_TEMPLATE = """\
# Written by `gateway demo`. A county front-end machine drops provincial exchange XML
# into drop/county; the gateway maps it to the common schema, stores it, and delivers
# it to the hall platform's REST API.

[gateway]
name = "demo"
store = "sqlite:///gateway.db"
adapters = ["filedrop", "rest"]

[delivery]
max_attempts = 8
backoff_initial = "0.2s"
backoff_max = "5s"
poll_interval = "0.5s"

[api]
enabled = false

[supervision]
destinations = ["hall_platform"]   # electronic-supervision alerts go to the hall too

[sources.county_drop]
adapter = "filedrop"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
path = "drop/county"
include = ["*.xml"]
stable_for = "200ms"
poll_interval = "200ms"

[sinks.hall_platform]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{hall_url}/api/records"

[[routes]]
name = "county-to-hall"
sources = ["county_drop"]
to = ["hall_platform"]
"""


def prepare_workdir(workdir: Path, hall_url: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(MAPPINGS_DIR, workdir / "mappings", dirs_exist_ok=True)
    (workdir / "drop" / "county").mkdir(parents=True, exist_ok=True)
    config = workdir / "gateway.toml"
    config.write_text(CONFIG_TEMPLATE.format(hall_url=hall_url), encoding="utf-8")
    return config


async def drop_files(folder: Path, n_records: int, per_file: int = 50, pause: float = 0.05) -> None:
    """The county side: files written under a temporary name and renamed when complete."""
    written = 0
    index = 0
    # Applications submitted in the last hour are current business; the last few were
    # submitted weeks ago and only reported now, which electronic supervision flags (补录).
    recent = datetime.now() - timedelta(hours=1)
    backfilled = min(BACKFILLED, n_records)
    while written < n_records:
        count = min(per_file, n_records - written)
        current = max(0, min(count, n_records - backfilled - written))
        items = list(generate_items(current, seed=index, bad_every=40, start=written, submitted_from=recent,
                                    spread_minutes=50))
        items += generate_items(count - current, seed=index, start=written + current,
                                submitted_from=datetime.now() - timedelta(days=20), spread_minutes=60)
        await asyncio.to_thread(write_xml_file, folder / f"county-{index:05d}.xml", items)
        written += count
        index += 1
        await asyncio.sleep(pause)


async def run_demo(n_records: int, workdir: Path | None, timeout: float, echo: Callable[[str], None] = print) -> bool:
    from gateway.app import Gateway
    from gateway.config import load_config
    from gateway.demo.counterparts import HallPlatform

    workdir = (workdir or Path.cwd() / f"gateway-demo-{datetime.now():%Y%m%d-%H%M%S}").resolve()
    hall = HallPlatform()
    await hall.start()
    config_path = prepare_workdir(workdir, hall.url)
    echo(f"working directory: {workdir}")
    echo(f"simulated hall platform listening on {hall.url}")
    gateway = Gateway(load_config(config_path))
    started = time.monotonic()
    ok = False
    try:
        await gateway.start()
        assert gateway.store is not None
        dropper = asyncio.create_task(drop_files(workdir / "drop" / "county", n_records))
        last = ""
        while time.monotonic() - started < timeout:
            await asyncio.sleep(0.25)
            c = await gateway.store.counts()
            flowed = c.records + c.quarantined
            line = (f"received {c.records:,}  quarantined {c.quarantined:,}  delivered {c.delivered:,}  "
                    f"pending {c.pending + c.inflight:,}  dead-lettered {c.dead:,}")
            if line != last:
                echo(line)
                last = line
            alerts_due = min(BACKFILLED, n_records) if gateway.supervision is not None else 0
            if dropper.done() and flowed >= n_records and c.alerts >= alerts_due and c.pending + c.inflight == 0:
                ok = True
                break
        if not dropper.done():
            dropper.cancel()
        elapsed = time.monotonic() - started
        c = await gateway.store.counts()
        echo("")
        echo("summary")
        echo(f"  records received     {c.records:,}")
        echo(f"  duplicates           {c.duplicates:,}")
        echo(f"  quarantined          {c.quarantined:,}")
        echo(f"  delivered            {c.delivered:,}")
        echo(f"  dead-lettered        {c.dead:,}")
        echo(f"  supervision alerts   {c.alerts:,}")
        echo(f"  audit entries        {c.audit_entries:,}")
        echo(f"  hall platform got    {hall.unique:,} unique records ({hall.received_raw:,} requests)")
        echo(f"  elapsed              {elapsed:.1f}s")
        if not ok:
            echo(f"demo did not finish within {timeout:.0f}s")
    finally:
        await gateway.stop()
        await hall.stop()
    echo("")
    echo("look around:")
    echo(f"  gateway status -c {config_path}")
    echo(f"  gateway deliveries quarantine -c {config_path}")
    echo(f"  gateway audit verify -c {config_path}")
    return ok
