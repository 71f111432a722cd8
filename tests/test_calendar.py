"""Specification of the working-day calendar: the 2026 State Council schedule, overrides, arithmetic."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import holidays
import pytest

from gateway.supervision.calendar import (
    SHIPPED_CALENDAR_DIR,
    CalendarError,
    WorkCalendar,
    YearSchedule,
    load_schedule_file,
)


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return WorkCalendar.default()


def days(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=i) for i in range((date(year + 1, 1, 1) - first).days)]


def test_shipped_2026_file_is_the_schedule_in_force(cal: WorkCalendar) -> None:
    assert 2026 in cal.explicit_years
    assert "cn-2026.yaml" in cal.source(2026)
    assert not cal.is_estimated(2026)


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 1, 4),  # Sun, New Year make-up
        date(2026, 2, 14),  # Sat, Spring Festival make-up
        date(2026, 2, 28),  # Sat, Spring Festival make-up
        date(2026, 5, 9),  # Sat, Labour Day make-up
        date(2026, 9, 20),  # Sun, National Day make-up
        date(2026, 10, 10),  # Sat, National Day make-up
    ],
)
def test_2026_weekend_make_up_days_are_working_days(cal: WorkCalendar, day: date) -> None:
    assert day.weekday() >= 5
    assert cal.is_workday(day)


@pytest.mark.parametrize(
    ("first", "last"),
    [
        (date(2026, 1, 1), date(2026, 1, 3)),
        (date(2026, 2, 15), date(2026, 2, 23)),
        (date(2026, 4, 4), date(2026, 4, 6)),
        (date(2026, 5, 1), date(2026, 5, 5)),
        (date(2026, 6, 19), date(2026, 6, 21)),
        (date(2026, 9, 25), date(2026, 9, 27)),
        (date(2026, 10, 1), date(2026, 10, 7)),
    ],
)
def test_2026_holiday_blocks_are_days_off(cal: WorkCalendar, first: date, last: date) -> None:
    day = first
    while day <= last:
        assert not cal.is_workday(day), day
        day += timedelta(days=1)


def test_ordinary_weekdays_and_weekends(cal: WorkCalendar) -> None:
    assert cal.is_workday(date(2026, 9, 29))  # Tue
    assert not cal.is_workday(date(2026, 10, 11))  # Sun after the make-up Saturday
    assert not cal.is_workday(date(2026, 3, 7))  # plain Saturday


def test_shipped_2026_agrees_with_the_holidays_package_day_for_day(cal: WorkCalendar) -> None:
    # The package encodes the same State Council notice; if a package upgrade ever disagrees,
    # this test says so before a deadline silently moves.
    cn = holidays.China(years=2026)
    assert [d for d in days(2026) if cal.is_workday(d) != cn.is_working_day(d)] == []
    assert (
        sum(cal.is_workday(d) for d in days(2026)) == 248
    )  # 261 weekdays − 19 weekday holidays + 6 make-up days


def test_domain_example_29_sep_plus_5_working_days_is_12_oct(cal: WorkCalendar) -> None:
    # 30 Sep, 8 Oct, 9 Oct, Sat 10 Oct (make-up), 12 Oct.
    assert cal.add_working_days(date(2026, 9, 29), 5) == date(2026, 10, 12)
    assert list(cal.working_days(date(2026, 9, 29), date(2026, 10, 12))) == [
        date(2026, 9, 30),
        date(2026, 10, 8),
        date(2026, 10, 9),
        date(2026, 10, 10),
        date(2026, 10, 12),
    ]


def test_spring_festival_2026_deadline_uses_both_make_up_saturdays(cal: WorkCalendar) -> None:
    # Accepted Thu 12 Feb: 13 Feb (Fri), 14 Feb (Sat make-up), then the holiday to 23 Feb,
    # 24, 25, 26, 27 Feb, 28 Feb (Sat make-up) → the 7th working day is Sat 28 Feb.
    assert cal.add_working_days(date(2026, 2, 12), 7) == date(2026, 2, 28)
    assert cal.add_working_days(date(2026, 2, 12), 8) == date(2026, 3, 2)


def test_start_day_is_never_counted_even_if_it_is_a_holiday(cal: WorkCalendar) -> None:
    assert cal.add_working_days(date(2026, 10, 3), 1) == date(2026, 10, 8)
    assert cal.add_working_days(date(2026, 10, 9), 1) == date(2026, 10, 10)
    assert cal.add_working_days(date(2026, 10, 9), 0) == date(2026, 10, 9)


def test_working_days_between_is_the_inverse_of_add(cal: WorkCalendar) -> None:
    start = date(2026, 1, 1)
    for offset in range(0, 400, 7):
        a = start + timedelta(days=offset)
        for n in (0, 1, 5, 20, -1, -5, -20):
            assert cal.working_days_between(a, cal.add_working_days(a, n)) == n, (a, n)
    assert cal.working_days_between(date(2026, 9, 29), date(2026, 10, 12)) == 5
    assert cal.working_days_between(date(2026, 10, 12), date(2026, 10, 12)) == 0


def test_dates_not_datetimes(cal: WorkCalendar) -> None:
    with pytest.raises(TypeError):
        cal.is_workday(datetime(2026, 10, 10, 9, 0))


def test_years_without_a_file_fall_back_to_the_holidays_package(cal: WorkCalendar) -> None:
    # 2025: official notice known to the package (Sat 11 Oct 2025 was a make-up day).
    assert "holidays" in cal.source(2025) and not cal.is_estimated(2025)
    assert cal.is_workday(date(2025, 10, 11))
    assert not cal.is_workday(date(2025, 10, 8))
    # 2027: no notice yet; the package guesses and the calendar says so.
    assert cal.is_estimated(2027)
    assert "estimated" in cal.source(2027)


def test_cross_year_make_up_day_from_the_package(cal: WorkCalendar) -> None:
    # The 2007 notice made Sat 30 Dec 2006 a working day for the 2007 New Year.
    assert cal.is_workday(date(2006, 12, 30))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_operator_override_replaces_a_whole_year(tmp_path: Path) -> None:
    # A (fictional) revised 2026 schedule: National Day moved, no make-up Saturday 10 Oct.
    override = write(
        tmp_path,
        "cn-2026-revised.yaml",
        """
