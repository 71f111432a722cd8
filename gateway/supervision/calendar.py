"""Working-day calendar for mainland China: statutory holidays and weekend make-up working days (调休).

Schedules come from YAML files (shipped ones under ``calendars/`` and operator overrides) and, for years
that no file covers, from the ``holidays`` package's China calendar.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CalendarError",
    "SHIPPED_CALENDAR_DIR",
    "WorkCalendar",
    "YearSchedule",
    "load_schedule_file",
    "parse_schedule",
]

SHIPPED_CALENDAR_DIR = Path(__file__).parent / "calendars"

# A schedule may reach into the neighbouring years: the 2007 notice, for example, made Sat 30 and
# Sun 31 Dec 2006 working days for the 2007 New Year. One month either side covers every notice so far.
_SPILL = timedelta(days=31)
# Longest holiday block ever granted is 10 days (Spring Festival 2020); 31 catches a mistyped range.
_MAX_RANGE_DAYS = 31
_RANGE_RE = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})\s*(?:\.\.|/|~)\s*(\d{4}-\d{2}-\d{2})\s*$")
_ALLOWED_KEYS = {"year", "source", "holidays", "workdays"}
_WEEKDAY_ZH = "一二三四五六日"


class _DatesAsText(yaml.SafeLoader):
    """SafeLoader that leaves dates as text, so an impossible date gets our message, not a traceback."""


_DatesAsText.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class CalendarError(ValueError):
    """A schedule file or calendar request is invalid; the message names the file, entry and rule."""


@dataclass(frozen=True)
class YearSchedule:
    """The State Council schedule for one year: days off and weekend days that are working days."""

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]
    source: str
    # True when the dates are a guess (the holidays package extrapolating a year with no notice yet).
    estimated: bool = False

    def __post_init__(self) -> None:
        both = self.holidays & self.workdays
        if both:
            listed = ", ".join(d.isoformat() for d in sorted(both))
            raise CalendarError(f"{self.source}: {listed} listed both as holiday and as workday")


def _as_date(value: Any, origin: str, where: str) -> date:
    if isinstance(value, datetime):
        raise CalendarError(f"{origin}: {where}: {value!r} has a time of day; write a date like 2026-10-01")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 10 and text[10:11] in ("T", " "):
            raise CalendarError(
                f"{origin}: {where}: {value!r} has a time of day; write a date like 2026-10-01"
            )
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise CalendarError(f"{origin}: {where}: {value!r} is not a date; write YYYY-MM-DD")


def _expand(entry: Any, origin: str, where: str) -> list[date]:
    """One list entry → its dates: a date, 'A..B', or a mapping {date} / {from, to} with an optional name."""
    if isinstance(entry, dict):
        unknown = set(entry) - {"date", "from", "to", "name"}
        if unknown:
            raise CalendarError(
                f"{origin}: {where}: unknown key(s) {sorted(unknown)}; use date, from, to, name"
            )
        if "date" in entry:
            if "from" in entry or "to" in entry:
                raise CalendarError(f"{origin}: {where}: give either 'date' or 'from'/'to', not both")
            return [_as_date(entry["date"], origin, where)]
        if "from" not in entry or "to" not in entry:
            raise CalendarError(f"{origin}: {where}: a range needs both 'from' and 'to'")
        first = _as_date(entry["from"], origin, where)
        last = _as_date(entry["to"], origin, where)
    elif isinstance(entry, str) and (match := _RANGE_RE.match(entry)):
        first = _as_date(match.group(1), origin, where)
        last = _as_date(match.group(2), origin, where)
    else:
        return [_as_date(entry, origin, where)]
    if last < first:
        raise CalendarError(f"{origin}: {where}: range ends ({last}) before it starts ({first})")
    span = (last - first).days + 1
    if span > _MAX_RANGE_DAYS:
        raise CalendarError(
            f"{origin}: {where}: range of {span} days is longer than {_MAX_RANGE_DAYS}; check the dates"
        )
    return [first + timedelta(days=i) for i in range(span)]


def parse_schedule(doc: Any, origin: str) -> YearSchedule:
    """Validate one parsed YAML mapping ``{year, holidays, workdays, source?}`` into a YearSchedule.

    ``origin`` names the file (or other place) in error messages.
    """
    if not isinstance(doc, dict):
        raise CalendarError(
            f"{origin}: expected a mapping with year, holidays, workdays; got {type(doc).__name__}"
        )
    unknown = set(doc) - _ALLOWED_KEYS
    if unknown:
        raise CalendarError(f"{origin}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_ALLOWED_KEYS)}")
    year = doc.get("year")
    if not isinstance(year, int) or isinstance(year, bool) or not 1950 <= year <= 2200:
        raise CalendarError(f"{origin}: 'year' must be a year such as 2026, got {year!r}")
    lo, hi = date(year, 1, 1) - _SPILL, date(year, 12, 31) + _SPILL
    sets: dict[str, set[date]] = {}
    for key in ("holidays", "workdays"):
        entries = doc.get(key)
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise CalendarError(f"{origin}: '{key}' must be a list of dates or ranges")
        found: set[date] = set()
        for index, entry in enumerate(entries):
            where = f"{key}[{index}]"
            for day in _expand(entry, origin, where):
                if not lo <= day <= hi:
                    raise CalendarError(
                        f"{origin}: {where}: {day} is outside the {year} schedule "
                        f"(allowed {lo} to {hi}); put it in that year's file"
                    )
                if key == "workdays" and day.weekday() < 5:
                    raise CalendarError(
                        f"{origin}: {where}: {day} is a 星期{_WEEKDAY_ZH[day.weekday()]}, already a working "
                        "day; 'workdays' lists only weekend make-up working days (调休上班)"
                    )
                found.add(day)
        sets[key] = found
    source = doc.get("source")
    label = f"{origin}" if not source else f"{origin} ({source})"
    return YearSchedule(
        year=year,
        holidays=frozenset(sets["holidays"]),
        workdays=frozenset(sets["workdays"]),
        source=label,
    )


def load_schedule_file(path: str | Path) -> list[YearSchedule]:
    """Read a schedule file: one mapping, or a list of mappings for several years."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalendarError(f"{path}: cannot read calendar file: {exc.strerror or exc}") from exc
    try:
        doc = yaml.load(text, Loader=_DatesAsText)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise CalendarError(f"{path}: not valid YAML: {exc}") from exc
    docs = doc if isinstance(doc, list) else [doc]
    schedules = [
        parse_schedule(item, f"{path}" if len(docs) == 1 else f"{path}[{i}]") for i, item in enumerate(docs)
    ]
    years = [s.year for s in schedules]
    if len(set(years)) != len(years):
        raise CalendarError(f"{path}: a year appears more than once: {sorted(years)}")
    return schedules


