"""People on the API: who is asking (sessions, API tokens), CSRF, forwarded headers, login and logout.

Two middlewares and five endpoints:

- ``forwarded_middleware`` (outermost) replaces the peer address and scheme with what a
  trusted reverse proxy says (``[api] trusted_proxies``, see ``gateway.security.forwarded``),
  so logs, throttling and the Secure cookie flag see the real client.
- ``auth_middleware`` sets ``request[IDENTITY]`` (``gateway.security.identity``) from an
  ``Authorization: Bearer gwt_…`` API token or the session cookie — never from a header
  that names a user or role — and refuses a state-changing request (POST, PUT, PATCH,
  DELETE) made with the session cookie unless it carries the session's CSRF token in
  ``X-CSRF-Token`` (or a ``csrf_token`` form field) and, when the browser sends ``Origin``,
  comes from the gateway's own origin. Requests with a bearer token need no CSRF token:
  browsers never attach one on their own. The counterpart push endpoints
  (``/api/v1/inbound/*``, ``/soap/*``) are left alone: counterparts authenticate there
  with their own credentials; ``/healthz``, ``/readyz`` and ``/metrics`` answer without any.
- ``GET /login`` (a minimal zh-CN page), ``POST /login`` (on success to the console, /console/)
  and ``POST /logout`` (its forms);
  ``POST /api/v1/auth/login``, ``POST /api/v1/auth/logout`` and ``GET /api/v1/auth/whoami``
  for the console's scripts.

Sessions are server-side (``user_sessions``): a new random id at every login, stored only
as its hash; the cookie is HttpOnly, SameSite=Strict, Path=/, and Secure (with the
``__Host-`` name prefix) when the client reached the gateway over TLS. A session ends at
logout, after ``[api] session_idle`` without a request, after ``session_lifetime`` in any
case, and when the account's password is changed or the account is disabled.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.api._web import GATEWAY, _request_key, dumps, error_response
from gateway.security import credentials
from gateway.security.forwarded import TrustedProxies
from gateway.security.identity import ANONYMOUS, IDENTITY, AccessDenied, Identity, identity_of
from gateway.security.throttle import LoginThrottle

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.api.auth")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SESSION_COOKIE = "gw_session"
SECURE_SESSION_COOKIE = "__Host-gw_session"
LOGIN_CSRF_COOKIE = "gw_login_csrf"
SECURE_LOGIN_CSRF_COOKIE = "__Host-gw_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
TOUCH_EVERY = 60.0  # seconds between writes of a session's last_seen / a token's last_used
PUSH_PREFIXES = ("/api/v1/inbound/", "/soap/")
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Login carries its own CSRF check (a double-submitted pre-login token), whatever session is open.
LOGIN_PATHS = frozenset({"/login", "/api/v1/auth/login"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
MAX_USER = 64


class AuthState:
    """What the auth middleware keeps between requests: proxies, throttle, recent token use."""

    def __init__(self, gw: Gateway) -> None:
        api = gw.config.api
        self.proxies = TrustedProxies(api.trusted_proxies)
        self.idle = api.session_idle
        self.lifetime = api.session_lifetime
        self.throttle = LoginThrottle()
        self._token_touched: dict[str, float] = {}

    def token_touch_due(self, token_id: str, now: float) -> bool:
        last = self._token_touched.get(token_id, 0.0)
        if now - last < TOUCH_EVERY:
            return False
        if len(self._token_touched) > 10_000:
            self._token_touched.clear()
        self._token_touched[token_id] = now
        return True


AUTH: web.AppKey[AuthState] = web.AppKey("auth", AuthState)


def is_push_path(path: str) -> bool:
    return path.startswith(PUSH_PREFIXES)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, _CHINA).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- middlewares


@web.middleware
async def forwarded_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The client's own address and scheme, when a trusted proxy forwarded the request."""
    proxies = request.app[AUTH].proxies
    if not proxies:
        return await handler(request)
    seen = proxies.client(request.remote, request.scheme, request.headers.getall("X-Forwarded-For", []),
                          request.headers.getall("X-Forwarded-Proto", []))
    if not seen.forwarded:
        return await handler(request)
    return await handler(request.clone(remote=seen.remote, scheme=seen.scheme))