year: 2026
source: 测试用修订通知
holidays:
  - 2026-10-01..2026-10-08
  - {from: 2026-02-16, to: 2026-02-20, name: 春节}
workdays:
  - 2026-09-27
""",
    )
    cal = WorkCalendar.default(override_path=override)
    assert "cn-2026-revised.yaml" in cal.source(2026)
    assert not cal.is_workday(date(2026, 10, 8))
    assert not cal.is_workday(date(2026, 10, 10))  # no longer a make-up day
    assert cal.is_workday(date(2026, 9, 27))
    # Everything the shipped file said and the override does not is gone (a replacement, not a merge).
    assert cal.is_workday(date(2026, 5, 4))
    assert not cal.is_workday(date(2026, 2, 14))
    assert cal.add_working_days(date(2026, 9, 29), 5) == date(2026, 10, 14)


def test_override_for_a_new_year_beats_the_package_guess(tmp_path: Path) -> None:
    folder = tmp_path / "calendars"
    folder.mkdir()
    write(
        folder,
        "cn-2027.yaml",
        """
year: 2027
holidays: [2027-01-01]
workdays: [2026-12-27]
""",
    )
    cal = WorkCalendar.default(override_path=folder)
    assert not cal.is_estimated(2027)
    # A make-up day in the previous December, named by the next year's schedule.
    assert date(2026, 12, 27).weekday() == 6
    assert cal.is_workday(date(2026, 12, 27))
    # The package's guessed 2027 Spring Festival is gone with the replacement.
    assert cal.is_workday(date(2027, 2, 9))


def test_several_years_in_one_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "multi.yaml",
        """
- {year: 2027, holidays: [2027-10-01]}
- {year: 2028, holidays: [2028-10-02]}
""",
    )
    schedules = load_schedule_file(path)
    assert [s.year for s in schedules] == [2027, 2028]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("year: 2026\nworkdays: [2026-10-09]\n", "星期五, already a working day"),
        ("year: 2026\nholidays: [2026-10-10]\nworkdays: [2026-10-10]\n", "both as holiday and as workday"),
        ("year: 2026\nholidays: [2028-01-01]\n", "outside the 2026 schedule"),
        ("year: 2026\nholidays: ['2026-10-07..2026-10-01']\n", "ends (2026-10-01) before it starts"),
        ("year: 2026\nholidays: ['2026-01-01..2026-03-01']\n", "longer than 31"),
        ("year: 2026\nholidays: [2026-13-01]\n", "holidays[0]"),
        ("year: 2026\nholidayz: []\n", "unknown key(s) ['holidayz']"),
        ("year: '2026'\n", "'year' must be a year"),
        ("year: 2026\nholidays: [{from: 2026-10-01}]\n", "needs both 'from' and 'to'"),
        ("year: 2026\nholidays: [2026-10-01T08:00:00]\n", "has a time of day"),
        ("year: 2026\nholidays: 2026-10-01\n", "must be a list"),
        ("year: [2026\n", "not valid YAML"),
    ],
)
def test_bad_schedule_files_are_rejected_with_file_entry_and_rule(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(CalendarError) as info:
        load_schedule_file(path)
    assert message in str(info.value)
    assert "bad.yaml" in str(info.value)


def test_missing_override_is_an_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(CalendarError, match="does not exist"):
        WorkCalendar.default(override_path=tmp_path / "nope.yaml")


def test_explicit_calendar_without_package_uses_weekends_for_unknown_years() -> None:
    cal = WorkCalendar(load_schedule_file(SHIPPED_CALENDAR_DIR / "cn-2026.yaml"), use_holidays_package=False)
    assert cal.is_workday(date(2027, 10, 1))  # a Friday; nothing known about 2027
    assert cal.is_estimated(2027)
    assert not cal.is_workday(date(2026, 10, 1))


def test_later_schedule_for_the_same_year_wins() -> None:
    first = YearSchedule(2030, frozenset({date(2030, 1, 1)}), frozenset(), source="a")
    second = YearSchedule(2030, frozenset(), frozenset(), source="b")
    cal = WorkCalendar([first, second], use_holidays_package=False)
    assert cal.source(2030) == "b"
    assert cal.is_workday(date(2030, 1, 1))
