"""Push workers ([api] push_workers, push_port): the push endpoints in processes of their own, over real TLS
with client certificates, tokens and HMAC signatures on loopback; every commit, single-use value, refusal and
count in the gateway's process; a killed worker started again; workers that outlive their gateway exit."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from trust_support import (
    HMAC_KEYS,
    TOKEN_NEW,
    Pki,
    case_item,
    fresh_start,
    make_pki,
    refusals,
    session,
    set_secrets,
    write_site,
)

from gateway.app import Gateway
from gateway.config import ConfigError, load_config
from gateway.security.counterparts import (
    CounterpartAuth,
    CounterpartGuard,
    DeferredReplayCache,
    Presented,
    Refusal,
    ReplayClaim,
    collect_claims,
    collected_claims,
)
from gateway.security.request_signing import canonical_string, hmac_signature

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.asyncio(loop_scope="module")


def with_workers(config: Path, workers: int = 2, port: int = 0) -> Path:
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[api]\n", f"[api]\npush_workers = {workers}\npush_port = {port}\n", 1),
                      encoding="utf-8")
    return config


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_gw(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> AsyncIterator[Gateway]:
    with pytest.MonkeyPatch.context() as mp:
        set_secrets(mp)
        gateway = Gateway(load_config(with_workers(write_site(tmp_path_factory.mktemp("site"), pki))))
        await gateway.start()
        pids = [p.pid for p in gateway.push_workers._procs.values()]
        try:
            yield gateway
        finally:
            await gateway.stop()
        # Stopping the gateway stops its workers: none is left behind.
        for pid in pids:
            assert not _alive(pid), f"push worker {pid} outlived its gateway's stop"


@pytest_asyncio.fixture(loop_scope="module")
async def gw(shared_gw: Gateway) -> Gateway:
    await fresh_start(shared_gw)
    return shared_gw


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (our own child, not yet reaped) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def worker_url(gw: Gateway) -> str:
    return gw.push_workers.url


async def metric(gw: Gateway, pki: Pki, name: str, **labels: str) -> float:
    async with session(pki) as http, http.get(gw.api.url + "/metrics") as r:
        text = await r.text()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def eventually_metric(gw: Gateway, pki: Pki, want: float, name: str, **labels: str) -> float:
    """Workers report their counts every second."""
    got = 0.0
    for _ in range(60):
        got = await metric(gw, pki, name, **labels)
        if got >= want:
            return got
        await asyncio.sleep(0.1)
    return got


def _signed(key: str, path: str, body: bytes, *, key_id: str, nonce: str) -> dict[str, str]:
    ts = str(int(time.time()))
    return {"Content-Type": "application/json", "X-Timestamp": ts, "X-Nonce": nonce, "X-Key-Id": key_id,
            "X-Signature": hmac_signature(key.encode(), canonical_string("POST", path, ts, nonce, body))}


# --------------------------------------------------------------------------- pushes through a worker


async def test_a_push_through_a_worker_is_committed_by_the_gateway_and_counted_on_its_metrics(gw, pki) -> None:
    assert worker_url(gw).startswith("https://127.0.0.1:") and not worker_url(gw).endswith(":0")
    async with session(pki, pki.county) as http:
        async with http.post(worker_url(gw) + "/api/v1/inbound/county_hall/case",
                             json=[case_item("PW-2026-0001"), case_item("PW-2026-0002")]) as r:
            status, body = r.status, await r.json()
    assert status == 202, body
    assert body["accepted"] == 2 and [i["status"] for i in body["items"]] == ["accepted", "accepted"]
    assert all(rec["receipt_id"] for i in body["items"] for rec in i["records"])
    (stored,) = await gw.store.list_records(case_no="PW-2026-0001")
    assert stored["system"] == "county_hall"
    # The same push again is a duplicate: one store, one idempotency rule, whichever port it came through.
    async with session(pki, pki.county) as http:
        async with http.post(gw.api.url + "/api/v1/inbound/county_hall/case",
                             json=[case_item("PW-2026-0001")]) as r:
            again = await r.json()
    assert again["items"][0]["records"][0]["status"] == "duplicate"
    # The worker's counts reach the gateway's /metrics.
    assert await eventually_metric(gw, pki, 2, "gateway_api_inbound_requests_total", system="county_hall") == 2
    assert await metric(gw, pki, "gateway_api_requests_total", route="/api/v1/inbound/{system}/{kind}") == 2
    assert await eventually_metric(gw, pki, 2, "gateway_api_inbound_items_total", system="county_hall",
                                   status="accepted") == 2
    assert await eventually_metric(gw, pki, 2, "gateway_counterpart_authenticated_total", system="county_hall",
                                   method="client_certificate") >= 2


async def test_a_large_push_through_a_worker_lands_whole(gw, pki) -> None:
    items = [case_item(f"PW-L-{i:04d}") for i in range(2000)]  # prepared in a thread, sent in one ~MB frame
    async with session(pki, pki.county) as http:
        async with http.post(worker_url(gw) + "/api/v1/inbound/county_hall/case", json=items) as r:
            body = await r.json()
    assert r.status == 202 and body["accepted"] == 2000, {k: body.get(k) for k in ("accepted", "quarantined")}
    assert await gw.store.list_records(case_no="PW-L-1999")


async def test_a_version_conflict_found_in_the_gateways_commit_is_quarantined_with_the_workers_copy(gw, pki) -> None:
    first = case_item("PW-V-1", version=2)
    other = {**case_item("PW-V-1", version=2), "applicantName": "同版本不同内容有限公司"}
    async with session(pki) as http:
        for item, want in ((first, 202), (other, 400)):
            async with http.post(worker_url(gw) + "/api/v1/inbound/city_platform/case", json=[item],
                                 headers={"Authorization": f"Bearer {TOKEN_NEW}"}) as r:
                answer = await r.json()
                assert r.status == want, answer
    (result,) = answer["items"]
    assert result["status"] == "quarantined" and result["errors"][0]["rule"] == "version_conflict"
    (qid,) = result["quarantine_ids"]
    entry = await gw.store.quarantine_entry(qid)
    assert entry is not None and entry["system"] == "city_platform"
    assert entry["payload"] == other  # the worker's copy of the item, as sent
    assert json.loads(entry["raw"]) == other


async def test_health_of_the_workers_and_of_the_gateway(gw, pki) -> None:
    async with session(pki) as http:
        async with http.get(worker_url(gw) + "/healthz") as r:
            worker = await r.json()
        async with http.get(gw.api.url + "/healthz") as r:
            main = await r.json()
    assert worker["status"] == "alive" and worker["gateway_process"] == "connected"
    assert "county_hall" in worker["push_systems"]
    assert main["push_workers"]["configured"] == 2 and main["push_workers"]["running"] == 2
    assert main["push_workers"]["url"] == worker_url(gw)
    assert await metric(gw, pki, "gateway_push_workers_running") == 2


async def test_the_push_port_serves_only_the_push_endpoints(gw, pki) -> None:
    async with session(pki, pki.county) as http:
        for path in ("/api/v1/records", "/metrics", "/console/", "/api/v1/auth/whoami"):
            async with http.get(worker_url(gw) + path) as r:
                body = await r.json()
                assert r.status == 404, path
                assert "push endpoints only" in body["error"]["message"]
                assert f"port {gw.config.api.port}" in body["error"]["message"]


# --------------------------------------------------------------------------- trust stays one


async def test_a_replayed_hmac_request_is_refused_whichever_worker_or_port_gets_it_again(gw, pki) -> None:
    path = "/api/v1/inbound/province/case"
    body = json.dumps([case_item("PW-R-1")]).encode()
    headers = _signed(HMAC_KEYS["prov-2026b"], path, body, key_id="prov-2026b", nonce="a1" * 16)
    answers = []
    for base in [worker_url(gw)] * 6 + [gw.api.url]:  # a new connection each time: the kernel picks the worker
        async with session(pki) as http, http.post(base + path, data=body, headers=headers) as r:
            answers.append((r.status, (await r.json()).get("error", {}).get("reason")))
    assert answers[0] == (202, None)
    assert answers[1:] == [(401, "replayed")] * 6
    assert len(await gw.store.list_records(case_no="PW-R-1")) == 1
    entries = await refusals(gw)
    assert entries and all(e["reason"] == "replayed" and e["credential"] == "key prov-2026b" for e in entries)

    # And the other way round: first through the API port, then a worker.
    body = json.dumps([case_item("PW-R-2")]).encode()
    headers = _signed(HMAC_KEYS["prov-2026b"], path, body, key_id="prov-2026b", nonce="b2" * 16)
    async with session(pki) as http, http.post(gw.api.url + path, data=body, headers=headers) as r:
        assert r.status == 202
    async with session(pki) as http, http.post(worker_url(gw) + path, data=body, headers=headers) as r:
        assert r.status == 401 and (await r.json())["error"]["reason"] == "replayed"


async def test_refusals_in_a_worker_reach_the_gateways_audit_trail_and_metrics(gw, pki) -> None:
    before = await metric(gw, pki, "gateway_counterpart_refusals_total", system="city_platform",
                          reason="invalid_token")
    async with session(pki) as http:
        async with http.post(worker_url(gw) + "/api/v1/inbound/city_platform/case", json=[case_item("PW-T-1")],
                             headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.post(worker_url(gw) + "/api/v1/inbound/city_platform/case", json=[case_item("PW-T-2")],
                             headers={"Authorization": f"Bearer {TOKEN_NEW}"}) as r:
            assert r.status == 202
    for _ in range(50):
        entries = await refusals(gw)
        if entries:
            break
        await asyncio.sleep(0.05)
    (entry,) = entries
    assert entry["system"] == "city_platform" and entry["reason"] == "invalid_token" and entry["status"] == 401
    assert entry["remote"] == "127.0.0.1"
    assert await metric(gw, pki, "gateway_counterpart_refusals_total", system="city_platform",
                        reason="invalid_token") == before + 1
    assert not await gw.store.list_records(case_no="PW-T-1")
    assert await gw.store.list_records(case_no="PW-T-2")


async def test_a_certificate_of_another_ca_is_refused_in_a_workers_handshake_and_audited(gw, pki) -> None:
    with pytest.raises(aiohttp.ClientError):
        async with session(pki, pki.other_ca_county) as http:
            async with http.post(worker_url(gw) + "/api/v1/inbound/county_hall/case",
                                 json=[case_item("PW-C-1")]) as r:
                await r.read()
    for _ in range(50):
        found = [e for e in await refusals(gw) if e["reason"] == "tls_handshake"]
        if found:
            break
        await asyncio.sleep(0.05)
    assert found and "client_ca" in found[0]["message"]
    assert not await gw.store.list_records(case_no="PW-C-1")


async def test_a_signed_soap_push_through_a_worker_is_accepted_and_its_replay_is_a_fault(gw, pki) -> None:
    from lxml import etree
    from test_soap_wsse_inbound import envelope, fault, secure

    from gateway.api._soap import TNS

    body = etree.tostring(secure(envelope("PW-S-1"), pki))
    answers = []
    for _ in range(4):  # new connections: whichever worker gets the repeat knows it is one
        async with session(pki) as http, http.post(worker_url(gw) + "/soap/ministry", data=body,
                                                   headers={"Content-Type": "text/xml; charset=utf-8"}) as r:
            answers.append((r.status, etree.fromstring(await r.read())))
    (status, doc), *repeats = answers
    assert status == 200 and doc.findtext(f".//{{{TNS}}}accepted") == "1"
    for status, doc in repeats:
        code, text = fault(doc)
        assert status == 401 and code == "wsse:FailedAuthentication" and "replay" in text
    assert len(await gw.store.list_records(case_no="PW-S-1")) == 1
    assert {e["reason"] for e in await refusals(gw)} == {"replayed"}


# --------------------------------------------------------------------------- a worker dies


async def test_a_killed_worker_is_started_again_and_pushes_go_on(gw, pki) -> None:
    workers = gw.push_workers
    victim = workers._procs[0].pid
    restarts = workers.restarts
    os.kill(victim, signal.SIGKILL)
    for _ in range(200):
        if workers.restarts > restarts and workers.status()["running"] == 2:
            break
        await asyncio.sleep(0.05)
    assert workers.restarts == restarts + 1 and workers.status()["running"] == 2
    assert await metric(gw, pki, "gateway_push_worker_restarts_total") == restarts + 1
    assert workers._procs[0].pid != victim and not _alive(victim)
    async with session(pki, pki.county) as http:
        for i in range(6):  # new connections: both workers get some
            async with http.post(worker_url(gw) + "/api/v1/inbound/county_hall/case",
                                 json=[case_item(f"PW-K-{i}")], headers={"Connection": "close"}) as r:
                assert r.status == 202
    for i in range(6):
        assert await gw.store.list_records(case_no=f"PW-K-{i}")


# --------------------------------------------------------------------------- the replay hand-off itself


def _guard() -> CounterpartGuard:
    auth = CounterpartAuth.model_validate({"hmac": {"keys": [{"id": "k1", "secret": {"env": "PW_TEST_HMAC"}}]}})
    return CounterpartGuard({"sys": auth})


async def test_a_deferred_cache_notes_claims_and_the_gateways_verdict_refuses_as_the_api_port_would(
        monkeypatch) -> None:
    monkeypatch.setenv("PW_TEST_HMAC", "s" * 32)
    guard = _guard()
    path, body, nonce = "/api/v1/inbound/sys/case", b"[]", "n" * 20
    ts = str(int(time.time()))
    headers = {"X-Timestamp": ts, "X-Nonce": nonce, "X-Key-Id": "k1",
               "X-Signature": hmac_signature(b"s" * 32, canonical_string("POST", path, ts, nonce, body))}

    def check() -> object:
        c = guard.start("sys", Presented("POST", path, None, None, headers))
        c.before_body()
        c.after_body(body)
        return c

    # In the gateway's own process: the second use is refused in after_body.
    check()
    with pytest.raises(Refusal) as direct:
        check()
    assert direct.value.reason == "replayed"

    # In a worker: the cache only notes the nonce; the gateway's answer decides, with the same refusal.
    guard = _guard()
    guard.systems["sys"].nonces = DeferredReplayCache("hmac", "sys")
    with pytest.raises(RuntimeError):
        check()  # outside a request that collects claims, nobody could decide: refuse to guess
    collect_claims()
    c = check()
    claims = collected_claims()
    assert claims == [ReplayClaim("hmac", "sys", nonce)] and collected_claims() == []
    c.settle_replays(claims, [True])  # the gateway had not seen it
    with pytest.raises(Refusal) as deferred:
        c.settle_replays(claims, [False])
    assert (deferred.value.status, deferred.value.reason, deferred.value.credential) == (401, "replayed", "key k1")
    assert deferred.value.message == direct.value.message
    with pytest.raises(Refusal) as full:
        c.settle_replays(claims, [None])
    assert full.value.reason == "replay_cache_full"
    wsse = ReplayClaim("wsse", "sys", "nonce:abc")
    with pytest.raises(Refusal) as replayed:
        c.settle_replays([wsse], [False])
    assert replayed.value.reason == "replayed" and "UsernameToken nonce" in replayed.value.message


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(("api", "message"), [
    ("push_workers = 2", "needs api.push_port"),
    ("push_port = 9000", "push_workers is 0"),
    ("port = 9000\npush_workers = 1\npush_port = 9000", "the API's own port"),
    ("push_workers = 17\npush_port = 9001", "push_workers"),
    ("enabled = false\npush_workers = 1\npush_port = 9001", "needs [api] enabled = true"),
])
async def test_push_worker_settings_that_cannot_work_are_configuration_errors(tmp_path, api, message) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nstore = "sqlite:///g.db"\n[api]\n{api}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert message in str(err.value)


# --------------------------------------------------------------------------- the gateway process dies


PLAIN = """\
[gateway]
store = "sqlite:///gateway.db"
adapters = ["push"]
[api]
port = {port}
push_workers = 2
push_port = {push_port}
[audit]
seal = false
[supervision]
enabled = false
[sources.hall]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
auth = {{ tokens = [{{ sha256 = "{sha}", label = "t" }}] }}
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(site: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", "gateway.toml"], cwd=site, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def _wait_listening(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                async with http.get(url + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


async def test_pushes_in_flight_when_the_gateway_stops_are_committed_or_refused_never_lost(tmp_path) -> None:
    import shutil

    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    token = "push-worker-stop-token-91aa"
    (tmp_path / "gateway.toml").write_text(PLAIN.format(port=0, push_port=0,
                                                        sha=hashlib.sha256(token.encode()).hexdigest()))
    gateway = Gateway(load_config(tmp_path / "gateway.toml"))
    await gateway.start()
    url = gateway.push_workers.url + "/api/v1/inbound/hall/case"
    pids = [p.pid for p in gateway.push_workers._procs.values()]

    stop_started: list[float] = []
    late: list[int] = []

    async def push(http: aiohttp.ClientSession, n: int) -> tuple[int, list[str]]:
        keys = [f"PW-STOP-{n}-{i:03d}" for i in range(300)]
        try:
            async with http.post(url, json=[case_item(k) for k in keys],
                                 headers={"Authorization": f"Bearer {token}", "Connection": "close"}) as r:
                if stop_started and r.status == 202:
                    late.append(n)  # answered after the stop began: it was in flight
                return r.status, keys
        except aiohttp.ClientError:
            return 0, keys  # cut off: not acknowledged

    async with aiohttp.ClientSession() as http:
        pushes = [asyncio.create_task(push(http, n)) for n in range(12)]
        await asyncio.sleep(0.1)  # some are being prepared or committed, some are queued
        stop_started.append(time.monotonic())
        await gateway.stop()
        answers = await asyncio.gather(*pushes)
    assert not any(_alive(pid) for pid in pids)
    assert {status for status, _ in answers} <= {202, 503, 0}, answers
    acknowledged = [keys for status, keys in answers if status == 202]
    assert late, "nothing was answered after the stop began: the test proves nothing"
    reopened = Gateway(load_config(tmp_path / "gateway.toml"), run_sources=False, run_delivery=False)
    await reopened.start()
    try:
        for keys in acknowledged:  # acknowledged means committed: every one is in the store after the stop
            for key in (keys[0], keys[-1]):
                assert await reopened.store.list_records(case_no=key), key
    finally:
        await reopened.stop()


async def test_a_push_port_that_is_taken_stops_the_start_and_says_which(tmp_path) -> None:
    import shutil
    import socket

    from gateway.app import StartupError

    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        push_port = taken.getsockname()[1]
        (tmp_path / "gateway.toml").write_text(PLAIN.format(port=0, push_port=push_port, sha="0" * 64))
        gateway = Gateway(load_config(tmp_path / "gateway.toml"))
        with pytest.raises(StartupError) as err:
            await gateway.start()
    assert f"the push workers cannot listen on 127.0.0.1:{push_port} ([api] host/push_port)" in str(err.value)
    assert gateway.push_workers is None and gateway.api is None  # nothing left listening or running


async def test_workers_of_a_killed_gateway_exit_and_a_restarted_gateway_takes_the_port_again(tmp_path) -> None:
    import shutil

    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    token = "push-worker-test-token-7c1d"
    port, push_port = _free_port(), _free_port()
    (tmp_path / "gateway.toml").write_text(PLAIN.format(port=port, push_port=push_port,
                                                        sha=hashlib.sha256(token.encode()).hexdigest()))
    api, pushes = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{push_port}"
    headers = {"Authorization": f"Bearer {token}"}
    proc = _start(tmp_path)
    try:
        await _wait_listening(api, proc)
        await _wait_listening(pushes, proc)
        workers = _children(proc.pid)
        assert len(workers) == 2
        async with aiohttp.ClientSession() as http:
            async with http.post(pushes + "/api/v1/inbound/hall/case", json=[case_item("PW-X-1")],
                                 headers=headers) as r:
                assert r.status == 202
        # A large push in flight when the gateway is SIGKILLed: the worker answers 503 "send it again"
        # (or the connection ends), never 500, and never a 202 for something it could not commit.
        async def large() -> tuple[int, str]:
            items = [case_item(f"PW-X-L-{i:04d}") for i in range(3000)]
            try:
                async with aiohttp.ClientSession() as http, http.post(
                        pushes + "/api/v1/inbound/hall/case", json=items, headers=headers) as r:
                    return r.status, await r.text()
            except aiohttp.ClientError:
                return 0, ""

        in_flight = asyncio.create_task(large())
        await asyncio.sleep(0.15)
        proc.kill()  # SIGKILL: no goodbye to the workers
        proc.wait()
        status, text = await in_flight
        assert status in (0, 202, 503), (status, text)
        if status == 503:
            assert "send it again" in text
        for _ in range(100):
            if not any(_alive(w) for w in workers):
                break
            await asyncio.sleep(0.05)
        assert not any(_alive(w) for w in workers), "push workers outlived their killed gateway"

        proc = _start(tmp_path)  # the same ports again
        await _wait_listening(pushes, proc)
        async with aiohttp.ClientSession() as http:
            for _ in range(4):
                async with http.post(pushes + "/api/v1/inbound/hall/case", json=[case_item("PW-X-1")],
                                     headers={**headers, "Connection": "close"}) as r:
                    body = await r.json()
                    assert r.status == 200, body  # a duplicate: it was committed before the kill
                    assert body["items"][0]["records"][0]["status"] == "duplicate"
            if status == 202:  # acknowledged before the kill: committed
                async with http.post(pushes + "/api/v1/inbound/hall/case", json=[case_item("PW-X-L-2999")],
                                     headers={**headers, "Connection": "close"}) as r:
                    assert (await r.json())["items"][0]["records"][0]["status"] == "duplicate"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not any(_alive(w) for w in _children(proc.pid))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
