"""Log output through structlog: every stdlib and structlog logger as JSON lines, or readable on a terminal.

One handler on the root logger renders every record, the gateway's, its adapters' and the
libraries' (aiohttp, zeep, httpx …): ``extra={...}`` fields become JSON keys, the correlation
id bound to the running task is added, and ID and mobile numbers are masked in the whole line.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from gateway.observability import correlation
from gateway.observability.settings import LOG_FORMATS, level_number

__all__ = ["configure_logging", "in_container", "resolve_format"]

# The keys every JSON line starts with, in this order; the rest follow as the code gave them.
FIRST_KEYS = ("timestamp", "level", "logger", "event", "message", "correlation_id")
# Libraries that are chatty at INFO (httpx logs every request zeep makes): quieter unless configured.
QUIET = {"httpx": "WARNING", "httpcore": "WARNING", "zeep": "WARNING", "asyncio": "WARNING"}


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (test runners and click swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # the base class assigns it once; sys.stderr always wins
        pass


def in_container() -> bool:
    """Whether this process runs in a container (Docker, Podman, Kubernetes, systemd-nspawn)."""
    return (os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")
            or bool(os.environ.get("container")) or bool(os.environ.get("KUBERNETES_SERVICE_HOST")))


def resolve_format(fmt: str, stream: TextIO | None = None) -> str:
    """``json`` or ``console``: ``auto`` is console on a terminal outside a container, JSON otherwise."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (use {', '.join(LOG_FORMATS)})")
    if fmt != "auto":
        return fmt
    tty = _isatty(stream if stream is not None else sys.stderr)
    return "console" if tty and not in_container() else "json"


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# --------------------------------------------------------------------------- processors


def _add_correlation_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The id of the request, file or pull being handled, unless the line names one itself."""
    if "correlation_id" not in event_dict:
        cid = correlation.current()
        if cid is not None:
            event_dict["correlation_id"] = cid
    return event_dict


_zone: tuple[float, tzinfo | None] = (float("-inf"), None)


def _local_zone() -> tzinfo | None:
    """The local time zone, looked up at most once a minute (``astimezone()`` asks the C library every
    time; a daylight-saving change shows within a minute)."""
    global _zone
    now = time.monotonic()
    if now - _zone[0] >= 60.0:
        _zone = (now, datetime.now().astimezone().tzinfo)
    return _zone[1]


def _add_timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The local time with its UTC offset, to the millisecond."""
    event_dict["timestamp"] = datetime.now(_local_zone()).isoformat(timespec="milliseconds")
    return event_dict


def _json_line(obj: Any, **_: Any) -> str:
    """One log line's JSON: orjson (Chinese kept as it is, anything else written as text), the standard
    library for what orjson refuses (keys that are not strings, integers beyond 64 bits)."""
    try:
        return orjson.dumps(obj, default=str).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(obj, ensure_ascii=False, default=str)


# What every LogRecord has, and what formatters add to it (another handler's may have run first).
_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _add_extra(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """A stdlib call's ``extra={...}`` fields as keys. An ``event`` field names the line for machines
    (``delivery_dead_letter``); the words of the message then stay, as ``message``."""
    record = event_dict.get("_record")
    if record is None:
        return event_dict
    for key, value in record.__dict__.items():
        if key in _RECORD_KEYS:
            continue
        if key == "event" and value != event_dict.get("event"):
            event_dict["message"] = event_dict.get("event")
        event_dict[key] = value
    return event_dict


def _first_keys(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    ordered = {key: event_dict.pop(key) for key in FIRST_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _shared() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        _add_correlation_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_timestamp,
    ]


class _MaskingFormatter(logging.Formatter):
    """The structlog rendering of a record with ID and mobile numbers masked in the whole line."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        from gateway.security.masking import mask_text

        return mask_text(self.inner.format(record))


def _formatter(fmt: str, colors: bool) -> logging.Formatter:
    renderer: Processor
    tail: list[Processor]
    if fmt == "json":
        tail = [structlog.processors.format_exc_info, _first_keys]
        # Chinese stays readable; anything JSON cannot hold (a Path, a datetime) is written as text.
        renderer = structlog.processors.JSONRenderer(serializer=_json_line)
    else:
        tail = []
        renderer = structlog.dev.ConsoleRenderer(colors=colors, sort_keys=False)
    inner = structlog.stdlib.ProcessorFormatter(
        # extra={...} of stdlib calls first, so a field the call names wins over the bound context.
        foreign_pre_chain=[_add_extra, *_shared()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
    )
    return _MaskingFormatter(inner)


# --------------------------------------------------------------------------- set-up


_SETTINGS: dict[str, Any] | None = None


def logging_settings() -> dict[str, Any] | None:
    """The arguments of the last ``configure_logging`` (a push worker logs as its gateway does), or None."""
    return dict(_SETTINGS) if _SETTINGS is not None else None


def configure_logging(
    *,
    fmt: str = "auto",
    level: str | int = "WARNING",
    levels: Mapping[str, str] | None = None,
    capture_warnings: bool = False,
) -> str:
    """Route every logger through one structlog-rendered handler on the root logger; returns the format used.

    ``levels`` sets single loggers ("gateway.delivery" = "DEBUG"). Calling it again replaces
    the handler it installed before and leaves other handlers (a test runner's) alone.
    """
    chosen = resolve_format(fmt)
    global _SETTINGS
    _SETTINGS = {"fmt": chosen, "level": level, "levels": dict(levels or {}), "capture_warnings": capture_warnings}
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_gateway_log", False):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler._gateway_log = True  # type: ignore[attr-defined]
    handler.setFormatter(_formatter(chosen, colors=chosen == "console" and _isatty(sys.stderr)))
    root.addHandler(handler)
    root.setLevel(level_number(level))
    for name, lib_level in QUIET.items():
        logging.getLogger(name).setLevel(level_number(lib_level))
    for name, logger_level in (levels or {}).items():
        logging.getLogger(name).setLevel(level_number(logger_level))
    logging.captureWarnings(capture_warnings)
    structlog.configure(
        processors=[*_shared(), structlog.processors.StackInfoRenderer(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return chosen


@functools.cache
def json_formatter() -> logging.Formatter:
    """The JSON line formatter alone (for a handler of one's own, as the tests attach)."""
    return _formatter("json", colors=False)
