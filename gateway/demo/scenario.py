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
import signal
import ssl
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from gateway.demo.counterparts import HallPlatform
from gateway.demo.credentials import DemoCredentials, prepare_credentials
from gateway.demo.generate import generate_items, write_xml_file
from gateway.demo.province import PROVINCE_TOKEN, SILENCE, province_sections
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
tick_interval = "1s"               # watchdogs and 并联审批 deadlines, at demo scale

[[routes]]
name = "county-to-hall"
sources = ["county_drop"]
to = ["hall_platform"]
"""


def prepare_workdir(workdir: Path, hall_url: str, credentials: DemoCredentials, ministry_url: str,
                    province_url: str | None = None) -> Path:
    from gateway.demo.twoway import demo_sections

    workdir.mkdir(parents=True, exist_ok=True)
    copy_shipped_mappings(workdir / "mappings")
    (workdir / "drop" / "county").mkdir(parents=True, exist_ok=True)
    config = workdir / "gateway.toml"
    token = workdir / "secrets" / "province.token"
    token.write_text(PROVINCE_TOKEN + "\n", encoding="utf-8")
    token.chmod(0o600)
    config.write_text(CONFIG_TEMPLATE.format(
        hall_url=hall_url, hall_fingerprint=credentials.hall_certificate.fingerprint_text,
        hall_subject=credentials.hall_certificate.subject) + demo_sections(ministry_url)
        + (province_sections(province_url) if province_url else ""), encoding="utf-8")
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
        # only the county's cases: the province's arrive at the hall already accepted by the province
        cases = [b.get("caseNo") for b in self.hall.records.values()
                 if isinstance(b, dict) and b.get("dataType") == "CASE"
                 and b.get("meta", {}).get("sourceSystem") == "county_drop"]
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


async def drop_files(folder: Path, n_records: int | None, stopping: asyncio.Event, *, per_file: int = 50,
                     pause: float = 0.05) -> int:
    """The county side: files written under a temporary name and renamed when complete, until ``n_records``
    (or, without it, until ``stopping``). Returns how many records it wrote."""
    written = 0
    index = 0
    while (n_records is None or written < n_records) and not stopping.is_set():
        count = per_file if n_records is None else min(per_file, n_records - written)
        # Applications submitted in the last hour are current business; the last few of the first file were
        # submitted weeks ago and only reported now, which electronic supervision flags (补录).
        late = min(BACKFILLED, count) if index == 0 else 0
        items = list(generate_items(count - late, seed=index, bad_every=40, start=written,
                                    submitted_from=datetime.now() - timedelta(hours=1), spread_minutes=50))
        items += generate_items(late, seed=index, start=written + count - late,
                                submitted_from=datetime.now() - timedelta(days=20), spread_minutes=60)
        await asyncio.to_thread(write_xml_file, folder / f"county-{index:05d}.xml", items)
        written += count
        index += 1
        try:
            await asyncio.wait_for(stopping.wait(), pause)
        except TimeoutError:
            pass
    return written


class ProvinceFeed:
    """The provincial platform's side: today's cases on its feed, then a quiet spell long enough for the
    gateway's watchdog to call it silent (no_contact), then the rest, which clears the watchdog."""

    def __init__(self, platform: Any, n_ordinary: int, *, continuous: bool) -> None:
        from gateway.demo.province import provincial_items

        self.platform = platform
        self.items, self.scenario = provincial_items(n_ordinary)
        self.continuous = continuous
        self.published = 0
        self.sections = 0  # records the published items map to (one per SPSHENQIN / SPSHOULI / SPBANJIE)
        self.silent_noticed = False
        self.cleared = False

    def _publish(self, items: list[dict[str, Any]]) -> None:
        self.platform.publish(items)
        self.published += len(items)
        self.sections += sum(1 for item in items for k in ("SPSHENQIN", "SPSHOULI", "SPBANJIE") if k in item)

    async def run(self, stopping: asyncio.Event, watchdog: Callable[[str], bool]) -> None:
        half = max(1, len(self.items) // 2)
        self._publish(self.items[:half])  # the scenario cases are at the end: half of today's first
        while not stopping.is_set() and not watchdog("no_contact"):
            await asyncio.sleep(0.2)
        self.silent_noticed = watchdog("no_contact")
        if stopping.is_set():
            return
        self._publish(self.items[half:])
        while not stopping.is_set() and not watchdog("watchdog_cleared"):
            await asyncio.sleep(0.2)
        self.cleared = watchdog("watchdog_cleared")
        if not self.continuous:
            return
        from gateway.demo.province import provincial_items

        batch = 0
        while not stopping.is_set():  # a few new cases every couple of seconds: the feed stays alive
            try:
                await asyncio.wait_for(stopping.wait(), 2.0)
                return
            except TimeoutError:
                pass
            batch += 1
            more, _ = provincial_items(3, seed=1000 + batch)
            for n, item in enumerate(more[:3]):
                serial = f"37069{800_000 + batch * 10 + n:011d}"
                for section in ("SPSHENQIN", "SPSHOULI", "SPBANJIE"):
                    if section in item:
                        item[section] = {**item[section], "SBLSH": serial}
            self._publish(more[:3])


class _Signals:
    """SIGINT / SIGTERM: the first asks the demo to stop and drain; a second stops waiting for the drain."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()
        self.echo = echo
        self._installed: list[int] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal)
                self._installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
                pass

    def _on_signal(self) -> None:
        if self.stop.is_set():
            self.hurry.set()
            self.echo("stopping now: the deliveries still pending stay in the outbox for `gateway run`")
            return
        self.stop.set()
        self.echo(f"stopping: intake stops; in-flight deliveries get up to {DRAIN_SECONDS:.0f}s "
                  "(Ctrl-C again to stop at once)")

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)


DRAIN_SECONDS = 15.0
PROVINCE_SHARE = 5  # one case in five comes from the provincial platform's feed


def _counterpart_lines(inbound: Counter[str], quarantine: dict[str, int], destinations: dict[str, dict[str, int]],
                       ) -> list[str]:
    labels = {"county_drop": "county front-end machine, files in (drop/county)",
              "provincial_platform": "provincial platform, REST pull",
              "hall_platform": "hall platform, REST push over mutual TLS",
              "market_ministry": "market-regulation ministry, SOAP",
              "county_results": "county front-end machine, files in (drop/county-results)",
              "gateway": "made by the gateway (alerts, seals)", "exchange": "made by the exchange (并联审批 results)"}
    out_labels = {"hall_platform": "hall platform, REST (HMAC-signed)", "market_ministry": "market-regulation "
                  "ministry, SOAP", "county_out": "county front-end machine, files out (drop/county-out)"}
    lines = ["  in  (records stored, by counterpart)"]
    for system in sorted(set(inbound) | set(quarantine), key=lambda s: (-inbound.get(s, 0), s)):
        q = quarantine.get(system, 0)
        lines.append(f"    {system:<20} {inbound.get(system, 0):>6,}" + (f"  +{q:,} quarantined" if q else "")
                     + f"   {labels.get(system, '')}")
    lines.append("  out (deliveries, by destination)")
    for dest, by in sorted(destinations.items()):
        states = "  ".join(f"{k} {v:,}" for k, v in sorted(by.items()))
        lines.append(f"    {dest:<20} {states}   {out_labels.get(dest, '')}")
    return lines


async def run_demo(n_records: int | None, workdir: Path | None, timeout: float,
                   echo: Callable[[str], None] = print, *, duration: float | None = None) -> bool:
    """Run the demo: ``n_records`` cases (a finite run), or for ``duration`` seconds, or, with neither, until
    SIGINT / SIGTERM. Returns whether everything it set out to show happened and the outbox drained."""
    from gateway.app import Gateway
    from gateway.config import load_config
    from gateway.demo.county import CountyFrontEnd
    from gateway.demo.ministry import MarketMinistry
    from gateway.demo.province import ProvincialPlatform
    from gateway.demo.twoway import second_act

    finite = n_records is not None
    workdir = (workdir or Path.cwd() / f"gateway-demo-{datetime.now():%Y%m%d-%H%M%S}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    signals = _Signals(echo)
    signals.install()
    credentials = prepare_credentials(workdir)
    hall = HallPlatform(hmac_key=credentials.hmac_key)
    await hall.start()
    ministry = await MarketMinistry().start()
    province = ProvincialPlatform()
    await province.start()
    drop = workdir / "drop"
    county = CountyFrontEnd(drop / "county-results", drop / "county-out", drop / "county-manifests")
    config_path = prepare_workdir(workdir, hall.url, credentials, ministry.url, province.url)
    n_province = n_records // PROVINCE_SHARE if n_records is not None else 10  # then a few more every 2 s
    n_county = n_records - n_province if n_records is not None else None
    feed = ProvinceFeed(province, n_province, continuous=not finite)
    echo(f"working directory: {workdir}")
    echo(f"simulated provincial platform (REST feed the gateway pulls) on {province.feed_url}")
    echo(f"simulated market-regulation ministry (SOAP, provincial exchange envelope) on {ministry.url}")
    echo(f"simulated hall platform listening on {hall.url} (checks the gateway's HMAC signatures)")
    echo(f"simulated county front-end machine: files in {drop / 'county'} and {drop / 'county-results'}, "
         f"out {drop / 'county-out'}")
    gateway = Gateway(load_config(config_path))
    started = time.monotonic()
    deadline = started + (timeout if finite else duration if duration is not None else float("inf"))
    ok = False
    interrupted = False
    pusher: HallPusher | None = None
    intake_stop = asyncio.Event()  # county, province and the hall's pushes
    carrier_stop = asyncio.Event()  # the county front-end machine's file carrier, stopped last
    tasks: list[asyncio.Task[Any]] = []
    login_url: str | None = None
    password = ""
    act = None
    left: dict[str, Any] = {}

    def hall_alerts(alert_type: str) -> bool:
        return any(isinstance(b, dict) and b.get("dataType") == "ALERT" and b.get("alertType") == alert_type
                   for b in hall.records.values())

    try:
        password = await _with_demo_login(gateway.config)
        await gateway.start()
        assert gateway.store is not None and gateway.api is not None
        store = gateway.store
        echo(f"gateway API on {gateway.api.url} (HTTPS; the hall pushes with certificate "
             f"{credentials.hall_certificate.subject})")
        login_url = f"{gateway.api.url}/login"
        echo(f"console: {gateway.api.url}/console/  (the demo's development CA signed the certificate: "
             f"{credentials.pki.ca.cert})")
        echo(f"console login: {login_url}  user {DEMO_USER}  password {password}")
        if not finite:
            echo("running " + (f"for {duration:g}s" if duration is not None else "until Ctrl-C")
                 + "; Ctrl-C stops intake, lets deliveries in flight finish and prints a summary")
        pusher = HallPusher(hall, gateway.api.url, credentials)
        await pusher.intruder()
        tasks.append(asyncio.create_task(pusher.run(intake_stop)))
        tasks.append(asyncio.create_task(county.run(carrier_stop)))  # the county front-end machine's side
        tasks.append(asyncio.create_task(feed.run(intake_stop, hall_alerts)))
        dropper = asyncio.create_task(drop_files(drop / "county", n_county, intake_stop,
                                                 per_file=50 if finite else 20, pause=0.05 if finite else 2.0))
        tasks.append(dropper)
        acting: asyncio.Task[Any] | None = None
        last = ""
        while time.monotonic() < deadline and not signals.stop.is_set():
            await asyncio.sleep(0.25 if finite else 1.0)
            c = await store.counts()
            line = (f"received {c.records:,}  quarantined {c.quarantined:,}  delivered {c.delivered:,}  "
                    f"pending {c.pending + c.inflight:,}  dead-lettered {c.dead:,}  alerts {c.alerts:,}  "
                    f"acceptances pushed back {pusher.pushed:,}")
            if line != last:
                echo(line)
                last = line
            if finite:
                assert n_county is not None
                county_seen = len(await store.received_between(["county_drop"], "0", "9")) \
                    + await store.quarantine_count(system="county_drop")
                from_province = len(await store.received_between(["provincial_platform"], "0", "9"))
                alerts_due = min(BACKFILLED, n_county) if gateway.supervision is not None else 0
                if dropper.done() and county_seen >= n_county and feed.cleared and from_province >= feed.sections \
                        and c.alerts >= alerts_due and c.pending + c.inflight == 0 and not pusher.pending():
                    ok = True
                    break
            elif acting is None and hall.unique >= 20:  # the stream is flowing: play the second act beside it
                acting = asyncio.create_task(second_act(gateway, hall, ministry, county, echo, timeout=60.0))
            elif acting is not None and acting.done() and act is None:
                try:
                    act = acting.result()
                except TimeoutError as exc:
                    echo(f"act 2: {exc}")
                    act = False
        interrupted = signals.stop.is_set()
        if finite and ok and not interrupted:  # the second act: both directions, 并联审批, 对账
            ok = False
            acting = asyncio.create_task(second_act(gateway, hall, ministry, county, echo,
                                                    timeout=max(30.0, deadline - time.monotonic())))
            waiting = asyncio.create_task(signals.stop.wait())  # Ctrl-C during the act stops it too
            await asyncio.wait({acting, waiting}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if acting.done():
                try:
                    act = acting.result()
                    ok = True
                except TimeoutError as exc:
                    echo(f"act 2: {exc}")
            interrupted = signals.stop.is_set()
        if acting is not None and not acting.done():
            acting.cancel()
            await asyncio.gather(acting, return_exceptions=True)
        # drain: no new intake; what is in the outbox gets DRAIN_SECONDS to reach its counterpart
        intake_stop.set()
        await asyncio.gather(*tasks[:1], *tasks[2:], return_exceptions=True)
        drain_until = time.monotonic() + (DRAIN_SECONDS if interrupted or not finite
                                          else max(DRAIN_SECONDS, deadline - time.monotonic()))
        while time.monotonic() < drain_until and not signals.hurry.is_set():
            c = await store.counts()
            if c.pending + c.inflight == 0:
                break
            await asyncio.sleep(0.25)
        c = await store.counts()
        drained = c.pending + c.inflight == 0
        ok = (ok and drained) if finite else drained
        elapsed = time.monotonic() - started
        inbound = Counter(r["system"] for r in await store.received_between(list(gateway.config.sources)
                                                                              + ["gateway", "exchange"], "0", "9"))
        quarantine = {s: n for s in gateway.config.sources if (n := await store.quarantine_count(system=s))}
        open_quarantine = await store.quarantine_count(state="open")
        alert_types = Counter(str(b.get("alertType")) for b in hall.records.values()
                              if isinstance(b, dict) and b.get("dataType") == "ALERT")
        left = {"pending": c.pending + c.inflight, "by_destination": {d: by.get("pending", 0) + by.get("inflight", 0)
                                                                      for d, by in c.by_destination.items()},
                "quarantine": open_quarantine}
        _summary(echo, c, inbound, quarantine, alert_types, hall, pusher, feed, act, elapsed)
        if left["pending"] or interrupted or not finite:
            waiting = ", ".join(f"{d} {n:,}" for d, n in sorted(left["by_destination"].items()) if n) or "none"
            echo(f"left when it stopped: {left['pending']:,} deliveries pending ({waiting}), "
                 f"{left['quarantine']:,} open in quarantine; `gateway run -c {config_path}` carries on with them")
        if finite and not ok:
            echo("demo interrupted before it finished" if interrupted else
                 f"demo did not finish within {timeout:.0f}s")
    finally:
        intake_stop.set()
        carrier_stop.set()
        for task in tasks[:1] + tasks[2:]:  # the county's carrier (tasks[1]) ends by itself on carrier_stop
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await gateway.stop()
        await hall.stop()
        await ministry.stop()
        await province.stop()
        signals.remove()
    echo("")
    if login_url:
        echo(f"console login: user {DEMO_USER}  password {password}  (role engineer; personal data shows masked)")
        echo(f"  `gateway run -c {config_path}` serves the console at {login_url.rsplit(':', 1)[0]}:<port>/console/ "
             "(docs/console.md) ([api] port 0 "
             "picks a free one: set a port to keep one; the certificate is from the demo's development CA)")
        echo("")
    echo("look around:")
    echo(f"  gateway status -c {config_path}")
    echo(f"  gateway quarantine list -c {config_path}")
    echo(f"  gateway deliveries list -c {config_path}")
    echo(f"  gateway audit verify -c {config_path}")
    echo(f"  gateway check -c {config_path}        (warns: development CA and seal key)")
    echo(f"  gateway encryption status -c {config_path}")
    echo(f"  gateway users list -c {config_path}")
    echo(f"  gateway exchange health -c {config_path}")
    echo(f"  gateway exchange parallel -c {config_path}")
    echo(f"  gateway exchange links --unresolved -c {config_path}")
    echo(f"  gateway exchange reconciliations -c {config_path}")
    return ok


def _summary(echo: Callable[[str], None], c: Any, inbound: Counter[str], quarantine: dict[str, int],
             alert_types: Counter[str], hall: HallPlatform, pusher: HallPusher, feed: ProvinceFeed, act: Any,
             elapsed: float) -> None:
    """What the run did: figures, then by counterpart and direction, alerts by type, each act's story."""
    hall_pushed = sum(1 for e in hall.sent if e["pushed"])
    county_drop = inbound.get("county_drop", 0)
    departments = inbound.get("market_ministry", 0) + inbound.get("county_results", 0)
    from_province = inbound.get("provincial_platform", 0)
    made = c.records - county_drop - from_province - hall_pushed - departments
    echo("")
    echo("summary")
    echo(f"  records received     {c.records:,} ({county_drop:,} from the county drop, {from_province:,} from "
         f"the provincial platform's feed, {pusher.pushed:,} acceptances pushed by the hall over mutual TLS, "
         f"{hall_pushed - pusher.pushed:,} more records from the hall, {departments:,} from the supervising "
         f"departments, {made:,} made by the gateway)")
    echo(f"  duplicates           {c.duplicates:,} (items read or sent again, dropped by their idempotency keys)")
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
    echo("by counterpart")
    for line in _counterpart_lines(inbound, quarantine, c.by_destination):
        echo(line)
    echo("alerts the hall received, by type (docs/zh/supervisor.md says what each means)")
    for alert_type, n in sorted(alert_types.items(), key=lambda kv: (-kv[1], kv[0])):
        echo(f"  {alert_type:<34} {n:,}  {_alert_label(alert_type)}")
    sc = feed.scenario
    echo("provincial platform (REST pull): what supervision noticed by itself")
    echo(f"  overdue (红牌)        case {sc.red}: accepted 16 working days ago with 10, still open")
    echo(f"  near deadline (黄牌)  case {sc.yellow}: 8 of its 10 working days used")
    echo(f"  outside the system    case {sc.outside}: completed, never accepted (体外循环)")
    echo(f"  across 国庆           case {sc.holiday}: {sc.holiday_text} (no red card)")
    echo(f"  watchdog             the feed went quiet for {'more than ' if feed.silent_noticed else ''}"
         f"{SILENCE}s: no_contact {'raised' if feed.silent_noticed else 'not raised'}, "
         f"{'cleared when it came back' if feed.cleared else 'not cleared'}")
    if act:
        echo("two-way exchange (docs/exchange.md)")
        echo(f"  licences issued      {act.licences:,}: approval results to the market regulator {act.to_ministry:,} "
             f"(SOAP), to the county front-end machine {act.to_county:,} (files)")
        echo(f"  results back         {act.results:,} supervision results: licence {act.revoked} revoked, licence "
             f"{act.suspended} suspended, each tied to its case; {act.notices:,} notices told the hall")
        echo(f"  并联审批             case {act.parallel_case}: dispatched at once to 2 departments, "
             f"{act.late_department} answered late (parallel_late), "
             f"{'the combined result is at the hall' if act.combined else 'no combined result'}")
        echo("  对账                 " + ", ".join(f"{k} {v}" for k, v in act.reconciled.items())
             + f" ({act.lost_and_repaired:,} record the ministry had lost sent again)")
    echo(f"  elapsed              {elapsed:.1f}s")


def _alert_label(alert_type: str) -> str:
    from gateway.supervision.alerts import ALERT_TYPES

    known = ALERT_TYPES.get(alert_type)
    return known.label if known else ""
