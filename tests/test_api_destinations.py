"""Destinations over HTTP: the list for whoever may read deliveries; pause, resume and settings for engineers and
operators of that destination, each audited with the person's name and applied by the running worker at once."""

from __future__ import annotations

import json

import aiohttp
from e2e_site import wait_until
from prometheus_client.parser import text_string_to_metric_families
from test_api_support import PUSH_AUTH, case_item, gw_fixture, http_fixture, login, token_for  # noqa: F401

from gateway.app import Gateway


async def _as(gw: Gateway, role: str, user: str | None = None, systems: list[str] | None = None) -> dict[str, str]:
    return await token_for(gw, user or f"wang.{role}", role, systems)


async def _post(http: aiohttp.ClientSession, gw: Gateway, path: str, body: object | None,
                headers: dict[str, str]) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body)
    async with http.post(gw.api.url + path, data=data,
                         headers={**headers, "Content-Type": "application/json"}) as r:
        return r.status, await r.json()


async def _list(http: aiohttp.ClientSession, gw: Gateway, headers: dict[str, str]) -> tuple[int, dict]:
    async with http.get(gw.api.url + "/api/v1/destinations", headers=headers) as r:
        return r.status, await r.json()


def _audit(gw_entries: list, action: str) -> list[dict]:
    return [e.decoded() for e in gw_entries if e.decoded()["action"] == action]


async def test_the_list_shows_state_backlog_and_health_of_each_destination(gw, http) -> None:
    status, body = await _list(http, gw, await _as(gw, "engineer"))
    assert status == 200 and body["count"] == 1
    (row,) = body["items"]
    assert row["name"] == "archive" and row["state"] == "running" and row["circuit"] == "closed"
    assert (row["backlog"], row["dead"], row["held"], row["concurrency"], row["rate"]) == (0, 0, 0, 8, None)
    for key in ("oldest_waiting_at", "last_success_at", "last_error", "error_rate"):
        assert key in row
    async with http.get(gw.api.url + "/api/v1/destinations") as r:
        assert r.status == 401
    status, _ = await _list(http, gw, await _as(gw, "supervisor"))
    assert status == 403  # supervisors read the audit trail and alerts, not the outbox
    status, other = await _list(http, gw, await _as(gw, "operator", "zhao.hall", ["hall_platform"]))
    assert status == 200 and other["items"] == []  # an operator sees only its own systems


async def test_an_engineer_pauses_and_resumes_a_destination_and_the_worker_obeys_at_once(gw, http) -> None:
    engineer = await _as(gw, "engineer", "zhang.engineer")
    status, body = await _post(http, gw, "/api/v1/destinations/archive/pause", {"reason": "对方机房断电"}, engineer)
    assert status == 200 and body["changed"] is True
    assert body["destination"]["state"] == "paused" and body["destination"]["paused_by"].startswith("user:zhang.engineer")
    assert gw.workers["archive"].controls.paused
    async with http.post(gw.api.url + "/api/v1/inbound/hall_platform/case", json=[case_item("DS-0001")],
                         headers=PUSH_AUTH) as r:
        assert r.status == 202  # accepted: committed, delivered later
    await wait_until(lambda: _backlog(gw), what="the delivery waiting")
    out = gw.config.resolve("out")
    assert not list(out.iterdir())  # nothing written while paused
    status, again = await _post(http, gw, "/api/v1/destinations/archive/pause", None, engineer)
    assert status == 200 and again["changed"] is False
    text = await _metrics(http, gw)
    assert text[("gateway_delivery_paused", (("destination", "archive"),))] == 1
    status, body = await _post(http, gw, "/api/v1/destinations/archive/resume", None, engineer)
    assert status == 200 and body["changed"] is True and body["destination"]["state"] == "running"
    await wait_until(lambda: list(out.iterdir()), timeout=10, what="the delivery after resuming")
    entries = await gw.store.audit_entries(limit=1000)
    (paused,) = _audit(entries, "destination_paused")
    (resumed,) = _audit(entries, "destination_resumed")
    assert paused["system"] == "archive" and paused["detail"]["reason"] == "对方机房断电"
    assert paused["detail"]["actor"].startswith("user:zhang.engineer (engineer, token)")
    assert resumed["detail"]["actor"].startswith("user:zhang.engineer")


