"""`gateway demo`: a simulated county file drop → the gateway on SQLite → a simulated hall platform, and back.

Everything runs on loopback in one process, with real credentials (gateway.demo.credentials):
the gateway signs what it sends the hall (HMAC), the hall pushes its acceptances (受理) back
over mutual TLS with its own client certificate, personal fields are encrypted at rest, and
one push without credentials is refused and audited. A second act runs the two-way exchange
(gateway.demo.twoway): licences out to the market regulator (SOAP) and the county front-end
machine (files), a revocation and a suspension back to the hall, a 并联审批 case, and 对账. The working directory it leaves behind
(configuration, certificates, mappings, store, drop folders) is a normal gateway directory:
`gateway status -c DIR/gateway.toml` and the other commands work on it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from gateway.demo.counterparts import HallPlatform
from gateway.demo.credentials import DemoCredentials, prepare_credentials
from gateway.demo.generate import generate_items, write_xml_file
from gateway.shipped import copy_shipped_mappings, shipped_mappings

MAPPINGS_DIR = shipped_mappings()  # the installed gateway_mappings package (gateway.shipped)
BACKFILLED = 3  # records the demo reports late on purpose

CONFIG_TEMPLATE = """\
# Written by `gateway demo`. A county front-end machine drops provincial exchange XML
# into drop/county; the gateway maps it to the common schema, stores it, and delivers
# it to the hall platform's REST API, signed with HMAC. The hall platform pushes its
# acceptances (受理) back through the gateway's HTTPS API with its client certificate.
# Certificates are development ones from `gateway certs`: `gateway check` says so.

[gateway]
name = "demo"
store = "sqlite:///gateway.db"
adapters = ["filedrop", "rest", "soap", "push"]

[delivery]                         # retries until max_age; a circuit breaker per destination (docs/deliveries.md)
backoff_initial = "0.2s"
backoff_max = "5s"
poll_interval = "0.5s"
probe_max = "5s"

[api]
host = "127.0.0.1"
port = 0
tls_cert = "certs/server.crt"
tls_key = "certs/server.key"
client_ca = "certs/ca.crt"
client_certificates = "optional"

[encryption]                       # personal fields encrypted at rest (docs/security.md)
enabled = true
keys = {{ file = "secrets/field-keys" }}

[supervision]
destinations = ["hall_platform"]   # electronic-supervision alerts go to the hall too

[sources.county_drop]
adapter = "filedrop"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
path = "drop/county"
include = ["*.xml"]
stable_for = "200ms"
poll_interval = "200ms"

[sources.hall_platform]            # the hall pushes acceptances, completions and licences, as itself
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
accept = ["json"]
kinds = ["case", "acceptance", "completion", "approval_result"]

[sources.hall_platform.auth.client_certificate]
fingerprints = ["{hall_fingerprint}"]
subject = "{hall_subject}"

[sinks.hall_platform]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{hall_url}/api/records"
auth = {{ type = "hmac", key = {{ file = "secrets/hall-hmac.key" }}, key_encoding = "hex", key_id = "demo" }}

[sinks.hall_platform.reconcile]    # 对账 with the hall (gateway reconcile hall_platform --date D)
url = "{hall_url}/api/reconcile/manifest"
resend_url = "{hall_url}/api/reconcile/resend"

[exchange]
tick_interval = "5s"

