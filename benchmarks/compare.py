"""The gateway beside its peers, end to end, in one command: Node-RED, bare Python, a bare durable loader.

    .venv/bin/python benchmarks/compare.py                  # 100,000 records, 3 interleaved repeats
    .venv/bin/python benchmarks/compare.py --records 20000 --repeats 1 --markdown out.md
    make bench-compare

Scenarios (issue 12), each contestant in its own fresh processes, on loopback only:

- **file drop → map → POST**, 1 and 50 records per POST, 8 requests in flight, into the counting
  sink (benchmarks/counting_sink.py, in its own process, deduping by idempotency key):
  - *gateway*: a real ``gateway run`` in a temporary folder: file-drop source, the shipped provincial
    mapping, SQLite store (durable: records, outbox, hash-chained audit, seals), REST sink with the
    shipped hall-platform mapping;
  - *Node-RED*: the pinned Node-RED (installed by this script from the npm registry into
    benchmarks/peers/node-red/) running benchmarks/peers/node-red/flow.json headless, core nodes only;
  - *bare Python*: benchmarks/peers/bare_post.py, read → map → POST, nothing durable.
  The clock starts when the file is renamed into the drop folder and stops at the sink's last new
  record. Before timing, a small verification round checks that the three send the same bodies
  (apart from the receipt time) under the same idempotency keys.
- **file ingest**: the gateway's ``ingest_file`` beside the bare durable loader (iterparse → JSON →
  executemany, synchronous=FULL) on the same file, both from bench_ingest.py.
- **push**: acknowledgement latency of POST /api/v1/inbound at 1,000 records/s offered (open loop,
  one record per request, a bearer token; ``--push-rates 250,500,1000`` for several rates), and
  records/s end to end from the first push to the sink's last record (pushes of 50, batch delivery
  of 50). The gateway runs two push workers (``[api] push_workers = 2``, docs/intake.md) and the load
  goes to their port; ``--push-workers 0`` measures pushes served by the gateway process itself.

``--latency 20ms`` makes the sink hold every answer; ``--skip`` leaves a contestant or scenario
out; ``--json`` keeps every run's figures and ``--report-from`` prints their tables again.

Repeats are interleaved (every contestant once per repeat, the order rotating), so noise on this
shared machine hits all alike; ratios are taken within a repeat and reported with their spread.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script
from bench_ingest import ensure_file  # noqa: E402 - the data file generator (demo generator, seed 11)
from counting_sink import parse_seconds  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
NODE_RED = BENCH / "peers" / "node-red"
BARE = BENCH / "peers" / "bare_post.py"
SINK = BENCH / "counting_sink.py"
PUSH_LOAD = BENCH / "_push_load.py"
CONTESTANTS = ("gateway", "node-red", "bare-python")
DESTINATION = "counting_sink"

FILEDROP_CONFIG = """\
[gateway]
store = "sqlite:///gateway.db"
adapters = ["filedrop", "rest"]
[api]
enabled = false
[supervision]
enabled = false   # its back-fill alerts would be routed to the sink too; not part of this job
[delivery]
concurrency = {in_flight}
[sources.county_drop]
adapter = "filedrop"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
path = "drop"
instance = "bench"
stable_for = "0s"         # the sender renames a complete file into the folder
poll_interval = "100ms"
[sinks.{destination}]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{url}"
batch_size = {batch}
max_connections = {in_flight}
[[routes]]
name = "county-to-sink"
sources = ["county_drop"]
to = ["{destination}"]
"""

PUSH_CONFIG = """\
[gateway]
store = "sqlite:///gateway.db"
adapters = ["push", "rest"]
[api]
port = {port}
{push_workers}[supervision]
enabled = false
[delivery]
concurrency = {in_flight}
[sources.hall_platform]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
accept = ["json"]
auth = {{ tokens = [{{ sha256 = "{token_sha256}", label = "bench" }}] }}   # the hall proves who it is
[sinks.{destination}]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{url}"
batch_size = {batch}
max_connections = {in_flight}
[[routes]]
name = "hall-to-sink"
sources = ["hall_platform"]
to = ["{destination}"]
"""


class BenchError(Exception):
    """A run that could not be measured; the message says which contestant and why."""


# --------------------------------------------------------------------------- processes


def _cpu_of(pid: int, with_children: bool) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: children already reaped
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live descendants (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += _cpu_of(p, with_children=True)
        todo.extend(parents.get(p, ()))
    return total


class Proc:
    """A child process with its output in a log file, stopped by its own id."""

    def __init__(self, name: str, cmd: list[str], log: Path, *, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        self.rusage_cpu: float | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if needle in text:
                return text
            if self.popen.poll() is not None:
                raise BenchError(f"{self.name} exited ({self.popen.returncode}) before it was ready:\n{text[-3000:]}")
            time.sleep(0.05)
        raise BenchError(f"{self.name} was not ready within {timeout:.0f}s (waiting for {needle!r}):\n"
                         f"{self.text()[-3000:]}")

    def reap(self, timeout: float) -> None:
        """Wait for a process that ends by itself, keeping its CPU time (which /proc loses at exit)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.popen.returncode = os.waitstatus_to_exitcode(status)
                self.rusage_cpu = usage.ru_utime + usage.ru_stime
                return
            time.sleep(0.05)
        raise BenchError(f"{self.name} did not finish within {timeout:.0f}s")

    def stop(self, grace: float = 30.0) -> None:
        if self.popen.returncode is None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._out.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(url: str, timeout: float = 30.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL we built
        return json.loads(resp.read())


class Sink:
    """The counting sink in its own process."""

    def __init__(self, run_dir: Path, latency: float, keep_bodies: bool = False) -> None:
        cmd = [sys.executable, str(SINK), "--latency", str(latency)] + (["--keep-bodies"] if keep_bodies else [])
        self.proc = Proc("counting sink", cmd, run_dir / "sink.log")
        first = self.proc.wait_for("\n", 60).splitlines()[0]
        self.url = json.loads(first)["url"]

    def stats(self) -> dict[str, Any]:
        return http_json(self.url + "/stats")

    def bodies(self) -> dict[str, Any]:
        return http_json(self.url + "/bodies", timeout=120)

    def wait_unique(self, n: int, timeout: float, contestant: Proc | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        stats = self.stats()
        while stats["unique"] < n:
            if time.monotonic() > deadline:
                raise BenchError(f"the sink got {stats['unique']:,} of {n:,} records within {timeout:.0f}s "
                                 f"({stats['rejected_requests']} requests refused: {stats['last_rejection']})")
            # bare-python ends by itself; polling would reap it and lose its CPU time (Proc.reap keeps it)
            if contestant is not None and contestant.name != "bare-python" and contestant.popen.poll() is not None:
                raise BenchError(f"{contestant.name} exited ({contestant.popen.returncode}) with "
                                 f"{stats['unique']:,} of {n:,} records at the sink:\n{contestant.text()[-3000:]}")
            time.sleep(0.2)
            stats = self.stats()
        return stats


# --------------------------------------------------------------------------- contestants


def shipped_mapping_id() -> str:
    """What the gateway writes in meta.mapping, handed to the peers so they follow a new mapping version."""
    sys.path.insert(0, str(BENCH / "peers"))
    from bare_post import shipped_mapping_id as read

    return read()


def ensure_node_red() -> tuple[str, str]:
    """Install the pinned Node-RED from package-lock.json when missing; (node version, node-red version)."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        raise BenchError("Node.js and npm are needed for the Node-RED peer (e.g. apt-get install nodejs npm); "
                         "or run with --skip node-red")
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major, minor = (int(x) for x in node_version.lstrip("v").split(".")[:2])
    if (major, minor) < (18, 5):
        raise BenchError(f"Node-RED 4 needs Node.js 18.5 or newer; this machine has {node_version}")
    wanted = json.loads((NODE_RED / "package.json").read_text())["dependencies"]["node-red"]
    installed = NODE_RED / "node_modules" / "node-red" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != wanted:
        print(f"installing Node-RED {wanted} into {NODE_RED.relative_to(ROOT)}/node_modules (npm ci) …", flush=True)
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_RED,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"npm ci in {NODE_RED} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return node_version, json.loads(installed.read_text())["version"]


def start_gateway(run_dir: Path, config: str) -> Proc:
    shutil.copytree(ROOT / "mappings", run_dir / "mappings")
    (run_dir / "drop").mkdir(exist_ok=True)
    (run_dir / "gateway.toml").write_text(config, encoding="utf-8")
    proc = Proc("gateway", [sys.executable, "-m", "gateway", "run", "-c", "gateway.toml"], run_dir / "gateway.log",
                cwd=run_dir)
    proc.wait_for(" running: ", 120)
    return proc


def start_contestant(name: str, run_dir: Path, sink_url: str, batch: int, in_flight: int) -> Proc:
    drop = run_dir / "drop"
    drop.mkdir(parents=True, exist_ok=True)
    if name == "gateway":
        return start_gateway(run_dir, FILEDROP_CONFIG.format(url=sink_url, batch=batch, in_flight=in_flight,
                                                             destination=DESTINATION))
    if name == "node-red":
        user_dir = run_dir / "node-red"
        user_dir.mkdir()
        flow = user_dir / "flow.json"  # a copy: Node-RED may write beside its flow file
        shutil.copyfile(NODE_RED / "flow.json", flow)
        env = dict(os.environ, DROP_DIR=str(drop), SINK_URL=sink_url, BATCH=str(batch), IN_FLIGHT=str(in_flight),
                   GW_SYSTEM="county_drop", GW_DESTINATION=DESTINATION, GW_MAPPING=shipped_mapping_id(),
                   NODE_RED_PORT=str(free_port()))
        proc = Proc("node-red", ["node", str(NODE_RED / "node_modules" / "node-red" / "red.js"), "--settings",
                                 str(NODE_RED / "settings.js"), "--userDir", str(user_dir), str(flow)],
                    run_dir / "node-red.log", cwd=user_dir, env=env)
        proc.wait_for("Started flows", 120)
        return proc
    if name == "bare-python":
        proc = Proc("bare-python", [sys.executable, str(BARE), "--drop", str(drop), "--url", sink_url,
                                    "--batch", str(batch), "--in-flight", str(in_flight),
                                    "--destination", DESTINATION, "--mapping-id", shipped_mapping_id()],
                    run_dir / "bare.log")
        proc.wait_for('"ready"', 120)
        return proc
    raise ValueError(name)


def drop_file(source: Path, drop: Path) -> float:
    """Copy under a name no contestant takes, then rename into place; returns the moment of the rename."""
    staging = drop / ".incoming.tmp"
    shutil.copyfile(source, staging)
    with open(staging, "rb") as f:
        os.fsync(f.fileno())
    t0 = time.monotonic()
    os.rename(staging, drop / "approvedatainfo.xml")
    return t0


@dataclass
class Result:
    scenario: str
    contestant: str
    repeat: int
    records: int
    seconds: float
    rate: float
    batch: int = 0
    cpu_seconds: float | None = None
    sink_cpu_seconds: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def run_e2e(name: str, data: Path, n: int, batch: int, in_flight: int, repeat: int, args: argparse.Namespace,
            keep_bodies: bool = False, refused: int = 0) -> tuple[Result, dict[str, Any] | None]:
    """One timed run; ``n`` records must reach the sink, ``refused`` more in the file must be refused."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-{batch}-", dir=args.workdir))
    failed = False
    sink = Sink(run_dir, args.latency, keep_bodies)
    proc: Proc | None = None
    try:
        proc = start_contestant(name, run_dir, sink.url, batch, in_flight)
        cpu0, sink_cpu0 = tree_cpu(proc.pid), tree_cpu(sink.proc.pid)
        t0 = drop_file(data, run_dir / "drop")
        stats = sink.wait_unique(n, args.run_timeout, proc)
        if name == "bare-python":
            proc.reap(60)
            cpu = (proc.rusage_cpu or 0.0) - cpu0
            done = json.loads(proc.text().strip().splitlines()[-1])
            if done.get("invalid") != refused or done.get("failed_records"):
                raise BenchError(f"bare-python: expected {refused} invalid records and no failed POST: {done}")
        else:
            cpu = tree_cpu(proc.pid) - cpu0
        sink_cpu = tree_cpu(sink.proc.pid) - sink_cpu0
        time.sleep(0.3)  # anything sent twice arrives now, and shows as repeats
        stats = sink.stats()
        bodies = sink.bodies() if keep_bodies else None
        seconds = stats["last_new_at"] - t0
        result = Result("e2e", name, repeat, n, seconds, n / seconds, batch, cpu, sink_cpu,
                        {"requests": stats["requests"], "records_raw": stats["records_raw"],
                         "repeats": stats["repeats"], "unique": stats["unique"]})
        return result, bodies
    except BenchError as exc:
        failed = True
        raise BenchError(f"{name}, {batch} per POST: {exc}\n(logs kept in {run_dir})") from None
    finally:
        if proc is not None:
            proc.stop()
        sink.proc.stop()
        if not (args.keep_runs or failed):
            shutil.rmtree(run_dir, ignore_errors=True)