def _session_cookie_name(request: web.Request) -> str:
    return SECURE_SESSION_COOKIE if request.secure else SESSION_COOKIE


def _login_cookie_name(request: web.Request) -> str:
    return SECURE_LOGIN_CSRF_COOKIE if request.secure else LOGIN_CSRF_COOKIE


def _own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


class _Session:
    """The session cookie's id and its hash, kept on the request for logout, re-login and the CSRF check."""

    __slots__ = ("session_id", "id_hash")

    def __init__(self, session_id: str, id_hash: str) -> None:
        self.session_id = session_id
        self.id_hash = id_hash


SESSION = _request_key("session")


async def _from_token(request: web.Request, header: str) -> Identity:
    gw: Gateway = request.app[GATEWAY]
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AccessDenied(401, "the Authorization header must be 'Bearer <API token>'")
    parsed = credentials.parse_token(value)
    found = await gw.store.find_token(parsed.token_id) if parsed is not None else None  # type: ignore[union-attr]
    now = time.time()
    if parsed is None or found is None or not credentials.token_matches(found[0].secret_hash, parsed):
        raise AccessDenied(401, "the API token is not valid")
    token, user = found
    if token.revoked_at is not None:
        raise AccessDenied(401, f"API token {token.token_id} was revoked")
    if token.expires_at <= now:
        raise AccessDenied(401, f"API token {token.token_id} expired at {_iso(token.expires_at)}")
    if not user.active:
        raise AccessDenied(401, f"the account {user.name} of API token {token.token_id} is disabled")
    if request.app[AUTH].token_touch_due(token.token_id, time.monotonic()):
        await gw.store.touch_token(token.token_id, now, request.remote)  # type: ignore[union-attr]
    return Identity(user.name, user.role, frozenset(user.systems) if user.systems is not None else None, "token",
                    token.token_id, user.display_name)


async def _from_session(request: web.Request) -> tuple[Identity, str | None]:
    """The session's identity, and why a presented cookie no longer counts (to clear it), if it does not."""
    session_id = request.cookies.get(_session_cookie_name(request))
    if not session_id or len(session_id) > 128:
        return ANONYMOUS, None
    gw: Gateway = request.app[GATEWAY]
    store: Any = gw.store
    state = request.app[AUTH]
    id_hash = credentials.session_key(session_id)
    found = await store.find_session(id_hash)
    if found is None:
        return ANONYMOUS, "unknown"
    session, user = found
    now = time.time()
    reason = None
    if not user.active:
        reason = "account disabled"
    elif now >= session.expires_at:
        reason = "expired"
    elif now - session.last_seen_at >= state.idle:
        reason = "idle"
    if reason is not None:
        await store.end_session(id_hash, reason)
        return ANONYMOUS, reason
    if now - session.last_seen_at >= TOUCH_EVERY:
        await store.touch_session(id_hash, now)
    request[SESSION] = _Session(session_id, id_hash)
    ident = Identity(user.name, user.role, frozenset(user.systems) if user.systems is not None else None, "session",
                     id_hash[:12], user.display_name)
    return ident, None


async def _csrf_field(request: web.Request) -> str | None:
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        value = form.get("csrf_token")
        given = value if isinstance(value, str) else None
    return given


def denied(request: web.Request, exc: AccessDenied) -> web.Response:
    """401 (with WWW-Authenticate) or 403 in the API's error shape, naming the permission that was missing."""
    response = error_response(request, exc.status, exc.message,
                              **({"permission": exc.permission} if exc.permission else {}))
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="gateway"'
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Set request[IDENTITY]; refuse a cookie-authenticated state change without the session's CSRF token."""
    path = request.path
    if is_push_path(path) or path in OPEN_PATHS:
        request[IDENTITY] = ANONYMOUS
        return await handler(request)
    stale: str | None = None
    try:
        header = request.headers.get("Authorization")
        if header is not None:
            ident = await _from_token(request, header)
        else:
            ident, stale = await _from_session(request)
        request[IDENTITY] = ident
        if request.method not in SAFE_METHODS:
            await _check_change(request, path)
        response = await handler(request)
    except AccessDenied as exc:
        response = denied(request, exc)
    if stale is not None and not response.prepared:
        _clear_cookie(response, _session_cookie_name(request))  # the browser should stop sending it
    if identity_of(request).authenticated and not response.prepared:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