[[routes]]
name = "county-to-hall"
sources = ["county_drop"]
to = ["hall_platform"]
"""


def prepare_workdir(workdir: Path, hall_url: str, credentials: DemoCredentials, ministry_url: str) -> Path:
    from gateway.demo.twoway import demo_sections

    workdir.mkdir(parents=True, exist_ok=True)
    copy_shipped_mappings(workdir / "mappings")
    (workdir / "drop" / "county").mkdir(parents=True, exist_ok=True)
    config = workdir / "gateway.toml"
    config.write_text(CONFIG_TEMPLATE.format(
        hall_url=hall_url, hall_fingerprint=credentials.hall_certificate.fingerprint_text,
        hall_subject=credentials.hall_certificate.subject) + demo_sections(ministry_url), encoding="utf-8")
    return config


class HallPusher:
    """The hall platform's side of the return flow: it accepts each case it received and pushes the
    acceptance (受理) to the gateway over mutual TLS, 25 a request."""

    def __init__(self, hall: HallPlatform, api_url: str, credentials: DemoCredentials) -> None:
        self.hall = hall
        self.url = f"{api_url}/api/v1/inbound/hall_platform/acceptance"
        self.credentials = credentials
        self.pushed = 0
        self.refused_status: int | None = None
        self._done: set[str] = set()

    def _context(self, with_certificate: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.credentials.pki.ca.cert))
        if with_certificate:
            cert = self.credentials.hall_certificate
            ctx.load_cert_chain(cert.cert, cert.key)
        return ctx

    async def intruder(self) -> None:
        """Someone on the network tries to push as the hall without its certificate: refused, audited."""
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._context(False))) as http:
            async with http.post(self.url, json=[{"dataType": "ACCEPT", "caseNo": "FORGED-1"}]) as r:
                self.refused_status = r.status

    def pending(self) -> list[str]:
        cases = [b.get("caseNo") for b in self.hall.records.values()
                 if isinstance(b, dict) and b.get("dataType") == "CASE"]
        return [c for c in cases if c and c not in self._done]

    async def run(self, stopping: asyncio.Event) -> None:
        # The hall pushes through its own client, so it knows what it sent (its side of 对账).
        self.hall.connect_gateway(self.url.rsplit("/", 1)[0], ssl_context=self._context(True))
        while not stopping.is_set():
            todo = self.pending()[:25]
            if not todo:
                await asyncio.sleep(0.2)
                continue
            now = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            items = [{"dataType": "ACCEPT", "caseNo": c, "deptName": "烟台市芝罘区行政审批服务局",
                      "handler": "王五", "status": "ACCEPTED", "acceptTime": now} for c in todo]
            try:
                answer = await self.hall.push(*items)
            except (RuntimeError, OSError, aiohttp.ClientError):
                await asyncio.sleep(0.5)
                continue
            if answer.get("quarantined", 0) == 0:
                self.pushed += len(todo)
                self._done.update(todo)


DEMO_USER = "demo"


async def demo_login(store: Any) -> str:
    """The demo's console account (an engineer) with a fresh random password; returns the password."""
    from gateway.security import credentials as people

    password = people.generate_password()
    hashed = await people.hash_password(password)
    if await store.get_user(DEMO_USER) is None:
        await store.add_user(DEMO_USER, "engineer", None, "演示账号", hashed, "gateway demo")
    else:  # a demo run again in the same directory: same account, new password
        await store.set_user_password(DEMO_USER, hashed, "gateway demo")
    return password