def timed_e2e(name: str, data: Path, n: int, batch: int, in_flight: int, repeat: int,
              args: argparse.Namespace) -> Result:
    return run_e2e(name, data, n, batch, in_flight, repeat, args)[0]


def verification_file(n: int, bad_every: int, path: Path) -> int:
    """``n`` cases from the demo generator, every ``bad_every``-th one broken (a wrong check character, an
    impossible date, a missing case number) and every third date as ``YYYY-MM-DD hh:mm:ss``; returns how
    many are good."""
    from datetime import datetime

    from gateway.demo.generate import approvedatainfo_xml, case_fields, write_xml_file

    rng = random.Random(23)
    bads = ("credit_code", "date", "missing")
    items, good = [], 0
    for i in range(n):
        bad = bads[(i // bad_every) % 3] if i % bad_every == bad_every - 1 else None
        fields = case_fields(i, rng, bad=bad)
        if i % 3 == 0 and bad != "date":
            fields["SBSJ"] = f"{datetime.strptime(fields['SBSJ'], '%Y%m%d%H%M%S'):%Y-%m-%d %H:%M:%S}"
        items.append(approvedatainfo_xml(fields))
        good += bad is None
    write_xml_file(path, items)
    return good


def verify(names: list[str], batches: list[int], n: int, in_flight: int, args: argparse.Namespace) -> None:
    """The contestants must send the same records: same keys, same bodies apart from the receipt time,
    and refuse the same broken ones."""
    data = Path(tempfile.mkdtemp(prefix="bench-verify-", dir=args.workdir)) / "verify.xml"
    good = verification_file(n, 10, data)

    def comparable(bodies: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, body in bodies.items():
            body = json.loads(json.dumps(body))
            body.get("meta", {}).pop("receivedAt", None)
            out[key] = body
        return out

    for batch in batches:
        seen: dict[str, dict[str, Any]] = {}
        for name in names:
            _, bodies = run_e2e(name, data, good, batch, in_flight, 0, args, keep_bodies=True, refused=n - good)
            assert bodies is not None
            seen[name] = comparable(bodies)
        reference_name = names[0]
        reference = seen[reference_name]
        for name in names[1:]:
            got = seen[name]
            if set(got) != set(reference):
                raise BenchError(f"verification, {batch} per POST: {name} sent {len(got)} keys, {reference_name} "
                                 f"{len(reference)}; {len(set(got) ^ set(reference))} differ")
            differing = [k for k in reference if got[k] != reference[k]]
            if differing:
                k = differing[0]
                raise BenchError(f"verification, {batch} per POST: {len(differing)} bodies of {name} differ from "
                                 f"{reference_name}'s, e.g. key {k}:\n {name}: {got[k]}\n {reference_name}: "
                                 f"{reference[k]}")
        print(f"verified, {batch} per POST: {', '.join(names)} sent the same {good} bodies under the same keys "
              f"and refused the same {n - good} broken records", flush=True)
    shutil.rmtree(data.parent, ignore_errors=True)


# --------------------------------------------------------------------------- file ingest and push


def run_ingest(mode: str, data: Path, n: int, repeat: int, args: argparse.Namespace) -> Result:
    """bench_ingest.py's own child modes: 'baseline' (bare durable loader) and 'gateway' (ingest_file)."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-ingest-{mode}-", dir=args.workdir))
    try:
        done = subprocess.run([sys.executable, str(BENCH / "bench_ingest.py"), "--batch", "1000", "--child", mode,
                               str(data), str(run_dir / "g.db")], capture_output=True, text=True,
                              timeout=args.run_timeout)
        if done.returncode != 0:
            raise BenchError(f"file ingest ({mode}) failed:\n{done.stderr[-3000:]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
        name = "bare-loader" if mode == "baseline" else "gateway"
        rss = out["peak_rss_mb"] + out.get("helper_peak_rss_mb", 0.0)
        return Result("ingest", name, repeat, out["records"], out["seconds"], out["rate"],
                      detail={"peak_rss_mb": round(rss, 1)})
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def run_push(kind: str, repeat: int, args: argparse.Namespace, rate: float = 0.0) -> Result:
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-push-{kind}-", dir=args.workdir))
    failed = False
    sink = Sink(run_dir, args.latency)
    gw: Proc | None = None
    try:
        port = free_port()
        # With push workers (gateway.api.push_workers) the load goes to their port; without, to the API's.
        push_port = free_port() if args.push_workers else port
        workers = f"push_workers = {args.push_workers}\npush_port = {push_port}\n" if args.push_workers else ""
        token = secrets.token_urlsafe(32)  # a fresh bearer token per run, handed to the load by environment
        gw = start_gateway(run_dir, PUSH_CONFIG.format(port=port, url=sink.url, batch=args.push_batch,
                                                       in_flight=args.in_flight, destination=DESTINATION,
                                                       token_sha256=hashlib.sha256(token.encode()).hexdigest(),
                                                       push_workers=workers))
        # The gateway says it is running only once its push workers listen.
        url = f"http://127.0.0.1:{push_port}/api/v1/inbound/hall_platform/case"
        if kind == "ack":
            cmd = [sys.executable, str(PUSH_LOAD), "ack", "--url", url, "--rate", str(rate),
                   "--seconds", str(args.push_seconds), "--client", args.push_client]
            expected = int(rate * (args.push_seconds + 1.0))
        else:
            cmd = [sys.executable, str(PUSH_LOAD), "flood", "--url", url, "--records", str(args.push_records),
                   "--per-request", str(args.push_batch), "--in-flight", str(args.in_flight)]
            expected = args.push_records
        cpu0 = tree_cpu(gw.pid)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.run_timeout,
                              env=dict(os.environ, BENCH_PUSH_TOKEN=token))
        if done.returncode != 0:
            raise BenchError(f"push load ({kind}) failed:\n{done.stderr[-3000:]}")
        load = json.loads(done.stdout.strip().splitlines()[-1])
        accepted = sum(v for k, v in load["statuses"].items() if k in ("200", "202"))
        if kind == "ack":
            # An overloaded server may refuse connections: those requests are failures to report, not a broken
            # run; only what was acknowledged must reach the sink.
            refused = expected - accepted
            stats = sink.wait_unique(accepted, args.run_timeout, gw)
            detail = {k: round(load[k], 1) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "sender_behind_ms",
                                                      "acknowledged_rate")}
            detail["failed_requests"] = refused
            detail["push_workers"] = args.push_workers
            if refused:
                detail["errors"] = load["errors"] or {k: v for k, v in load["statuses"].items()
                                                      if k not in ("200", "202")}
            return Result("push-ack", "gateway", repeat, load["measured"], load["seconds"], rate,
                          cpu_seconds=tree_cpu(gw.pid) - cpu0, detail=detail)
        if accepted != math.ceil(expected / args.push_batch):
            raise BenchError(f"push load ({kind}): answers {load['statuses']} {load['errors']}")
        stats = sink.wait_unique(expected, args.run_timeout, gw)
        cpu = tree_cpu(gw.pid) - cpu0
        seconds = stats["last_new_at"] - load["first_sent_at"]
        return Result("push-e2e", "gateway", repeat, expected, seconds, expected / seconds, args.push_batch, cpu,
                      detail={"push_rate": round(load["push_rate"]), "requests": stats["requests"],
                              "push_workers": args.push_workers})
    except BenchError as exc:
        failed = True
        raise BenchError(f"push ({kind}): {exc}\n(logs kept in {run_dir})") from None
    finally:
        if gw is not None:
            gw.stop()
        sink.proc.stop()
        if not (args.keep_runs or failed):
            shutil.rmtree(run_dir, ignore_errors=True)


# --------------------------------------------------------------------------- report


def machine(node: tuple[str, str] | None) -> dict[str, str]:
    import aiohttp

    facts = {
        "cpu": cpu_model(), "cores": str(os.cpu_count()), "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "aiohttp": aiohttp.__version__,
    }
    if node is not None:
        facts["node"], facts["node_red"] = node
    try:
        facts["memory"] = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
        facts["load_at_start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (OSError, ValueError):
        pass
    return facts


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return "—"
    return f"±{(max(values) - min(values)) / 2 / statistics.median(values) * 100:.0f} %"


def fmt_range(values: list[float], digits: int = 2) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def report(results: list[Result], facts: dict[str, str], args: argparse.Namespace, command: str) -> str:
    lines = [f"Command: `{command}`", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()), ""]
    e2e = [r for r in results if r.scenario == "e2e"]
    if e2e:
        lines += [f"File drop → map → POST, {args.records:,} records, {args.in_flight} requests in flight, "
                  f"sink latency {args.latency * 1000:g} ms, {args.repeats} interleaved repeat(s); "
                  "median (min–max) records/s, CPU µs per record of the contestant's processes "
                  "(and of the sink):", "",
                  "| records per POST | contestant | records/s | repeats spread | CPU µs/record | sink CPU µs/record |",
                  "|---|---|---|---|---|---|"]
        for batch in args.batches:
            for name in CONTESTANTS:
                rs = [r for r in e2e if r.batch == batch and r.contestant == name]
                if not rs:
                    continue
                rates = [r.rate for r in rs]
                cpu = statistics.median([(r.cpu_seconds or 0) / r.records * 1e6 for r in rs])
                scpu = statistics.median([(r.sink_cpu_seconds or 0) / r.records * 1e6 for r in rs])
                lines.append(f"| {batch} | {name} | {fmt_range(rates, 0)} | {spread(rates)} | {cpu:.0f} | {scpu:.0f} |")
        lines += ["", "Ratios, each taken within one repeat (median, min–max over repeats). Records/s is what the "
                  "targets name; CPU per record (the other contestant's over the gateway's) is steadier on a shared "
                  "machine, because it does not depend on how much CPU the others left:", "",
                  "| records per POST | gateway / Node-RED, records/s | gateway / bare Python, records/s "
                  "| Node-RED / gateway, CPU per record | bare Python / gateway, CPU per record | target |",
                  "|---|---|---|---|---|---|"]

        def per_repeat(batch: int, other: str, value: Callable[[Result, Result], float]) -> str:
            ratios = []
            for rep in range(1, args.repeats + 1):
                g = [r for r in e2e if r.batch == batch and r.repeat == rep and r.contestant == "gateway"]
                o = [r for r in e2e if r.batch == batch and r.repeat == rep and r.contestant == other]
                if g and o:
                    ratios.append(value(g[0], o[0]))
            return fmt_range(ratios) if ratios else "—"

        def rate_ratio(g: Result, o: Result) -> float:
            return g.rate / o.rate

        def cpu_ratio(g: Result, o: Result) -> float:
            return (o.cpu_seconds or 0) / o.records / ((g.cpu_seconds or 0) / g.records)

        for batch in args.batches:
            target = "≥ 2× Node-RED" if batch >= 50 else "≥ 1.5× Node-RED" if batch == 1 else "—"
            lines.append(f"| {batch} | {per_repeat(batch, 'node-red', rate_ratio)} | "
                         f"{per_repeat(batch, 'bare-python', rate_ratio)} | {per_repeat(batch, 'node-red', cpu_ratio)} | "
                         f"{per_repeat(batch, 'bare-python', cpu_ratio)} | {target} |")
        repeats = {r.detail.get("repeats", 0) for r in e2e}
        lines += ["", f"Every run delivered all {args.records:,} records; records the sink saw twice: "
                      f"{', '.join(str(x) for x in sorted(repeats))} (raw repeats across runs)."]
    ingest = [r for r in results if r.scenario == "ingest"]
    if ingest:
        lines += ["", f"File ingest of the same {args.records:,}-record file into SQLite (synchronous=FULL):", "",
                  "| contestant | records/s | repeats spread | peak RSS (all processes) |", "|---|---|---|---|"]
        for name in ("gateway", "bare-loader"):
            rs = [r for r in ingest if r.contestant == name]
            if rs:
                rss = max(r.detail["peak_rss_mb"] for r in rs)
                lines.append(f"| {name} | {fmt_range([r.rate for r in rs], 0)} | {spread([r.rate for r in rs])} | "
                             f"{rss:.0f} MB |")
        ratios = []
        for rep in range(1, args.repeats + 1):
            g = [r for r in ingest if r.repeat == rep and r.contestant == "gateway"]
            b = [r for r in ingest if r.repeat == rep and r.contestant == "bare-loader"]
            if g and b:
                ratios.append(g[0].rate / b[0].rate)
        if ratios:
            lines += ["", f"Ratio gateway / bare loader: {fmt_range(ratios)} (target ≥ 0.6)."]
    acks = [r for r in results if r.scenario == "push-ack"]
    if acks:
        lines += ["", f"Push acknowledgement, one record per request, open loop for {args.push_seconds:g} s "
                      f"(after 1 s of warm-up), latency from each request's scheduled time, delivery of "
                      f"{args.push_batch} per POST running alongside, {_workers(acks)}:", "",
                  "| offered records/s | repeat | p50 ms | p90 ms | p99 ms | max ms | acknowledged records/s "
                  "| sender behind schedule ms |", "|---|---|---|---|---|---|---|---|"]
        for r in sorted(acks, key=lambda r: (r.rate, r.repeat)):
            d = r.detail
            acked = f"{d['acknowledged_rate']:,.0f}" if "acknowledged_rate" in d else "—"
            lines.append(f"| {r.rate:g} | {r.repeat} | {d['p50_ms']} | {d['p90_ms']} | **{d['p99_ms']}** | "
                         f"{d['max_ms']} | {acked} | {d['sender_behind_ms']} |")
        lines.append("")
        lines.append("Target: p99 ≤ 50 ms.")
    floods = [r for r in results if r.scenario == "push-e2e"]
    if floods:
        rates = [r.rate for r in floods]
        lines += ["", f"Push end to end: {args.push_records:,} records pushed {args.push_batch} per request, "
                      f"{args.in_flight} in flight, delivered {args.push_batch} per POST, {_workers(floods)}: "
                      f"{fmt_range(rates, 0)} records/s ({spread(rates)}); push side alone "
                      f"{statistics.median([r.detail['push_rate'] for r in floods]):,.0f} records/s. "
                      "Target ≥ 5,000 records/s."]
    return "\n".join(lines) + "\n"


def _workers(runs: list[Result]) -> str:
    """How the runs served pushes, from what each recorded (runs saved before push workers have no count: none)."""
    counts = sorted({int(r.detail.get("push_workers", 0)) for r in runs})
    if counts == [0]:
        return "pushes served by the gateway process"
    return f"{'/'.join(map(str, counts))} push worker process(es) ([api] push_workers)"


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000, help="records in the dropped file (default 100000)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    ap.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 50],
                    help="records per POST, comma-separated (default 1,50)")
    ap.add_argument("--in-flight", type=int, default=8, help="requests in flight (default 8)")
    ap.add_argument("--latency", type=parse_seconds, default=0.0,
                    help="how long the sink holds each answer, e.g. 20ms (default 0)")
    ap.add_argument("--skip", action="append", default=[],
                    choices=["node-red", "bare-python", "gateway", "ingest", "push", "verify"],
                    help="leave a contestant or scenario out (repeatable)")
    ap.add_argument("--verify-records", type=int, default=200, help="records in the verification round")
    ap.add_argument("--push-rates", type=lambda s: [float(x) for x in s.split(",")], default=[1000.0],
                    help="offered push rates for the ack test, records/s, comma-separated (default 1000)")
    ap.add_argument("--push-seconds", type=float, default=10.0, help="measured seconds of the ack test")
    ap.add_argument("--push-records", type=int, default=20_000, help="records in the push end-to-end test")
    ap.add_argument("--push-batch", type=int, default=50, help="records per push and per delivery POST")
    ap.add_argument("--push-workers", type=int, default=2,
                    help="[api] push_workers of the gateway in the push tests (default 2; 0: pushes served by the "
                         "gateway process itself)")
    ap.add_argument("--push-client", choices=("lean", "aiohttp"), default="lean",
                    help="the load's HTTP client for the acknowledgement figure (see _push_load.py)")
    ap.add_argument("--run-timeout", type=float, default=0.0, help="seconds before a run counts as failed "
                    "(default: 120 + records / 200)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the temporary run folders go")
    ap.add_argument("--keep-runs", action="store_true", help="keep each run's folder and logs")
    ap.add_argument("--markdown", type=Path, help="also write the summary to this file")
    ap.add_argument("--json", type=Path, help="also write every run's figures to this file")
    ap.add_argument("--report-from", type=Path, help="print the summary of a --json file from an earlier run, "
                    "without running anything")
    args = ap.parse_args()
    if args.report_from:
        saved = json.loads(args.report_from.read_text(encoding="utf-8"))
        run_args = ap.parse_args(saved["command"].split()[2:])
        summary = report([Result(**r) for r in saved["results"]], saved["machine"], run_args, saved["command"])
        for f in saved.get("failures", []):
            summary += f"\n- failed: {f.splitlines()[0]}"
        print(summary)
        return
    if args.records < 1 or args.repeats < 1 or args.in_flight < 1 or min(args.batches) < 1:
        ap.error("--records, --repeats, --in-flight and --batches must be at least 1")
    if not args.run_timeout:
        args.run_timeout = 120 + args.records / 200
    command = "python benchmarks/compare.py " + " ".join(sys.argv[1:])

    names = [n for n in CONTESTANTS if n not in args.skip]
    try:
        node = ensure_node_red() if "node-red" in names else None
        facts = machine(node)
        print("machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()), flush=True)
        if "verify" not in args.skip and len(names) > 1:
            verify(names, args.batches, args.verify_records, args.in_flight, args)
        data = ensure_file(args.records)
    except BenchError as exc:
        print(f"compare.py: {exc}", file=sys.stderr)
        sys.exit(1)
    results: list[Result] = []
    failures: list[str] = []

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps({"machine": facts, "command": command, "failures": failures,
                                             "results": [asdict(r) for r in results]}, indent=1), encoding="utf-8")

    def measure(what: str, run: Callable[..., Result], *run_args: Any) -> None:
        """One run; a failed one is reported and the others go on, so one stall does not void the rest."""
        try:
            result = run(*run_args)
        except BenchError as exc:
            failures.append(f"{what}: {exc}")
            print(f"  FAILED {what}: {exc}", flush=True)
            save()
            return
        results.append(result)
        extra = ""
        if result.cpu_seconds is not None:
            extra = f", CPU {result.cpu_seconds / result.records * 1e6:,.0f} µs/record"
        print(f"  repeat {result.repeat} {result.scenario:8s} {result.contestant:11s} "
              f"{'batch ' + str(result.batch) if result.batch else '':9s} {result.records:>8,} in "
              f"{result.seconds:7.2f} s = {result.rate:>9,.0f}/s{extra} {result.detail or ''}", flush=True)
        save()

    for rep in range(1, args.repeats + 1):
        print(f"repeat {rep} of {args.repeats}", flush=True)
        order = names[rep - 1:] + names[:rep - 1]  # rotate, so no contestant always runs first
        for batch in args.batches:
            for name in order:
                measure(f"repeat {rep}, {name}, {batch} per POST", timed_e2e, name, data, args.records, batch,
                        args.in_flight, rep, args)
        if "ingest" not in args.skip:
            for mode in (["baseline", "gateway"] if rep % 2 else ["gateway", "baseline"]):
                measure(f"repeat {rep}, file ingest {mode}", run_ingest, mode, data, args.records, rep, args)
        if "push" not in args.skip:
            for rate in args.push_rates:
                measure(f"repeat {rep}, push ack at {rate:g}/s", run_push, "ack", rep, args, rate)
            measure(f"repeat {rep}, push end to end", run_push, "flood", rep, args)
    summary = report(results, facts, args, command)
    if failures:
        summary += "\nFailed runs (left out of the figures above):\n\n" + "\n".join(
            f"- {f.splitlines()[0]}" for f in failures) + "\n"
    print("\n" + summary)
    if args.markdown:
        args.markdown.write_text(summary, encoding="utf-8")
    save()
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
