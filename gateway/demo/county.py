"""A simulated county front-end machine (县级前置机): file drops in and out between the gateway and the county.

The county side of two folders on one disk, as a 前置机 between isolated networks has them:
it drops JSON-lines files of what the county sends (approval results of the county's approval
bureau, supervision results and 并联审批 opinions of county departments) into the gateway's
``drop`` folder — written under a temporary name and renamed — and carries away the files the
gateway writes into ``out`` (one per delivery, named by its idempotency key). For 对账 it leaves
``manifest-YYYYMMDD.json`` per day in ``manifests`` and acts on the gateway's ``resend-*.json``
requests by dropping those records again.

Switches: ``lose_next`` carries files away and loses them; ``lose_outgoing`` logs records as
dropped that never reach the folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gateway.demo.ministry import gateway_key

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")


@dataclass
class Carried:
    key: str  # the file's stem: the delivery's idempotency key
    at: float
    digest: str
    data: dict[str, Any]


@dataclass
class Dropped:
    kind: str
    key: str
    version: int
    at: float
    item: dict[str, Any]
    written: bool


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class CountyFrontEnd:
    """The county's end of the front-end machine; ``run`` carries files across until stopped."""

    def __init__(self, drop: Path, out: Path, manifests: Path, *, keep: Path | None = None) -> None:
        self.drop = Path(drop)
        self.out = Path(out)
        self.manifests = Path(manifests)
        self.keep = Path(keep) if keep is not None else self.out.parent / (self.out.name + "-carried")
        for folder in (self.drop, self.out, self.manifests, self.keep):
            folder.mkdir(parents=True, exist_ok=True)
        self.carried: dict[str, Carried] = {}
        self.lost: list[str] = []  # keys of files it carried away and lost (a later copy is carried as usual)
        self.dropped: list[Dropped] = []
        self.resend_requests: list[dict[str, Any]] = []
        self._lose = 0
        self._lose_outgoing = 0
        self._files = 0
        self._clock = 0.0

    # ------------------------------------------------------------------ what the tests steer

    def lose_next(self, count: int = 1) -> None:
        """Carry the next ``count`` delivered files away and lose them (nothing reaches the county)."""
        self._lose += count

    def lose_outgoing(self, count: int = 1) -> None:
        """The next ``count`` records are logged as dropped but never written."""
        self._lose_outgoing += count

    def send(self, *items: Mapping[str, Any]) -> Path | None:
        """Drop one JSON-lines file of county records (TYPE XK, CF or YJ) for the gateway."""
        lines = []
        for item in items:
            kind, key, version = gateway_key(item)
            written = self._lose_outgoing <= 0
            if not written:
                self._lose_outgoing -= 1
            self.dropped.append(Dropped(kind, key, version, self._tick(), dict(item), written))
            if written:
                lines.append(json.dumps(item, ensure_ascii=False))
        if not lines:
            return None
        self._files += 1
        path = self.drop / f"county-{time.strftime('%Y%m%d%H%M%S')}-{self._files:04d}.jsonl"
        _write(path, ("\n".join(lines) + "\n").encode("utf-8"))
        return path

    def received_of(self, type_code: str) -> list[dict[str, Any]]:
        return [c.data for c in sorted(self.carried.values(), key=lambda c: c.at) if c.data.get("TYPE") == type_code]

    def _tick(self) -> float:
        now = time.time()
        self._clock = max(now, self._clock + 0.000001)
        return self._clock

    # ------------------------------------------------------------------ carrying across

    def collect(self) -> int:
        """Carry every complete file out of ``out``; act on resend requests. Returns files taken."""
        taken = 0
        for path in sorted(self.out.iterdir()):
            if not path.is_file() or path.name.startswith(".") or not path.name.endswith(".json"):
                continue  # a file still being written has a temporary name
            data = path.read_bytes()
            if path.name.startswith("resend-"):
                self._resend(json.loads(data))
                path.unlink()
                continue
            key = path.stem
            if key in self.carried:
                path.unlink()  # written again (a re-delivery): the same file
                continue
            if self._lose > 0:
                self._lose -= 1
                self.lost.append(key)
                path.unlink()
            else:
                self.carried[key] = Carried(key, time.time(), "sha256:" + hashlib.sha256(data).hexdigest(),
                                            json.loads(data))
                os.replace(path, self.keep / path.name)
            taken += 1
        return taken

    def _resend(self, request: Mapping[str, Any]) -> None:
        self.resend_requests.append(dict(request))
        wanted = {(e.get("kind"), e.get("key"), int(e.get("version") or 1)) for e in request.get("entries", [])}
        again = [d for d in self.dropped if (d.kind, d.key, d.version) in wanted]
        if again:
            for d in again:
                d.written = True
            self._files += 1
            path = self.drop / f"county-resend-{time.strftime('%Y%m%d%H%M%S')}-{self._files:04d}.jsonl"
            _write(path, ("\n".join(json.dumps(d.item, ensure_ascii=False) for d in again) + "\n").encode("utf-8"))

    def write_manifests(self, days: list[date] | None = None) -> list[Path]:
        """One manifest per day (China time) in the gateway's contract: what was carried in and dropped."""
        def day_of(ts: float) -> date:
            return datetime.fromtimestamp(ts, CHINA).date()

        def when(ts: float) -> str:
            return datetime.fromtimestamp(ts, CHINA).isoformat(timespec="milliseconds")

        wanted = set(days or []) | {day_of(c.at) for c in self.carried.values()} | {day_of(d.at) for d in self.dropped}
        wanted.add(datetime.now(CHINA).date())
        written = []
        for day in sorted(wanted):
            manifest = {
                "received": [{"key": c.key, "digest": c.digest, "at": when(c.at)} for c in self.carried.values()
                             if day_of(c.at) == day],
                "sent": [{"kind": d.kind, "key": d.key, "version": d.version, "at": when(d.at)} for d in self.dropped
                         if day_of(d.at) == day],
                "can_resend": True,
            }
            path = self.manifests / f"manifest-{day:%Y%m%d}.json"
            _write(path, json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8"))
            written.append(path)
        return written

    async def run(self, stopping: asyncio.Event, interval: float = 0.1) -> None:
        """Carry files across and keep the manifests current until ``stopping`` is set."""
        while not stopping.is_set():
            await asyncio.to_thread(self.collect)
            await asyncio.to_thread(self.write_manifests)
            try:
                await asyncio.wait_for(stopping.wait(), timeout=interval)
            except TimeoutError:
                pass


def frontend_config(drop: str, out: str, manifests: str) -> str:
    """The gateway.toml sections for the county front-end machine's folders (relative to gateway.toml)."""
    return f"""
[sources.county_results]           # the county departments' results and opinions, the county bureau's approvals
adapter = "filedrop"
mapping = "mappings/county_frontend.in.yaml"
path = "{drop}"
include = ["*.jsonl"]
stable_for = "50ms"
poll_interval = "100ms"

[sinks.county_out]                 # approval results and 并联审批 cases for the county, one file each
adapter = "filedrop"
mapping = "mappings/county_frontend.out.yaml"
path = "{out}"
fsync = false

[sinks.county_out.reconcile]       # the front-end machine's daily manifests; resend requests go beside the files
manifests = "{manifests}"

[exchange.counterparts.county]
sources = ["county_results"]
sinks = ["county_out"]
"""


__all__ = ["Carried", "CountyFrontEnd", "Dropped", "frontend_config"]
