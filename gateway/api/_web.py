"""What the API's handlers share: application keys, JSON answers, body-size and shutdown guards, parameters."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gateway.api._inbound import ApiError

if TYPE_CHECKING:
    from gateway.api._metrics import ApiMetrics
    from gateway.app import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
METRICS: web.AppKey[ApiMetrics] = web.AppKey("metrics")


def _request_key(name: str) -> Any:
    # Typed request keys arrived in aiohttp 3.12; older versions take plain strings.
    maker = getattr(web, "RequestKey", None)
    return maker(name, object) if maker is not None else name


CORRELATION_ID = _request_key("correlation_id")
INBOUND = _request_key("inbound")  # the BatchResult of a push, for the log line
CORRELATION_HEADER = "X-Correlation-Id"


def dumps(value: Any) -> str:
    return _dumps_bytes(value).decode("utf-8")


def _dumps_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON: orjson (a push's receipt is written on every request), json for what it refuses."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits, a lone surrogate …
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8",
                                                                                               "backslashreplace")


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps_bytes(value), status=status, content_type="application/json", charset="utf-8")


def error_response(request: web.Request, status: int, message: str, **detail: Any) -> web.Response:
    """The API's one error shape: ``{"error": {"status", "message", …}, "correlation_id"}``."""
    body = {"error": {"status": status, "message": message, **detail}, "correlation_id": request.get(CORRELATION_ID)}
    return json_response(body, status=status)


def refuse_while_stopping(gw: Gateway) -> None:
    if gw.stopping.is_set():
        raise ApiError(503, "the gateway is shutting down; nothing was received: send again shortly")
    if not gw.started:
        raise ApiError(503, "the gateway is starting; nothing was received: send again shortly")


def _too_large(limit: int, length: int | None) -> ApiError:
    size = f"the body is {length} bytes" if length is not None else "the body is larger than allowed"
    return ApiError(413, f"{size}; this gateway accepts at most {limit} bytes per request ([api].max_body_bytes): "
                         "split the batch", max_body_bytes=limit)


async def read_body(request: web.Request) -> bytes:
    """The whole body, refusing an announced oversized one before reading a byte of it.

    A body without Content-Length (chunked) is cut off by aiohttp's ``client_max_size``,
    set to the same limit, as soon as it grows past it.
    """
    limit = request.app[GATEWAY].config.api.max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit, length)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit, None) from None


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name}={raw!r} is not a whole number", parameter=name) from None
    if not lo <= value <= hi:
        raise ApiError(400, f"query parameter {name}={value} is out of range {lo}..{hi}", parameter=name)
    return value


def choice_param(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query.get(name) or None
    if raw is not None and raw not in choices:
        raise ApiError(400, f"query parameter {name}={raw!r} is not one of {', '.join(choices)}", parameter=name)
    return raw
