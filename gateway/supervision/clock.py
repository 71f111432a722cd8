"""The electronic-supervision clock (电子监察计时): from a case's events, its due moment, days used and state.

Counting model, per day (all dates are China local dates, UTC+8):

* The day the clock starts (acceptance, or the day material arrives after a 补齐补正 answer) is not
  counted; a limit of N ends at the end of the N-th counting day after it (行政许可法 第八十二条).
  Counting days are working days for ``G`` limits and every day for ``Z`` limits.
* After that, a day counts when the clock is running at the end of it. A stop (挂起, 特别程序, 补正
  after acceptance) from day s to day e therefore takes the days ``[s, e)`` out of the count: the day it
  starts does not count, the day it ends does, and a stop opened and closed on the same day costs
  nothing. Any stop that starts on or before the due day moves the due day by the counting days it
  took; a stop that starts after the due day cannot rescue an overdue case. Stops may overlap.
* A special procedure with its own limit (TBCXSX) counts as ended, at the latest, on the day that
  limit runs out: it never stops the main clock for longer than its own limit.
* An extension (延长审批) does not stop the clock: it adds its days to the limit (in the limit's unit,
  or appended to the due day when its unit differs). One granted after the due day has no effect.
* A stop still open at the moment of reading is taken to last through that day, so ``due_date`` is the
  earliest the case could be due if the stop ended tomorrow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from enum import StrEnum
from typing import Any

from gateway.supervision.calendar import WorkCalendar

__all__ = [
    "CHINA_TZ",
    "ClockEvent",
    "ClockPolicy",
    "ClockReading",
    "ClockState",
    "CorrectionPolicy",
    "EventKind",
    "LimitUnit",
    "StopPeriod",
    "compute_clock",
    "end_of_day",
    "local_date",
    "to_china_time",
]

# China has kept UTC+8 without daylight saving since 1991; a fixed offset avoids needing tzdata on
# Windows hosts and gives the same ISO strings ("+08:00") as Asia/Shanghai.
CHINA_TZ = timezone(timedelta(hours=8), "CST")
_END_OF_DAY = time(23, 59, 59)


def to_china_time(moment: datetime) -> datetime:
    """``moment`` in China time; a naive datetime is taken to be China time already (as on the wire)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=CHINA_TZ)
    return moment.astimezone(CHINA_TZ)


def local_date(moment: datetime) -> date:
    """The China local calendar date of ``moment``."""
    return to_china_time(moment).date()


def end_of_day(day: date) -> datetime:
    """The last second of ``day`` in China time: the moment a limit ending on ``day`` runs out."""
    return datetime.combine(day, _END_OF_DAY, CHINA_TZ)


class LimitUnit(StrEnum):
    """Unit of a time limit, as coded on the wire (TBCXSXDW and 承诺时限单位)."""

    WORKING_DAYS = "G"  # 工作日
    NATURAL_DAYS = "Z"  # 自然日

    @classmethod
    def parse(cls, value: Any) -> LimitUnit:
        """Accept G / Z in either case and the Chinese words; anything else is a ValueError."""
        text = str(value).strip().upper() if value is not None else ""
        aliases = {
            "G": cls.WORKING_DAYS,
            "工作日": cls.WORKING_DAYS,
            "Z": cls.NATURAL_DAYS,
            "自然日": cls.NATURAL_DAYS,
        }
        if text not in aliases:
            raise ValueError(f"time-limit unit {value!r} is neither G (工作日) nor Z (自然日)")
        return aliases[text]

    @property
    def label(self) -> str:
        return "工作日" if self is LimitUnit.WORKING_DAYS else "自然日"


class CorrectionPolicy(StrEnum):
    """What a correction (补正) after acceptance does to the clock once the material arrives."""

    # The clock stops at the notice and resumes at receipt with the days already used kept: the
    # common practice of provincial electronic-supervision systems, and the default.
    RESUME = "resume"
    # The count starts again from zero at receipt, as if the case were accepted that day: some local
    # rules read 行政许可法 第三十二条 this way for corrections during review.
    RESTART = "restart"


