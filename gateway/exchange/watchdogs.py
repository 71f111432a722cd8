"""Watchdogs per counterpart: "records expected by HH:MM each working day" and "no contact for N minutes".

:class:`ContactBook` notes, in memory, every time a counterpart was heard from (any item
received, whatever became of it); the follower adds successful deliveries from the outbox and
writes both to the store. :func:`evaluate` judges one counterpart's watchdogs at one moment: a
watchdog that starts firing raises an alert, one that is satisfied again raises a clearing one.
"""

from __future__ import annotations

import threading
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.adapters import IngestOutcome
from gateway.exchange.config import Counterpart, parse_hhmm
from gateway.supervision.calendar import WorkCalendar

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
EXPECTED_BY = "expected_by"
SILENCE = "silence"


class ContactBook:
    """When each system was last heard from (an item received) — thread-safe, cheap, in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: dict[str, float] = {}

    def note(self, system: str, outcomes: Sequence[IngestOutcome] = ()) -> None:
        """The ingestor's hook: ``system`` was heard from now (whatever became of its items)."""
        self.heard(system, _time.time())

    def heard(self, system: str, at: float) -> None:
        with self._lock:
            self._received[system] = max(at, self._received.get(system, 0.0))

    def received(self) -> dict[str, float]:
        with self._lock:
            return dict(self._received)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One watchdog's state after an evaluation; ``alert`` is what to raise when it changed."""

    watch: str
    state: str  # ok | firing
    since: str
    detail: dict[str, Any]
    alert: tuple[str, str] | None = None  # (alert type, description)
    subject: str = ""  # distinguishes this firing from earlier ones of the same watchdog


def _fmt(ts: float | None) -> str:
    if ts is None:
        return "从未"
    return datetime.fromtimestamp(ts, CHINA).strftime("%Y-%m-%d %H:%M:%S")


def evaluate(cp: Counterpart, now: datetime, *, last_received: float | None, last_delivered: float | None,
             watching_since: float, previous: Mapping[str, Mapping[str, Any]],
             calendar: WorkCalendar) -> list[Verdict]:
    """The verdict of each configured watchdog of ``cp`` at ``now`` (China time).

    ``last_received`` / ``last_delivered`` are unix times of the last item from and successful
    delivery to the counterpart; ``watching_since`` is when the gateway started watching (a
    counterpart never heard from is silent since then); ``previous`` the stored state by watch.
    """
    now = now.astimezone(CHINA)
    ts = now.timestamp()
    verdicts: list[Verdict] = []
    if cp.watch.silence is not None:
        last = max([t for t in (last_received, last_delivered) if t is not None], default=None)
        quiet_since = last if last is not None else watching_since
        firing = ts - quiet_since > cp.watch.silence
        detail = {"last_received": _fmt(last_received), "last_delivered": _fmt(last_delivered),
                  "silence_seconds": cp.watch.silence}
        verdicts.append(_judge(cp, SILENCE, firing, now, detail, previous.get(SILENCE), quiet_since,
                               fire=("no_contact", f"对接系统 {cp.name} 已 {_span(ts - quiet_since)} 无联络"
                                     f"（最后接收 {_fmt(last_received)}，最后送达 {_fmt(last_delivered)}；"
                                     f"允许 {_span(cp.watch.silence)}）"),
                               clear=f"对接系统 {cp.name} 已恢复联络（最后接收 {_fmt(last_received)}，"
                                     f"最后送达 {_fmt(last_delivered)}）"))
    if cp.watch.expect_by is not None:
        verdicts.append(_expected_by(cp, now, last_received, previous.get(EXPECTED_BY), calendar))
    return verdicts


def _expected_by(cp: Counterpart, now: datetime, last_received: float | None, prev: Mapping[str, Any] | None,
                 calendar: WorkCalendar) -> Verdict:
    """Records are due by HH:MM on working days; a missing feed stays missing (across midnight) until records come."""
    assert cp.watch.expect_by is not None
    today = now.date()
    today_start = datetime.combine(today, datetime.min.time(), CHINA).timestamp()
    due_today = calendar.is_workday(today) and now.time() >= parse_hhmm(cp.watch.expect_by)
    firing_before = prev is not None and prev.get("state") == "firing"
    detail_before = (prev or {}).get("detail") or {}
    awaited = float(detail_before.get("awaited_since", today_start)) if firing_before else today_start
    arrived = last_received is not None and last_received >= awaited
    detail = {"expect_by": cp.watch.expect_by, "awaited_since": awaited, "last_received": _fmt(last_received),
              "alerted_day": detail_before.get("alerted_day") if firing_before else None}
    if firing_before and arrived:
        detail["alerted_day"] = None
        return Verdict(EXPECTED_BY, "ok", now.isoformat(timespec="seconds"), detail,
                       ("watchdog_cleared", f"对接系统 {cp.name} 的数据已到达（{_fmt(last_received)}）"),
                       f"{EXPECTED_BY}:{now.isoformat(timespec='seconds')}")
    if firing_before:
        if due_today and detail["alerted_day"] != str(today):  # another working day without the feed
            detail["alerted_day"] = str(today)
            return Verdict(EXPECTED_BY, "firing", str(prev.get("since")), detail,  # type: ignore[union-attr]
                           ("feed_missing", _missing(cp, today, last_received)), str(today))
        return Verdict(EXPECTED_BY, "firing", str(prev.get("since")), detail)  # type: ignore[union-attr]
    if due_today and not arrived:
        detail["alerted_day"] = str(today)
        return Verdict(EXPECTED_BY, "firing", now.isoformat(timespec="seconds"), detail,
                       ("feed_missing", _missing(cp, today, last_received)), str(today))
    since = str(prev.get("since")) if prev is not None else now.isoformat(timespec="seconds")
    return Verdict(EXPECTED_BY, "ok", since, detail)


def _missing(cp: Counterpart, day: Any, last_received: float | None) -> str:
    return (f"对接系统 {cp.name} 在 {day} {cp.watch.expect_by} 前未送来任何数据"
            f"（最后接收 {_fmt(last_received)}；来源 {', '.join(cp.sources) or '无'}）")


def _judge(cp: Counterpart, watch: str, firing: bool, now: datetime, detail: dict[str, Any],
           prev: Mapping[str, Any] | None, since_ts: float, *, fire: tuple[str, str], clear: str,
           subject: str = "") -> Verdict:
    was = prev.get("state") if prev is not None else "ok"
    state = "firing" if firing else "ok"
    if state == was and prev is not None:
        return Verdict(watch, state, str(prev.get("since")), detail)
    since = datetime.fromtimestamp(since_ts, CHINA).isoformat(timespec="seconds") if firing \
        else now.isoformat(timespec="seconds")
    if firing:
        return Verdict(watch, state, since, detail, fire, subject or since)
    if was == "firing":
        return Verdict(watch, state, since, detail, ("watchdog_cleared", clear), f"{watch}:{since}")
    return Verdict(watch, state, since, detail)


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 86400:
        return f"{seconds // 86400} 天 {seconds % 86400 // 3600} 小时"
    if seconds >= 3600:
        return f"{seconds // 3600} 小时 {seconds % 3600 // 60} 分钟"
    if seconds >= 60:
        return f"{seconds // 60} 分钟"
    return f"{seconds} 秒"