async def _check_change(request: web.Request, path: str) -> None:
    """A state change: from this gateway's own origin, and with the session cookie, with its CSRF token."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != _own_origin(request):
        raise AccessDenied(403, f"cross-origin request refused: Origin {origin!r} is not this gateway "
                                f"({_own_origin(request)})")
    session: _Session | None = request.get(SESSION)
    if session is not None and path not in LOGIN_PATHS and not credentials.same_secret(
            await _csrf_field(request), credentials.csrf_token_for(session.session_id)):
        raise AccessDenied(403, f"the request lacks this session's CSRF token (send it in {CSRF_HEADER}; "
                                "GET /api/v1/auth/whoami gives it)")


# --------------------------------------------------------------------------- cookies


def _set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str,
                max_age: float | None) -> None:
    response.set_cookie(name, value, path="/", httponly=True, samesite="Strict", secure=request.secure,
                        max_age=int(max_age) if max_age is not None else None)


def _clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path="/")


def _login_csrf(request: web.Request, response: web.StreamResponse) -> str:
    """The pre-login CSRF token (double submit: a SameSite=Strict cookie and the same value in the form)."""
    token = request.cookies.get(_login_cookie_name(request))
    if not token or len(token) != 43:
        token = credentials.new_session_id()
        _set_cookie(response, request, _login_cookie_name(request), token, None)
    return token


# --------------------------------------------------------------------------- login and logout


class LoginRefused(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


async def _login(request: web.Request, user: str, password: str, csrf: str | None) -> tuple[Identity, str]:
    """Check the CSRF token, the throttle and the password; on success a new session id (not yet a cookie)."""
    gw: Gateway = request.app[GATEWAY]
    store: Any = gw.store
    state = request.app[AUTH]
    current: _Session | None = request.get(SESSION)
    # The page's pre-login token (double submit), or, when a session is open, that session's own token.
    if not (credentials.same_secret(csrf, request.cookies.get(_login_cookie_name(request)))
            or (current is not None and credentials.same_secret(csrf, credentials.csrf_token_for(current.session_id)))):
        raise LoginRefused(403, "the login form is stale or was not sent by this gateway's page: reload it")
    user = user.strip().lower()
    if not user or len(user) > MAX_USER or not password or len(password) > credentials.MAX_PASSWORD_LENGTH:
        raise LoginRefused(401, "user name or password is wrong")
    remote = request.remote
    verdict = state.throttle.check(user, remote)
    if not verdict.allowed:
        raise LoginRefused(429, f"{verdict.reason}; try again in {int(verdict.retry_after) + 1} s",
                           verdict.retry_after)
    account = await store.get_user(user)
    stored = account.password_hash if account is not None and account.active else None
    if not await credentials.verify_password(stored, password):
        failure = state.throttle.failed(user, remote)
        log.warning("login refused for %r from %s (%d consecutive failures)", user, remote, failure.failures)
        if failure.locked is not None:
            await store.audit_event("login_throttled", detail={
                "user": user, "remote": remote, "locked": failure.locked, "failures": failure.failures,
                "retry_after": round(failure.retry_after)})
        raise LoginRefused(401, "user name or password is wrong")
    state.throttle.succeeded(user)
    assert account is not None and account.password_hash is not None
    if credentials.needs_rehash(account.password_hash):
        await store.rehash_user_password(user, account.password_hash, await credentials.hash_password(password))
    if current is not None:  # logging in again replaces the session, never reuses its id
        await store.end_session(current.id_hash, "replaced by a new login")
    session_id = credentials.new_session_id()
    await store.create_session(credentials.session_key(session_id), user, state.lifetime, remote,
                               request.headers.get("User-Agent"))
    ident = Identity(account.name, account.role, frozenset(account.systems) if account.systems is not None else None,
                     "session", credentials.session_key(session_id)[:12], account.display_name)
    request[IDENTITY] = ident
    log.info("login: %s from %s", ident.label(), remote)
    return ident, session_id


def _session_answer(request: web.Request, ident: Identity, session_id: str) -> dict[str, Any]:
    state = request.app[AUTH]
    return {**ident.as_dict(), "csrf_token": credentials.csrf_token_for(session_id),
            "idle_timeout_seconds": state.idle, "expires_at": _iso(time.time() + state.lifetime)}


def _start_session(request: web.Request, response: web.StreamResponse, session_id: str) -> None:
    _set_cookie(response, request, _session_cookie_name(request), session_id, request.app[AUTH].lifetime)
    _clear_cookie(response, _login_cookie_name(request))


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(text=dumps(value), status=status, content_type="application/json", charset="utf-8",
                            headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def _refusal_json(request: web.Request, exc: LoginRefused) -> web.Response:
    headers = {"Retry-After": str(int(exc.retry_after) + 1)} if exc.retry_after else None
    return _json({"error": {"status": exc.status, "message": exc.message}}, exc.status, headers)


async def api_login(request: web.Request) -> web.Response:
    """POST /api/v1/auth/login {"user", "password"} with the login CSRF token in X-CSRF-Token."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("user"), str) or not isinstance(body.get("password"), str):
        return _json({"error": {"status": 400, "message": 'send {"user": "…", "password": "…"} as JSON'}}, 400)
    try:
        ident, session_id = await _login(request, body["user"], body["password"], request.headers.get(CSRF_HEADER))
    except LoginRefused as exc:
        return _refusal_json(request, exc)
    response = _json(_session_answer(request, ident, session_id))
    _start_session(request, response, session_id)
    return response