async def _backlog(gw: Gateway) -> bool:
    waiting, _ = await gw.store.destination_waiting("archive")  # type: ignore[union-attr]
    return waiting == 1


async def _metrics(http: aiohttp.ClientSession, gw: Gateway) -> dict:
    async with http.get(gw.api.url + "/metrics") as r:
        text = await r.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


async def test_settings_change_concurrency_and_rate_at_runtime_and_null_restores_the_configuration(gw, http) -> None:
    engineer = await _as(gw, "engineer")
    status, body = await _post(http, gw, "/api/v1/destinations/archive/settings", {"concurrency": 3, "rate": 2.5},
                               engineer)
    assert status == 200 and body["changed"] is True
    assert (body["destination"]["concurrency"], body["destination"]["rate"]) == (3, 2.5)
    worker = gw.workers["archive"]
    assert (worker.concurrency, worker.rate) == (3, 2.5)
    status, body = await _post(http, gw, "/api/v1/destinations/archive/settings", {"rate": None}, engineer)
    assert status == 200 and (worker.concurrency, worker.rate) == (3, None)
    (first, second) = _audit(await gw.store.audit_entries(limit=1000), "destination_settings")
    assert first["detail"]["before"] == {"concurrency": None, "rate": None}
    assert first["detail"]["after"] == {"concurrency": 3, "rate": 2.5}
    assert second["detail"]["after"] == {"concurrency": 3, "rate": None}
    for bad, field in (({"concurrency": 0}, "concurrency"), ({"concurrency": "4"}, "concurrency"),
                       ({"rate": -1}, "rate"), ({"speed": 3}, "speed"), ({}, None)):
        status, err = await _post(http, gw, "/api/v1/destinations/archive/settings", bad, engineer)
        assert status == 400, bad
        assert err["error"].get("field") == field
    assert len(_audit(await gw.store.audit_entries(limit=1000), "destination_settings")) == 2


async def test_only_engineers_and_operators_of_that_destination_may_change_it(gw, http) -> None:
    path = "/api/v1/destinations/archive/pause"
    status, _ = await _post(http, gw, path, None, {})
    assert status == 401
    for role, systems in (("supervisor", None), ("auditor", None), ("operator", ["hall_platform"])):
        status, err = await _post(http, gw, path, None, await _as(gw, role, f"x.{role}", systems))
        assert status == 403, role
        assert "pause and resume a destination" in err["error"]["message"]
    status, body = await _post(http, gw, path, None, await _as(gw, "operator", "qian.archive", ["archive"]))
    assert status == 200 and body["changed"] is True
    status, err = await _post(http, gw, "/api/v1/destinations/nowhere/pause", None, await _as(gw, "engineer"))
    assert status == 404 and "configured sinks are archive" in err["error"]["message"]
    assert len(_audit(await gw.store.audit_entries(limit=1000), "destination_paused")) == 1


async def test_a_console_session_needs_its_csrf_token_to_change_a_destination(gw) -> None:
    from test_api_support import add_user

    await add_user(gw, "sun.engineer", "engineer")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        answer = await login(browser, gw.api.url, "sun.engineer")
        async with browser.post(gw.api.url + "/api/v1/destinations/archive/pause") as r:
            assert r.status == 403
        assert not gw.workers["archive"].controls.paused
        async with browser.post(gw.api.url + "/api/v1/destinations/archive/pause",
                                headers={"X-CSRF-Token": answer["csrf_token"]}) as r:
            assert r.status == 200
    assert gw.workers["archive"].controls.paused