def _schedule_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not path.exists():
        raise CalendarError(f"{path}: calendar override file or directory does not exist")
    return [path]


def _package_schedule(year: int) -> YearSchedule:
    """The holidays package's view of ``year``: official for years with a notice, a guess otherwise."""
    # Imported here, not with the module: it loads every country's calendar (about 9 MB and 300
    # modules), which a process that only ingests (the store imports the alert types) never needs.
    import holidays
    from holidays.countries.china import ChinaStaticHolidays

    cn = holidays.China(years=year)
    # The package records each year's 调休 as "substituted" days; a year without any has no notice yet,
    # and its "observed" days are the package's own extrapolation.
    known = year in ChinaStaticHolidays.special_public_holidays
    version = getattr(holidays, "__version__", "?")
    return YearSchedule(
        year=year,
        holidays=frozenset(d for d in cn if d.year == year),
        workdays=frozenset(d for d in cn.weekend_workdays if d.year == year),
        source=f"holidays {version} China calendar"
        + ("" if known else " (estimated: no State Council notice)"),
        estimated=not known,
    )


class WorkCalendar:
    """Which days are working days, and arithmetic over them.

    ``schedules`` are explicit year schedules; a later one for the same year replaces an earlier one.
    Years with no explicit schedule fall back to the ``holidays`` package when ``use_holidays_package``.
    """

    def __init__(self, schedules: Iterable[YearSchedule] = (), *, use_holidays_package: bool = True) -> None:
        self._explicit: dict[int, YearSchedule] = {}
        for schedule in schedules:
            self._explicit[schedule.year] = schedule
        self.use_holidays_package = use_holidays_package
        self._package: dict[int, YearSchedule] = {}

    def __repr__(self) -> str:
        return f"WorkCalendar(explicit years={sorted(self._explicit)}, holidays package={self.use_holidays_package})"

    @property
    def explicit_years(self) -> list[int]:
        """Years whose schedule comes from a file rather than from the holidays package."""
        return sorted(self._explicit)

    @classmethod
    def default(cls, override_path: str | Path | Iterable[str | Path] | None = None) -> WorkCalendar:
        """Shipped schedules (``calendars/*.yaml``), then operator overrides, then the holidays package.

        ``override_path`` is a YAML file, a directory of them, or several of either; a year found there
        replaces the shipped schedule for that year entirely.
        """
        schedules: list[YearSchedule] = []
        for path in _schedule_files(SHIPPED_CALENDAR_DIR):
            schedules.extend(load_schedule_file(path))
        if override_path is not None:
            paths = [override_path] if isinstance(override_path, str | Path) else list(override_path)
            for each in paths:
                for path in _schedule_files(Path(each)):
                    schedules.extend(load_schedule_file(path))
        return cls(schedules)

    def schedule(self, year: int) -> YearSchedule:
        """The schedule in force for ``year``."""
        if year in self._explicit:
            return self._explicit[year]
        if not self.use_holidays_package:
            # Weekends only: an explicit calendar with no file for this year has nothing else to go on.
            return YearSchedule(
                year, frozenset(), frozenset(), source="weekends only (no schedule)", estimated=True
            )
        if year not in self._package:
            self._package[year] = _package_schedule(year)
        return self._package[year]

    def source(self, year: int) -> str:
        """Where the schedule for ``year`` comes from, for reports and the supervisor console."""
        return self.schedule(year).source

    def is_estimated(self, year: int) -> bool:
        """True when ``year`` has no published schedule loaded: deadlines in it may move."""
        return self.schedule(year).estimated

    def is_workday(self, day: date) -> bool:
        """True if ``day`` is a working day on the State Council schedule (调休 included)."""
        if isinstance(day, datetime):
            raise TypeError("is_workday takes a date; convert the datetime to its China local date first")
        # The schedule of the day's own year decides, except that a neighbouring year's published
        # schedule may name it (New Year make-up days fall in the previous December) and beats a guess.
        verdict: bool | None = None
        verdict_estimated = True
        for year in (day.year, day.year - 1, day.year + 1):
            if year != day.year and not (date(year, 1, 1) - _SPILL <= day <= date(year, 12, 31) + _SPILL):
                continue
            schedule = self.schedule(year)
            if day in schedule.holidays:
                said = False
            elif day in schedule.workdays:
                said = True
            else:
                continue
            if verdict is None or (verdict_estimated and not schedule.estimated):
                verdict, verdict_estimated = said, schedule.estimated
        if verdict is not None:
            return verdict
        return day.weekday() < 5

    def working_days(self, after: date, until: date) -> Iterator[date]:
        """Working days d with ``after < d <= until``."""
        day = after + timedelta(days=1)
        while day <= until:
            if self.is_workday(day):
                yield day
            day += timedelta(days=1)

    def add_working_days(self, start: date, n: int) -> date:
        """The ``n``-th working day after ``start`` (the start day itself is never counted).

        ``n == 0`` returns ``start``; a negative ``n`` counts backwards.
        """
        if isinstance(start, datetime):
            raise TypeError(
                "add_working_days takes a date; convert the datetime to its China local date first"
            )
        step = timedelta(days=1 if n >= 0 else -1)
        day, left = start, abs(n)
        while left:
            day += step
            if self.is_workday(day):
                left -= 1
        return day

    def working_days_between(self, a: date, b: date) -> int:
        """Working days in ``(a, b]``: how many working days after ``a`` up to and including ``b``.

        Negative when ``b < a``, so that ``working_days_between(a, add_working_days(a, n)) == n``.
        """
        if b < a:
            # Mirror image of the forward count: working days in [b, a), so that stepping back n
            # working days from a and counting again gives -n whatever weekday a is.
            one = timedelta(days=1)
            return -sum(1 for _ in self.working_days(b - one, a - one))
        return sum(1 for _ in self.working_days(a, b))
