"""The console's pages: one HTML shell at /console/ and its static assets (the app, its styles, ECharts).

The console is a small vanilla-JavaScript application over the query API (gateway/console/api.py
and the other /api/v1 endpoints): no build step, no framework, nothing fetched from outside the
gateway. Assets are served from the package with a content hash in their URL, so they can be
cached for good and a new version is fetched at once; the page's Content-Security-Policy allows
scripts from the gateway only.
"""

from __future__ import annotations

import hashlib
import html
from functools import cache
from importlib.resources import files

from aiohttp import web

from gateway.api._web import GATEWAY
from gateway.security.identity import identity_of

ECHARTS_VERSION = "6.1.0"
ASSETS: dict[str, str] = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "vendor/echarts.min.js": "text/javascript",
    "vendor/echarts.LICENSE": "text/plain",
    "vendor/echarts.NOTICE": "text/plain",
}
"""Every file the console serves, with its content type; nothing else under /console/static/ answers."""

CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                     "Referrer-Policy": "same-origin"}  # no-referrer would make fetch() send Origin: null

_SHELL = """<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>监管控制台 · 政务服务数据交换网关</title>
<link rel="stylesheet" href="{css}">
</head>
<body data-gateway="{gateway}">
<header id="top"><div class="brand">政务服务数据交换网关 · 监管控制台<span class="gw">{gateway}</span></div>
<nav id="nav"></nav><div id="who"></div></header>
<main id="main"><p class="loading">正在加载…</p></main>
<script src="{echarts}"></script>
<script type="module" src="{app}"></script>
</body>
</html>
"""


@cache
def _asset(name: str) -> tuple[bytes, str]:
    data = files("gateway.console").joinpath("static", *name.split("/")).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:16]


def asset_url(name: str) -> str:
    return f"/console/static/{name}?v={_asset(name)[1]}"


async def console(request: web.Request) -> web.StreamResponse:
    """GET /console/: the application shell; without a login, the login page."""
    if not identity_of(request).authenticated:
        raise web.HTTPFound("/login")
    gateway = html.escape(request.app[GATEWAY].config.gateway.name)
    body = _SHELL.format(gateway=gateway, css=asset_url("app.css"), app=asset_url("app.js"),
                         echarts=asset_url("vendor/echarts.min.js"))
    response = web.Response(text=body, content_type="text/html", charset="utf-8")
    response.headers.update(_SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-store"
    return response


async def console_redirect(request: web.Request) -> web.StreamResponse:
    """GET / and GET /console: to the console."""
    raise web.HTTPFound("/console/")


async def static(request: web.Request) -> web.StreamResponse:
    """GET /console/static/{name}: one of ASSETS; cached for a year when asked for by its content hash."""
    name = request.match_info["name"]
    ctype = ASSETS.get(name)
    if ctype is None:
        raise web.HTTPNotFound(text=f"no console asset {name!r}")
    data, digest = _asset(name)
    response = web.Response(body=data, content_type=ctype, charset="utf-8")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["ETag"] = f'"{digest}"'
    if request.query.get("v") == digest:
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    else:
        response.headers["Cache-Control"] = "no-cache"
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", console_redirect)
    app.router.add_get("/console", console_redirect)
    app.router.add_get("/console/", console)
    app.router.add_get("/console/static/{name:.+}", static)