class ClockState(StrEnum):
    """Where a case's clock stands at the moment of reading."""

    NOT_STARTED = "not_started"  # no acceptance yet, refused, or accepted pending 补齐补正
    RUNNING = "running"
    STOPPED = "stopped"  # a suspension, special procedure or correction is open
    COMPLETED_ON_TIME = "completed_on_time"
    COMPLETED_LATE = "completed_late"
    OVERDUE = "overdue"  # past due and not completed (stops opened after the due day do not help)


class EventKind(StrEnum):
    ACCEPTED = "accepted"  # the clock starts here; carries limit and unit
    # Acceptance answered 补齐补正 (SLZTDM 3): the case counts as accepted when the material arrives,
    # so the clock starts at the next CORRECTION_RECEIVED; carries limit and unit.
    AWAITING_CORRECTION = "awaiting_correction"
    SUSPENDED = "suspended"  # 挂起
    RESUMED = "resumed"  # 恢复 / 解挂: closes the latest open suspension
    SPECIAL_STARTED = "special_started"  # 特别程序; carries its own limit and unit and a ref
    SPECIAL_ENDED = "special_ended"  # closes the special procedure with the same ref (else the latest)
    EXTENDED = "extended"  # 延长审批: limit and unit are the extra days; the clock keeps running
    CORRECTION_NOTIFIED = "correction_notified"  # 补正告知
    CORRECTION_RECEIVED = "correction_received"  # 补正材料收到
    COMPLETED = "completed"  # 办结


@dataclass(frozen=True)
class ClockEvent:
    """One thing that happened to a case, as far as the clock is concerned."""

    kind: EventKind
    at: datetime
    limit: int | None = None
    unit: LimitUnit | None = None
    ref: str | None = None


@dataclass(frozen=True)
class ClockPolicy:
    """Counting choices an operator may change."""

    correction_after_acceptance: CorrectionPolicy = CorrectionPolicy.RESUME
    # 民法典 第二百零三条 moves a period whose last day is a holiday to the next working day; 行政许可法
    # is silent for natural-day limits, so by default a Z limit may end on a day off.
    natural_due_rolls_to_workday: bool = False


@dataclass(frozen=True)
class StopPeriod:
    """A stretch during which the clock did not count."""

    reason: str  # "suspension" | "special_procedure" | "correction"
    started_at: datetime
    ended_at: datetime | None  # None: still open at the reading (or cut short only by its own limit)
    ref: str | None
    own_limit: int | None  # a special procedure's TBCXSX
    own_unit: LimitUnit | None
    own_due_date: date | None  # last day of the special procedure's own limit
    past_own_limit: bool  # still open after its own limit ran out: the main clock runs again
    days: int  # counting days of the case's unit taken out of the count, up to the reading

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "ref": self.ref,
            "own_limit": self.own_limit,
            "own_unit": self.own_unit.value if self.own_unit else None,
            "own_due_date": self.own_due_date.isoformat() if self.own_due_date else None,
            "past_own_limit": self.past_own_limit,
            "days": self.days,
        }


@dataclass(frozen=True)
class ClockReading:
    """The clock of one case at ``as_of``."""

    as_of: datetime
    state: ClockState
    started_at: datetime | None
    limit: int | None
    unit: LimitUnit | None
    due_date: date | None
    days_used: int
    # Counting days from the reading (or completion) to the due day; negative once past it.
    days_left: int | None
    days_stopped: int
    completed_at: datetime | None
    extended_by: int = 0  # extension days granted in the limit's unit
    stops: tuple[StopPeriod, ...] = ()

    @property
    def due_at(self) -> datetime | None:
        """End of the due day, China time."""
        return end_of_day(self.due_date) if self.due_date else None

    @property
    def share_used(self) -> float | None:
        """Share of the (extended) limit used, 0.0 – 1.0 and beyond; a zero limit (即办件) is used at once."""
        if self.days_left is None:
            return None
        total = self.days_used + self.days_left
        return 1.0 if total <= 0 else self.days_used / total

    @property
    def completed(self) -> bool:
        return self.state in (ClockState.COMPLETED_ON_TIME, ClockState.COMPLETED_LATE)

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "state": self.state.value,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "limit": self.limit,
            "unit": self.unit.value if self.unit else None,
            "due_date": self.due_date.isoformat() if self.due_date else None,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "days_used": self.days_used,
            "days_left": self.days_left,
            "days_stopped": self.days_stopped,
            "extended_by": self.extended_by,
            "share_used": self.share_used,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "stops": [stop.to_dict() for stop in self.stops],
        }