async def api_logout(request: web.Request) -> web.Response:
    """POST /api/v1/auth/logout: end this session (the CSRF check ran in the middleware)."""
    response = _json({"logged_out": await _logout(request)})
    _clear_cookie(response, _session_cookie_name(request))
    return response


async def _logout(request: web.Request) -> bool:
    session: _Session | None = request.get(SESSION)
    if session is None:
        return False
    ended = await request.app[GATEWAY].store.end_session(session.id_hash, "logout")  # type: ignore[union-attr]
    log.info("logout: %s", identity_of(request).label())
    request[IDENTITY] = ANONYMOUS
    return bool(ended)


async def whoami(request: web.Request) -> web.Response:
    """GET /api/v1/auth/whoami: the caller, its permissions and the CSRF token to send with changes."""
    ident = identity_of(request)
    session: _Session | None = request.get(SESSION)
    if session is not None:
        answer = _session_answer(request, ident, session.session_id)
        found = await request.app[GATEWAY].store.find_session(session.id_hash)  # type: ignore[union-attr]
        if found is not None:
            answer["expires_at"] = _iso(found[0].expires_at)
        return _json(answer)
    if ident.authenticated:
        return _json(ident.as_dict())
    response = _json(None)
    token = _login_csrf(request, response)
    response.text = dumps({**ident.as_dict(), "csrf_token": token, "login": "/api/v1/auth/login"})
    return response


# --------------------------------------------------------------------------- the login page

_ROLE_NAMES = {"engineer": "集成工程师", "operator": "审批局业务人员", "supervisor": "监察人员", "auditor": "审计人员"}

_PAGE = """<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>登录 · 政务服务数据交换网关</title>
<style>
body{{font-family:"PingFang SC","Microsoft YaHei",sans-serif;background:#f3f5f8;margin:0;color:#1f2937}}
main{{max-width:360px;margin:12vh auto;background:#fff;padding:32px;border-radius:8px;box-shadow:0 1px 4px #0002}}
h1{{font-size:20px;margin:0 0 4px}} p.sub{{color:#6b7280;margin:0 0 24px;font-size:14px}}
label{{display:block;font-size:14px;margin:12px 0 4px}}
input[type=text],input[type=password]{{width:100%;box-sizing:border-box;padding:8px;border:1px solid #cbd5e1;border-radius:4px;font-size:15px}}
button{{margin-top:20px;width:100%;padding:10px;border:0;border-radius:4px;background:#b91c1c;color:#fff;font-size:15px;cursor:pointer}}
.error{{background:#fef2f2;color:#991b1b;padding:8px;border-radius:4px;font-size:14px}}
.ok{{font-size:15px}}
</style>
</head>
<body>
<main>
<h1>政务服务数据交换网关</h1>
<p class="sub">{gateway}</p>
{body}
</main>
</body>
</html>
"""