async def _with_demo_login(config: Any) -> str:
    """Make the login before the gateway starts, so the API starts with an account to log in with."""
    from gateway.store import make_store

    store = make_store(config.gateway.store, base=config.base_dir, audit_algorithm=config.gateway.audit_hash)
    await store.open()
    try:
        return await demo_login(store)
    finally:
        await store.close()


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
    workdir = (workdir or Path.cwd() / f"gateway-demo-{datetime.now():%Y%m%d-%H%M%S}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    from gateway.demo.county import CountyFrontEnd
    from gateway.demo.ministry import MarketMinistry
    from gateway.demo.twoway import second_act

    credentials = prepare_credentials(workdir)
    hall = HallPlatform(hmac_key=credentials.hmac_key)
    await hall.start()
    ministry = await MarketMinistry().start()
    drop = workdir / "drop"
    county = CountyFrontEnd(drop / "county-results", drop / "county-out", drop / "county-manifests")
    config_path = prepare_workdir(workdir, hall.url, credentials, ministry.url)
    echo(f"working directory: {workdir}")
    echo(f"simulated market-regulation ministry (SOAP, provincial exchange envelope) on {ministry.url}")
    echo(f"simulated hall platform listening on {hall.url} (checks the gateway's HMAC signatures)")
    gateway = Gateway(load_config(config_path))
    started = time.monotonic()
    ok = False
    pusher: HallPusher | None = None
    stop_pusher = asyncio.Event()
    pushing: asyncio.Task[None] | None = None
    carrying: asyncio.Task[None] | None = None
    login_url: str | None = None
    password = ""
    try:
        password = await _with_demo_login(gateway.config)
        await gateway.start()
        assert gateway.store is not None and gateway.api is not None
        echo(f"gateway API on {gateway.api.url} (HTTPS; the hall pushes with certificate "
             f"{credentials.hall_certificate.subject})")
        login_url = f"{gateway.api.url}/login"
        echo(f"console login: {login_url}  user {DEMO_USER}  password {password}")
        pusher = HallPusher(hall, gateway.api.url, credentials)
        await pusher.intruder()
        pushing = asyncio.create_task(pusher.run(stop_pusher))
        carrying = asyncio.create_task(county.run(stop_pusher))  # the county front-end machine's side
        dropper = asyncio.create_task(drop_files(workdir / "drop" / "county", n_records))
        last = ""
        while time.monotonic() - started < timeout:
            await asyncio.sleep(0.25)
            c = await gateway.store.counts()
            flowed = c.records - pusher.pushed + c.quarantined
            line = (f"received {c.records:,}  quarantined {c.quarantined:,}  delivered {c.delivered:,}  "
                    f"pending {c.pending + c.inflight:,}  dead-lettered {c.dead:,}  acceptances pushed back "
                    f"{pusher.pushed:,}")
            if line != last:
                echo(line)
                last = line
            alerts_due = min(BACKFILLED, n_records) if gateway.supervision is not None else 0
            if dropper.done() and flowed >= n_records and c.alerts >= alerts_due and c.pending + c.inflight == 0 \
                    and not pusher.pending():
                ok = True
                break
        if not dropper.done():
            dropper.cancel()
        act = None
        if ok:  # the second act: both directions, 并联审批, 对账
            ok = False
            try:
                act = await second_act(gateway, hall, ministry, county, echo,
                                       timeout=max(30.0, timeout - (time.monotonic() - started)))
                while time.monotonic() - started < timeout:
                    c = await gateway.store.counts()
                    if c.pending + c.inflight == 0:
                        ok = True
                        break
                    await asyncio.sleep(0.25)
            except TimeoutError as exc:
                echo(f"act 2: {exc}")
        elapsed = time.monotonic() - started
        c = await gateway.store.counts()
        hall_pushed = sum(1 for e in hall.sent if e["pushed"])
        county_drop = len(await gateway.store.received_between(["county_drop"], "0", "9"))
        departments = len(await gateway.store.received_between(["market_ministry", "county_results"], "0", "9"))
        made = c.records - county_drop - hall_pushed - departments
        echo("")
        echo("summary")
        echo(f"  records received     {c.records:,} ({county_drop:,} from the county drop, "
             f"{pusher.pushed:,} acceptances pushed by the hall over mutual TLS, {hall_pushed - pusher.pushed:,} "
             f"more records from the hall, {departments:,} from the supervising departments, {made:,} made by the "
             "gateway)")
        echo(f"  duplicates           {c.duplicates:,}")
        echo(f"  quarantined          {c.quarantined:,}")
        echo(f"  delivered            {c.delivered:,}")
        echo(f"  dead-lettered        {c.dead:,}")
        echo(f"  supervision alerts   {c.alerts:,}")
        echo(f"  audit entries        {c.audit_entries:,}")
        echo(f"  hall platform got    {hall.unique:,} unique records ({hall.received_raw:,} requests, "
             f"{len(hall.auth_failures):,} failing its HMAC check)")
        echo(f"  pushes refused       {1 if pusher.refused_status in (401, 403) else 0:,} (a push without the "
             f"hall's certificate: HTTP {pusher.refused_status}, audited as counterpart_refused)")
        echo("  personal fields      encrypted at rest (aes-256-gcm, key demo-1 in secrets/field-keys)")
        if act is not None:
            echo("two-way exchange (docs/exchange.md)")
            echo(f"  licences issued      {act.licences:,}: approval results to the market regulator {act.to_ministry:,} "
                 f"(SOAP), to the county front-end machine {act.to_county:,} (files)")
            echo(f"  results back         {act.results:,} supervision results: licence {act.revoked} revoked, licence "
                 f"{act.suspended} suspended, each tied to its case; {act.notices:,} notices told the hall")
            echo(f"  并联审批             case {act.parallel_case}: dispatched at once to 2 departments, both answered, "
                 f"{'the combined result is at the hall' if act.combined else 'no combined result'}")
            echo("  对账                 " + ", ".join(f"{k} {v}" for k, v in act.reconciled.items())
                 + f" ({act.lost_and_repaired:,} record the ministry had lost sent again)")
        echo(f"  elapsed              {elapsed:.1f}s")
        if not ok:
            echo(f"demo did not finish within {timeout:.0f}s")
    finally:
        stop_pusher.set()
        for task in (pushing, carrying):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        await gateway.stop()
        await hall.stop()
        await ministry.stop()
    echo("")
    if login_url:
        echo(f"console login: user {DEMO_USER}  password {password}  (role engineer; personal data shows masked)")
        echo(f"  `gateway run -c {config_path}` serves the console at {login_url.rsplit(':', 1)[0]}:<port>/console/ "
             "(docs/console.md) ([api] port 0 "
             "picks a free one: set a port to keep one; the certificate is from the demo's development CA)")
        echo("")
    echo("look around:")
    echo(f"  gateway status -c {config_path}")
    echo(f"  gateway deliveries quarantine -c {config_path}")
    echo(f"  gateway audit verify -c {config_path}")
    echo(f"  gateway check -c {config_path}        (warns: development CA and seal key)")
    echo(f"  gateway encryption status -c {config_path}")
    echo(f"  gateway users list -c {config_path}")
    echo(f"  gateway exchange health -c {config_path}")
    echo(f"  gateway exchange links --unresolved -c {config_path}")
    echo(f"  gateway exchange reconciliations -c {config_path}")
    return ok