@dataclass
class _OpenStop:
    reason: str
    started_at: datetime
    ended_at: datetime | None = None
    ref: str | None = None
    own_limit: int | None = None
    own_unit: LimitUnit | None = None


def _days(after: date, until: date) -> Iterable[date]:
    """Dates d with ``after < d <= until``."""
    day = after + timedelta(days=1)
    while day <= until:
        yield day
        day += timedelta(days=1)


def _add_days(calendar: WorkCalendar, start: date, n: int, unit: LimitUnit) -> date:
    if unit is LimitUnit.WORKING_DAYS:
        return calendar.add_working_days(start, n)
    return start + timedelta(days=n)


def _collect(events: Iterable[ClockEvent], as_of: datetime, policy: ClockPolicy) -> dict[str, Any]:
    """Walk the events up to ``as_of`` and return the start, limit, stops and completion."""
    start: datetime | None = None
    limit: int | None = None
    unit: LimitUnit | None = None
    awaiting = False
    completed_at: datetime | None = None
    stops: list[_OpenStop] = []
    extensions: list[ClockEvent] = []
    # Python's sort is stable, so events at the same moment keep the order the caller gave.
    ordered = sorted((e for e in events if to_china_time(e.at) <= as_of), key=lambda e: to_china_time(e.at))

    def latest_open(reason: str, ref: str | None = None) -> _OpenStop | None:
        for stop in reversed(stops):
            if stop.reason == reason and stop.ended_at is None and (ref is None or stop.ref == ref):
                return stop
        return None

    for event in ordered:
        at = to_china_time(event.at)
        kind = event.kind
        if kind is EventKind.ACCEPTED:
            if start is None:
                start, limit, unit, awaiting = at, event.limit, event.unit, False
        elif kind is EventKind.AWAITING_CORRECTION:
            if start is None:
                awaiting, limit, unit = True, event.limit, event.unit
        elif kind is EventKind.CORRECTION_NOTIFIED:
            if start is None:
                # A notice before acceptance: the case is accepted when the material arrives.
                awaiting = True
            elif latest_open("correction") is None:
                stops.append(_OpenStop("correction", at))
        elif kind is EventKind.CORRECTION_RECEIVED:
            if start is None:
                # Without a limit there is nothing to start; the acceptance record will carry both.
                if awaiting and limit is not None:
                    start, awaiting = at, False
            elif (open_correction := latest_open("correction")) is not None:
                open_correction.ended_at = at
                if policy.correction_after_acceptance is CorrectionPolicy.RESTART:
                    start = at
        elif kind is EventKind.SUSPENDED:
            stops.append(_OpenStop("suspension", at))
        elif kind is EventKind.RESUMED:
            if (open_suspension := latest_open("suspension")) is not None:
                open_suspension.ended_at = at
        elif kind is EventKind.SPECIAL_STARTED:
            if event.ref is None or latest_open("special_procedure", event.ref) is None:
                stops.append(_OpenStop("special_procedure", at, None, event.ref, event.limit, event.unit))
        elif kind is EventKind.SPECIAL_ENDED:
            special = latest_open("special_procedure", event.ref) if event.ref else None
            special = special or latest_open("special_procedure")
            if special is not None:
                special.ended_at = at
        elif kind is EventKind.EXTENDED:
            if event.limit:
                extensions.append(replace(event, at=at))
        elif kind is EventKind.COMPLETED:
            if completed_at is None:
                completed_at = at
    return {
        "start": start,
        "limit": limit,
        "unit": unit,
        "completed_at": completed_at,
        "stops": stops,
        "extensions": extensions,
    }