_LOGIN_FORM = """{error}<form method="post" action="/login" autocomplete="off">
<input type="hidden" name="csrf_token" value="{csrf}">
<label for="user">用户名</label>
<input type="text" id="user" name="user" value="{user}" required maxlength="64" autofocus>
<label for="password">密码</label>
<input type="password" id="password" name="password" required maxlength="1024">
<button type="submit">登录</button>
</form>"""

_LOGGED_IN = """<p class="ok">已登录：<strong>{user}</strong>（{role}）</p>
<p><a href="/console/">进入监管控制台</a></p>
<form method="post" action="/logout">
<input type="hidden" name="csrf_token" value="{csrf}">
<button type="submit">退出登录</button>
</form>"""

_ERRORS = {401: "用户名或密码错误。", 403: "登录页面已过期，请刷新后重试。", 429: "登录失败次数过多，请稍后再试（{wait} 秒后）。"}


def _page(request: web.Request, body: str, status: int = 200) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    response = web.Response(text=_PAGE.format(gateway=html.escape(gw.config.gateway.name), body=body), status=status,
                            content_type="text/html", charset="utf-8")
    response.headers.update({
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                   "frame-ancestors 'none'; base-uri 'none'",
        # Not no-referrer: under it browsers send "Origin: null" with the form's POST, which the Origin check
        # refuses. same-origin still sends nothing to other sites.
        "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store"})
    return response


def _login_page(request: web.Request, *, error: str = "", user: str = "", status: int = 200) -> web.Response:
    response = _page(request, "", status)
    csrf = _login_csrf(request, response)  # sets the cookie on this response when the browser has none
    shown = f'<p class="error">{html.escape(error)}</p>\n' if error else ""
    form = _LOGIN_FORM.format(error=shown, csrf=html.escape(csrf), user=html.escape(user))
    gw: Gateway = request.app[GATEWAY]
    response.text = _PAGE.format(gateway=html.escape(gw.config.gateway.name), body=form)
    return response


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


async def login_page(request: web.Request) -> web.Response:
    """GET /login: the form, or who is logged in with a logout button."""
    ident = identity_of(request)
    session: _Session | None = request.get(SESSION)
    if ident.authenticated and session is not None:
        body = _LOGGED_IN.format(user=html.escape(ident.user or ""),
                                 role=html.escape(_ROLE_NAMES.get(ident.role or "", ident.role or "")),
                                 csrf=html.escape(credentials.csrf_token_for(session.session_id)))
        return _page(request, body)
    return _login_page(request)


async def login_form(request: web.Request) -> web.StreamResponse:
    """POST /login (form): a session and back to /login, or the form again with the reason."""
    form = await request.post()
    user, password, csrf = (form.get(k) for k in ("user", "password", "csrf_token"))
    user = user if isinstance(user, str) else ""
    try:
        _, session_id = await _login(request, user, password if isinstance(password, str) else "",
                                     csrf if isinstance(csrf, str) else None)
    except LoginRefused as exc:
        message = _ERRORS[exc.status].format(wait=int(exc.retry_after or 0) + 1)
        response = _login_page(request, error=message, user=user[:MAX_USER], status=exc.status)
        if exc.retry_after:
            response.headers["Retry-After"] = str(int(exc.retry_after) + 1)
        return response
    response = _see_other("/console/")  # the console (gateway/console) is where people work
    _start_session(request, response, session_id)
    return response


async def logout_form(request: web.Request) -> web.StreamResponse:
    """POST /logout (form): end the session, back to the login form."""
    await _logout(request)
    response = _see_other("/login")
    _clear_cookie(response, _session_cookie_name(request))
    return response


async def _hint_first_user(app: web.Application) -> None:
    store: Any = app[GATEWAY].store
    if store is not None and await store.count_users() == 0:
        log.warning("no user accounts exist yet: nobody can log in or read the query API; create the first with "
                    "`gateway users add NAME --role engineer -c %s`", app[GATEWAY].config.path or "gateway.toml")


def add_routes(app: web.Application, gw: Gateway) -> None:
    app[AUTH] = AuthState(gw)
    app.on_startup.append(_hint_first_user)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_form)
    app.router.add_post("/logout", logout_form)
    app.router.add_post("/api/v1/auth/login", api_login)
    app.router.add_post("/api/v1/auth/logout", api_logout)
    app.router.add_get("/api/v1/auth/whoami", whoami)
