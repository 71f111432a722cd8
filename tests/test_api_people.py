"""People on the API, against a running gateway on loopback: login, sessions, CSRF, tokens, roles, proxies."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from test_api_support import (
    ID_NO,
    PASSWORD,
    PUSH_AUTH,
    add_user,
    case_item,
    login,
    token_for,
    write_gateway_dir,
)

from gateway.app import Gateway
from gateway.config import load_config
from gateway.security import credentials

PUSH = "/api/v1/inbound/hall_platform/case"
FORGED = {"X-Gateway-User": "li.jiancha", "X-Gateway-Role": "auditor"}


def _config(root: Path, api_extra: str = "") -> Path:
    config = write_gateway_dir(root)
    text = config.read_text(encoding="utf-8").replace("[api]\n", f"[api]\n{api_extra}\n", 1)
    config.write_text(text, encoding="utf-8")
    return config


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    gateway = Gateway(load_config(_config(tmp_path, 'trusted_proxies = ["127.0.0.2"]')))
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps cookies, as a browser does (also for an IP-address host)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def _push(gw: Gateway, items: list[dict]) -> None:
    async with aiohttp.ClientSession() as http, http.post(gw.api.url + PUSH, json=items, headers=PUSH_AUTH) as r:
        assert r.status in (202, 400), await r.text()


def _entries(gw: Gateway, action: str) -> list[dict]:
    with sqlite3.connect(gw.store.path) as conn:  # type: ignore[union-attr]
        bodies = [json.loads(r[0]) for r in conn.execute("SELECT body FROM audit ORDER BY seq")]
    return [b["detail"] for b in bodies if b["action"] == action]


def _sql(gw: Gateway, statement: str, *args: object) -> None:
    with sqlite3.connect(gw.store.path) as conn:  # type: ignore[union-attr]
        conn.execute(statement, args)


# --------------------------------------------------------------------------- headers make nobody


async def test_a_forged_role_or_user_header_changes_nothing(gw, browser) -> None:
    await _push(gw, [case_item("PEOPLE-0001")])
    url = gw.api.url + "/api/v1/records?case_no=PEOPLE-0001"
    async with browser.get(url, headers=FORGED) as r:  # from loopback, as the old trust rule allowed
        assert r.status == 401
    async with browser.get(url + "&unmask=1&reason=forged header", headers=FORGED) as r:
        assert r.status == 401
    engineer = await token_for(gw, "gong.cheng", "engineer")
    async with browser.get(url + "&unmask=1&reason=forged header", headers={**engineer, **FORGED}) as r:
        assert r.status == 403 and "only an auditor" in (await r.json())["error"]["message"]
    async with browser.get(url, headers={**engineer, **FORGED}) as r:
        page = await r.json()
    assert page["masked"] is True and ID_NO not in json.dumps(page)
    auditor = await token_for(gw, "shen.ji", "auditor")
    async with browser.get(url + "&unmask=1&reason=complaint 2026-17",
                           headers={**auditor, "X-Gateway-User": "someone.else"}) as r:
        assert r.status == 200 and (await r.json())["masked"] is False
    (read,) = _entries(gw, "unmasked")
    assert read["user"] == "shen.ji" and read["via"] == "token"  # the token's user, not the header's
    async with browser.get(gw.api.url + "/api/v1/auth/whoami", headers=FORGED) as r:
        assert (await r.json())["authenticated"] is False


async def test_an_auditors_unmask_without_a_reason_is_refused_and_leaves_no_data(gw, browser) -> None:
    await _push(gw, [case_item("PEOPLE-0002")])
    auditor = await token_for(gw, "shen.ji", "auditor")
    for query in ("&unmask=true", "&unmask=true&reason=", "&unmask=true&reason=why"):
        async with browser.get(gw.api.url + "/api/v1/records?case_no=PEOPLE-0002" + query, headers=auditor) as r:
            body = await r.json()
            assert r.status == 400 and body["error"]["parameter"] == "reason", query
            assert ID_NO not in json.dumps(body)
    assert _entries(gw, "unmasked") == []
    supervisor = await token_for(gw, "li.jiancha", "supervisor")
    async with browser.get(gw.api.url + "/api/v1/alerts?unmask=1&reason=I want to see", headers=supervisor) as r:
        assert r.status == 403


# --------------------------------------------------------------------------- console login and sessions


async def test_login_sets_a_fresh_http_only_same_site_strict_session_and_logout_ends_it(gw, browser) -> None:
    await add_user(gw, "zhang.gong", "engineer")
    first = await login(browser, gw.api.url, "zhang.gong")
    assert first["user"] == "zhang.gong" and first["role"] == "engineer" and "records:read" in first["permissions"]
    async with browser.get(gw.api.url + "/api/v1/auth/whoami") as r:
        assert (await r.json())["user"] == "zhang.gong"
    cookie = next(c for c in browser.cookie_jar if c.key == "gw_session")
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain HTTP on loopback; over TLS it is Secure and named __Host-gw_session
    old_id = cookie.value
    with sqlite3.connect(gw.store.path) as conn:  # the store keeps only the id's hash
        stored = conn.execute("SELECT id_hash FROM user_sessions").fetchall()
    assert stored == [(credentials.session_key(old_id),)]

    second = await login(browser, gw.api.url, "zhang.gong")  # logging in again: a new id, the old one ends
    new_id = next(c for c in browser.cookie_jar if c.key == "gw_session").value
    assert new_id != old_id and second["csrf_token"] != first["csrf_token"]
    async with aiohttp.ClientSession(cookies={"gw_session": old_id}) as stale:
        async with stale.get(gw.api.url + "/api/v1/records") as r:
            assert r.status == 401
    async with browser.get(gw.api.url + "/api/v1/records") as r:
        assert r.status == 200

    async with browser.post(gw.api.url + "/api/v1/auth/logout", headers={"X-CSRF-Token": second["csrf_token"]}) as r:
        assert r.status == 200 and (await r.json())["logged_out"] is True
    async with aiohttp.ClientSession(cookies={"gw_session": new_id}) as after:
        async with after.get(gw.api.url + "/api/v1/records") as r:
            assert r.status == 401
    assert [e["reason"] for e in _entries(gw, "logout")] == ["replaced by a new login", "logout"]
    assert [e["user"] for e in _entries(gw, "login")] == ["zhang.gong", "zhang.gong"]


async def test_a_wrong_password_an_unknown_user_and_a_disabled_account_get_the_same_answer(gw, browser) -> None:
    await add_user(gw, "zhang.gong", "engineer")
    await add_user(gw, "ex.staff", "engineer")
    await gw.store.set_user_disabled("ex.staff", True, "test")
    async with browser.get(gw.api.url + "/api/v1/auth/whoami") as r:
        csrf = (await r.json())["csrf_token"]
    answers = []
    for user, password in (("zhang.gong", "not the password"), ("nobody", PASSWORD), ("ex.staff", PASSWORD)):
        async with browser.post(gw.api.url + "/api/v1/auth/login", json={"user": user, "password": password},
                                headers={"X-CSRF-Token": csrf}) as r:
            answers.append((r.status, (await r.json())["error"]["message"]))
    assert answers == [(401, "user name or password is wrong")] * 3


async def test_a_session_ends_after_the_idle_timeout_and_after_its_lifetime(gw, browser) -> None:
    await add_user(gw, "zhang.gong", "engineer")
    await login(browser, gw.api.url, "zhang.gong")
    idle = gw.config.api.session_idle
    _sql(gw, "UPDATE user_sessions SET last_seen_at = ?", time.time() - idle - 1)  # as if untouched for that long
    async with browser.get(gw.api.url + "/api/v1/records") as r:
        assert r.status == 401
        assert "gw_session=\"\"" in r.headers.get("Set-Cookie", "") or "gw_session=;" in r.headers.get("Set-Cookie", "")

    await login(browser, gw.api.url, "zhang.gong")
    async with browser.get(gw.api.url + "/api/v1/records") as r:
        assert r.status == 200
    _sql(gw, "UPDATE user_sessions SET expires_at = ?", time.time() - 1)  # busy all along, but past its lifetime
    async with browser.get(gw.api.url + "/api/v1/records") as r:
        assert r.status == 401
    assert [e["reason"] for e in _entries(gw, "logout")] == ["idle", "expired"]


async def test_a_state_change_with_the_session_cookie_needs_its_csrf_token_and_the_same_origin(gw, browser) -> None:
    await add_user(gw, "zhang.gong", "engineer")
    session = await login(browser, gw.api.url, "zhang.gong")
    replay = gw.api.url + "/api/v1/deliveries/replay"
    async with browser.post(replay, json={"dry_run": True}) as r:
        assert r.status == 403 and "CSRF" in (await r.json())["error"]["message"]
    async with browser.post(replay, json={"dry_run": True}, headers={"X-CSRF-Token": "0" * 64}) as r:
        assert r.status == 403
    async with browser.post(replay, json={"dry_run": True},
                            headers={"X-CSRF-Token": session["csrf_token"], "Origin": "https://evil.example"}) as r:
        assert r.status == 403 and "cross-origin" in (await r.json())["error"]["message"]
    async with browser.post(replay, json={"dry_run": True},
                            headers={"X-CSRF-Token": session["csrf_token"], "Origin": gw.api.url}) as r:
        assert r.status == 200 and (await r.json())["dry_run"] is True
    # logout is a state change too
    async with browser.post(gw.api.url + "/api/v1/auth/logout") as r:
        assert r.status == 403


async def test_login_needs_the_login_pages_csrf_token(gw, browser) -> None:
    await add_user(gw, "zhang.gong", "engineer")
    async with browser.post(gw.api.url + "/api/v1/auth/login", json={"user": "zhang.gong", "password": PASSWORD}) as r:
        assert r.status == 403
    async with browser.get(gw.api.url + "/api/v1/auth/whoami") as r:
        csrf = (await r.json())["csrf_token"]
    async with aiohttp.ClientSession() as no_cookie:  # the token without its cookie: another site's form
        async with no_cookie.post(gw.api.url + "/api/v1/auth/login", json={"user": "zhang.gong", "password": PASSWORD},
                                  headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 403
    assert _entries(gw, "login") == []


async def test_repeated_wrong_passwords_are_throttled_even_for_the_right_one_and_audited_once(gw, browser) -> None:
    await add_user(gw, "zhang.gong", "engineer")
    async with browser.get(gw.api.url + "/api/v1/auth/whoami") as r:
        csrf = (await r.json())["csrf_token"]

    async def attempt(password: str) -> aiohttp.ClientResponse:
        async with browser.post(gw.api.url + "/api/v1/auth/login", json={"user": "zhang.gong", "password": password},
                                headers={"X-CSRF-Token": csrf}) as r:
            await r.read()
            return r

    statuses = [(await attempt(f"guess number {i}")).status for i in range(5)]
    assert statuses == [401, 401, 401, 401, 401]
    right = await attempt(PASSWORD)
    assert right.status == 429 and 25 <= int(right.headers["Retry-After"]) <= 31
    (throttled,) = _entries(gw, "login_throttled")
    assert throttled["user"] == "zhang.gong" and throttled["locked"] == "account" and throttled["failures"] == 5
    assert _entries(gw, "login") == []


# --------------------------------------------------------------------------- API tokens


async def test_api_tokens_authenticate_until_they_expire_are_revoked_or_their_account_is_disabled(gw, browser) -> None:
    url = gw.api.url + "/api/v1/records"
    good = await token_for(gw, "script.user", "engineer")
    async with browser.get(url, headers=good) as r:
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    (token,) = await gw.store.list_tokens("script.user")
    assert token.last_used_at is not None and token.last_used_from == "127.0.0.1"

    expired = await token_for(gw, "script.user", lifetime=-1)
    async with browser.get(url, headers=expired) as r:
        assert r.status == 401 and "expired" in (await r.json())["error"]["message"]
        assert r.headers["WWW-Authenticate"].startswith("Bearer")

    await gw.store.revoke_token(token.token_id, "test")
    async with browser.get(url, headers=good) as r:
        assert r.status == 401 and "revoked" in (await r.json())["error"]["message"]

    other = await token_for(gw, "script.user")
    await gw.store.set_user_disabled("script.user", True, "test")
    async with browser.get(url, headers=other) as r:
        assert r.status == 401 and "disabled" in (await r.json())["error"]["message"]

    wrong_secret = {"Authorization": other["Authorization"][:-4] + "AAAA"}
    async with browser.get(url, headers=wrong_secret) as r:
        assert r.status == 401
    async with browser.get(url, headers={"Authorization": "Basic YWRtaW46YWRtaW4="}) as r:
        assert r.status == 401


async def test_a_token_needs_no_csrf_token_for_a_change(gw, browser) -> None:
    engineer = await token_for(gw, "script.user", "engineer")
    async with browser.post(gw.api.url + "/api/v1/deliveries/replay", json={"dry_run": True}, headers=engineer) as r:
        assert r.status == 200


# --------------------------------------------------------------------------- roles


async def test_an_operator_reads_and_replays_only_its_own_systems(gw, browser) -> None:
    await _push(gw, [case_item("PEOPLE-OP-1")])
    ours = await token_for(gw, "op.hall", "operator", ["hall_platform", "archive"])
    theirs = await token_for(gw, "op.county", "operator", ["county_files"])
    async with browser.get(gw.api.url + "/api/v1/records?case_no=PEOPLE-OP-1", headers=ours) as r:
        assert (await r.json())["count"] == 1
    async with browser.get(gw.api.url + "/api/v1/records?case_no=PEOPLE-OP-1", headers=theirs) as r:
        assert r.status == 200 and (await r.json())["count"] == 0
    async with browser.get(gw.api.url + "/api/v1/quarantine?system=hall_platform", headers=theirs) as r:
        assert r.status == 403 and (await r.json())["error"]["permission"] == "quarantine:read"
    async with browser.get(gw.api.url + "/api/v1/audit", headers=theirs) as r:
        assert r.status == 403

    for _ in range(100):  # the archive sink delivers within a few polls
        async with browser.get(gw.api.url + "/api/v1/deliveries?case_no=PEOPLE-OP-1&state=delivered",
                               headers=ours) as r:
            rows = (await r.json())["items"]
        if rows:
            break
        await asyncio.sleep(0.05)
    delivery = rows[0]["id"]
    body = {"ids": [delivery], "states": ["delivered"], "dry_run": True}
    async with browser.post(gw.api.url + "/api/v1/deliveries/replay", json=body, headers=theirs) as r:
        assert r.status == 403 and str(delivery) in (await r.json())["error"]["message"]
    async with browser.post(gw.api.url + "/api/v1/deliveries/replay", json={**body, "dry_run": False},
                            headers=ours) as r:
        assert r.status == 200 and (await r.json())["replayed"] == [delivery]
    async with browser.post(gw.api.url + "/api/v1/deliveries/replay", json={"ids": [999999]}, headers=ours) as r:
        assert r.status == 404
    (replayed,) = [e for e in _entries(gw, "replayed") if e["delivery"] == delivery]
    assert replayed["actor"] == "user:op.hall (operator, token)"


async def test_a_supervisor_reads_the_audit_trail_and_alerts_but_not_the_outbox_and_replays_nothing(gw, browser) -> None:
    supervisor = await token_for(gw, "li.jiancha", "supervisor")
    for path, status in (("/api/v1/audit", 200), ("/api/v1/alerts", 200), ("/api/v1/records", 200),
                         ("/api/v1/deliveries", 403), ("/api/v1/quarantine", 403)):
        async with browser.get(gw.api.url + path, headers=supervisor) as r:
            assert r.status == status, path
    async with browser.post(gw.api.url + "/api/v1/deliveries/replay", json={}, headers=supervisor) as r:
        assert r.status == 403


# --------------------------------------------------------------------------- what stays open


async def test_health_metrics_and_counterpart_pushes_need_no_person(gw, browser) -> None:
    for path in ("/healthz", "/metrics"):
        async with browser.get(gw.api.url + path, headers={"Authorization": "Bearer nonsense"}) as r:
            assert r.status == 200, path
    # a counterpart's own Authorization header is the push endpoints' business, not a person's login
    async with browser.post(gw.api.url + PUSH, json=[case_item("PEOPLE-PUSH-1")], headers=PUSH_AUTH) as r:
        assert r.status == 202
    person = await token_for(gw, "gong.cheng", "engineer")  # and a person's token is no counterpart's
    async with browser.post(gw.api.url + PUSH, json=[case_item("PEOPLE-PUSH-2")], headers=person) as r:
        assert r.status == 401


# --------------------------------------------------------------------------- reverse proxy


async def test_forwarded_headers_count_only_from_the_configured_proxy(gw) -> None:
    await add_user(gw, "zhang.gong", "engineer")
    forwarded = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}

    async def login_from(local_address: str) -> aiohttp.ClientResponse:
        connector = aiohttp.TCPConnector(local_addr=(local_address, 0))
        async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(gw.api.url + "/api/v1/auth/whoami", headers=forwarded) as r:
                pre = await r.json()
                cookie = r.cookies
            name = next(iter(cookie))
            async with http.post(gw.api.url + "/api/v1/auth/login", json={"user": "zhang.gong", "password": PASSWORD},
                                 headers={**forwarded, "X-CSRF-Token": pre["csrf_token"]},
                                 cookies={name: cookie[name].value}) as r:
                await r.read()
                return r

    direct = await login_from("127.0.0.1")  # loopback, but not a configured proxy: the headers are ignored
    assert direct.status == 200
    assert "gw_session=" in direct.headers["Set-Cookie"] and "Secure" not in direct.headers["Set-Cookie"]
    proxied = await login_from("127.0.0.2")  # the configured proxy: its client and scheme count
    assert proxied.status == 200
    set_cookie = proxied.headers["Set-Cookie"]
    assert "__Host-gw_session=" in set_cookie and "Secure" in set_cookie and "HttpOnly" in set_cookie
    assert [e["remote"] for e in _entries(gw, "login")] == ["127.0.0.1", "198.51.100.7"]


# --------------------------------------------------------------------------- the login page


async def test_the_login_page_logs_in_and_out_with_its_forms(gw, browser) -> None:
    await add_user(gw, "zhang.gong", "operator", ["hall_platform"])
    async with browser.get(gw.api.url + "/login") as r:
        page = await r.text()
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert '<html lang="zh-CN">' in page and "用户名" in page and "密码" in page
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]

    async with browser.post(gw.api.url + "/login", data={"user": "zhang.gong", "password": "wrong password!",
                                                         "csrf_token": csrf}) as r:
        assert r.status == 401 and "用户名或密码错误" in await r.text()
    async with browser.post(gw.api.url + "/login", data={"user": "zhang.gong", "password": PASSWORD,
                                                         "csrf_token": csrf}, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/console/"
    async with browser.get(gw.api.url + "/login") as r:
        page = await r.text()
    assert "已登录" in page and "zhang.gong" in page and "审批局业务人员" in page
    session_csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    async with browser.post(gw.api.url + "/logout", data={"csrf_token": "forged"}, allow_redirects=False) as r:
        assert r.status == 403
    async with browser.post(gw.api.url + "/logout", data={"csrf_token": session_csrf}, allow_redirects=False) as r:
        assert r.status == 303
    async with browser.get(gw.api.url + "/api/v1/auth/whoami") as r:
        assert (await r.json())["authenticated"] is False


async def test_the_login_page_escapes_what_it_echoes(gw, browser) -> None:
    async with browser.get(gw.api.url + "/login") as r:
        csrf = (await r.text()).split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    async with browser.post(gw.api.url + "/login", data={"user": '"><script>alert(1)</script>', "password": "x",
                                                         "csrf_token": csrf}) as r:
        page = await r.text()
    assert "<script>" not in page and "&lt;script&gt;" in page