def compute_clock(
    events: Iterable[ClockEvent],
    calendar: WorkCalendar,
    as_of: datetime,
    policy: ClockPolicy | None = None,
) -> ClockReading:
    """Read the clock of one case at ``as_of`` from its events (events after ``as_of`` are ignored).

    Only the first ACCEPTED and the first COMPLETED count; feed the current version of each record.
    """
    policy = policy or ClockPolicy()
    as_of = to_china_time(as_of)
    found = _collect(events, as_of, policy)
    start: datetime | None = found["start"]
    limit: int | None = found["limit"]
    unit: LimitUnit = found["unit"] or LimitUnit.WORKING_DAYS
    completed_at: datetime | None = found["completed_at"]
    if start is None:
        return ClockReading(
            as_of=as_of,
            state=ClockState.NOT_STARTED,
            started_at=None,
            limit=limit,
            unit=found["unit"],
            due_date=None,
            days_used=0,
            days_left=None,
            days_stopped=0,
            completed_at=completed_at,
        )

    start_day = start.date()
    # Counting ends at completion, or at the reading for a case still open.
    end_day = completed_at.date() if completed_at else as_of.date()
    one = timedelta(days=1)

    def counts(day: date) -> bool:
        return unit is LimitUnit.NATURAL_DAYS or calendar.is_workday(day)

    # Each stop becomes a half-open day interval [lo, hi): an open one lasts through the end of
    # counting, and a special procedure ends at the latest on the last day of its own limit.
    intervals: list[tuple[date, date]] = []
    active = False
    periods: list[StopPeriod] = []
    for stop in found["stops"]:
        lo = stop.started_at.date()
        if stop.ended_at is not None:
            hi = stop.ended_at.date()
        elif completed_at is not None:
            hi = end_day
        else:
            hi = end_day + one
        own_due = None
        if stop.own_limit is not None:
            own_due = _add_days(calendar, lo, stop.own_limit, stop.own_unit or LimitUnit.WORKING_DAYS)
            hi = min(hi, own_due)
        if stop.ended_at is None and completed_at is None and hi > end_day:
            active = True
        if hi > lo:
            intervals.append((lo, hi))
        taken, day = 0, max(lo, start_day + one)
        while day < hi and day <= end_day:
            taken += counts(day)
            day += one
        periods.append(
            StopPeriod(
                reason=stop.reason,
                started_at=stop.started_at,
                ended_at=stop.ended_at,
                ref=stop.ref,
                own_limit=stop.own_limit,
                own_unit=stop.own_unit,
                own_due_date=own_due,
                past_own_limit=stop.ended_at is None and own_due is not None and end_day > own_due,
                days=taken,
            )
        )

    def stopped(day: date) -> bool:
        return any(lo <= day < hi for lo, hi in intervals)

    def walk(n: int) -> date:
        day, counted = start_day, 0
        while counted < n:
            day += one
            if counts(day) and not stopped(day):
                counted += 1
        return day

    due_date: date | None = None
    extended_by = 0
    if limit is not None:
        due_date = walk(limit)
        appended: list[ClockEvent] = []
        for extension in found["extensions"]:
            # An extension has to be granted while the limit is still running.
            current = due_date
            for other in appended:
                current = _add_days(calendar, current, other.limit or 0, other.unit or unit)
            if extension.at.date() > current:
                continue
            if (extension.unit or unit) is unit:
                extended_by += extension.limit or 0
                due_date = walk(limit + extended_by)
            else:
                appended.append(extension)
        for other in appended:
            due_date = _add_days(calendar, due_date, other.limit or 0, other.unit or unit)
        if unit is LimitUnit.NATURAL_DAYS and policy.natural_due_rolls_to_workday:
            while not calendar.is_workday(due_date):
                due_date += one

    days_used = days_stopped = 0
    day = start_day + one
    while day <= end_day:
        if counts(day):
            if stopped(day):
                days_stopped += 1
            else:
                days_used += 1
        day += one

    days_left: int | None = None
    if due_date is not None:
        if due_date >= end_day:
            days_left = sum(1 for d in _days(end_day, due_date) if counts(d) and not stopped(d))
        else:
            days_left = -sum(1 for d in _days(due_date, end_day) if counts(d) and not stopped(d))

    if completed_at is not None:
        late = due_date is not None and completed_at.date() > due_date
        state = ClockState.COMPLETED_LATE if late else ClockState.COMPLETED_ON_TIME
    elif due_date is not None and as_of.date() > due_date:
        state = ClockState.OVERDUE
    elif active:
        state = ClockState.STOPPED
    else:
        state = ClockState.RUNNING
    return ClockReading(
        as_of=as_of,
        state=state,
        started_at=start,
        limit=limit,
        unit=unit,
        due_date=due_date,
        days_used=days_used,
        days_left=days_left,
        days_stopped=days_stopped,
        completed_at=completed_at,
        extended_by=extended_by,
        stops=tuple(periods),
    )
