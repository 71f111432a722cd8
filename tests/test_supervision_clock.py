"""Specification of the supervision clock: due days, stops, corrections and states on the 2026 calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from gateway.supervision.calendar import WorkCalendar
from gateway.supervision.clock import (
    ClockEvent,
    ClockPolicy,
    ClockState,
    CorrectionPolicy,
    EventKind,
    LimitUnit,
    compute_clock,
    end_of_day,
)

G, Z = LimitUnit.WORKING_DAYS, LimitUnit.NATURAL_DAYS


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return WorkCalendar.default()


def t(text: str) -> datetime:
    return datetime.fromisoformat(text + "+08:00")


def accepted(at: str, limit: int | None, unit: LimitUnit = G) -> ClockEvent:
    return ClockEvent(EventKind.ACCEPTED, t(at), limit, unit)


def ev(kind: EventKind, at: str, **kw: object) -> ClockEvent:
    return ClockEvent(kind, t(at), **kw)  # type: ignore[arg-type]


def test_domain_example_29_sep_5_working_days_due_end_of_12_oct(cal: WorkCalendar) -> None:
    events = [accepted("2026-09-29T10:00:00", 5)]
    reading = compute_clock(events, cal, t("2026-09-29T16:00:00"))
    assert reading.state is ClockState.RUNNING
    assert reading.due_date == date(2026, 10, 12)
    assert reading.due_at == datetime.fromisoformat("2026-10-12T23:59:59+08:00")
    assert (reading.days_used, reading.days_left) == (0, 5)
    # Through the National Day week nothing is used; the make-up Saturday counts.
    assert compute_clock(events, cal, t("2026-10-07T12:00:00")).days_used == 1
    assert compute_clock(events, cal, t("2026-10-10T12:00:00")).days_used == 4
    last_day = compute_clock(events, cal, t("2026-10-12T23:59:00"))
    assert (last_day.state, last_day.days_left) == (ClockState.RUNNING, 0)
    late = compute_clock(events, cal, t("2026-10-13T00:00:01"))
    assert (late.state, late.days_left) == (ClockState.OVERDUE, -1)


def test_spring_festival_2026_with_both_make_up_saturdays(cal: WorkCalendar) -> None:
    # 13 Feb, Sat 14 Feb, (15–23 off), 24, 25, 26, 27, Sat 28 Feb, 2 Mar, 3 Mar, 4 Mar.
    reading = compute_clock([accepted("2026-02-12T15:00:00", 10)], cal, t("2026-02-20T09:00:00"))
    assert reading.due_date == date(2026, 3, 4)
    assert reading.days_used == 2


def test_natural_day_limit_counts_calendar_days_through_holidays(cal: WorkCalendar) -> None:
    reading = compute_clock([accepted("2026-09-29T10:00:00", 10, Z)], cal, t("2026-10-05T10:00:00"))
    assert reading.unit is Z
    assert reading.due_date == date(2026, 10, 9)
    assert reading.days_used == 6


def test_natural_day_limit_ending_in_a_holiday_can_roll_to_the_next_working_day(cal: WorkCalendar) -> None:
    events = [accepted("2026-09-21T10:00:00", 10, Z)]
    assert compute_clock(events, cal, t("2026-09-22T00:00:00")).due_date == date(2026, 10, 1)
    rolled = compute_clock(
        events, cal, t("2026-09-22T00:00:00"), ClockPolicy(natural_due_rolls_to_workday=True)
    )
    assert rolled.due_date == date(2026, 10, 8)


def test_suspension_in_the_middle_moves_the_due_day_by_the_working_days_stopped(cal: WorkCalendar) -> None:
    events = [
        accepted("2026-09-29T10:00:00", 5),
        ev(EventKind.SUSPENDED, "2026-10-09T09:00:00"),
        ev(EventKind.RESUMED, "2026-10-13T09:00:00"),
    ]
    # While suspended (a Sunday): stopped, due projected as if it resumed the next day.
    during = compute_clock(events, cal, t("2026-10-11T10:00:00"))
    assert during.state is ClockState.STOPPED
    assert (during.days_used, during.days_stopped) == (2, 2)
    assert during.due_date == date(2026, 10, 14)
    # Stopped 9, Sat 10 and 12 Oct (three working days): due 12 → 15 Oct.
    after = compute_clock(events, cal, t("2026-10-13T10:00:00"))
    assert after.state is ClockState.RUNNING
    assert after.due_date == date(2026, 10, 15)
    assert after.days_stopped == 3
    assert [s.days for s in after.stops] == [3]


def test_suspension_within_one_day_costs_nothing(cal: WorkCalendar) -> None:
    events = [
        accepted("2026-09-29T10:00:00", 5),
        ev(EventKind.SUSPENDED, "2026-10-08T09:00:00"),
        ev(EventKind.RESUMED, "2026-10-08T17:00:00"),
    ]
    assert compute_clock(events, cal, t("2026-10-09T10:00:00")).due_date == date(2026, 10, 12)


def test_suspension_on_the_due_day_extends_but_one_after_it_does_not_rescue(cal: WorkCalendar) -> None:
    on_due = [
        accepted("2026-09-29T10:00:00", 5),
        ev(EventKind.SUSPENDED, "2026-10-12T15:00:00"),
        ev(EventKind.RESUMED, "2026-10-14T09:00:00"),
    ]
    assert compute_clock(on_due, cal, t("2026-10-14T10:00:00")).due_date == date(2026, 10, 14)
    too_late = [
        accepted("2026-09-29T10:00:00", 5),
        ev(EventKind.SUSPENDED, "2026-10-13T09:00:00"),
    ]
    reading = compute_clock(too_late, cal, t("2026-10-14T10:00:00"))
    assert reading.due_date == date(2026, 10, 12)
    assert reading.state is ClockState.OVERDUE


def test_special_procedure_stops_the_clock_for_its_recorded_span(cal: WorkCalendar) -> None:
    events = [
        accepted("2026-09-01T10:00:00", 20),
        ev(EventKind.SPECIAL_STARTED, "2026-09-10T10:00:00", limit=30, unit=Z, ref="B-1"),
        ev(EventKind.SPECIAL_ENDED, "2026-09-17T10:00:00", ref="B-1"),
    ]
    plain = compute_clock(events[:1], cal, t("2026-09-02T00:00:00")).due_date
    # 10, 11, 14, 15, 16 Sep: five working days stopped; 29 Sep + 5 → 30 Sep, 8, 9, Sat 10, 12 Oct.
    reading = compute_clock(events, cal, t("2026-09-18T00:00:00"))
    assert plain == date(2026, 9, 29)
    assert reading.due_date == cal.add_working_days(plain, 5) == date(2026, 10, 12)


def test_special_procedure_never_stops_longer_than_its_own_limit(cal: WorkCalendar) -> None:
    events = [
        accepted("2026-09-01T10:00:00", 20),
        # An extension (延长) of 10 working days, never closed.
        ev(EventKind.SPECIAL_STARTED, "2026-09-14T10:00:00", limit=10, unit=G, ref="A-1"),
    ]
    inside = compute_clock(events, cal, t("2026-09-20T10:00:00"))
    assert inside.state is ClockState.STOPPED
    assert inside.stops[0].own_due_date == date(2026, 9, 28)
    past = compute_clock(events, cal, t("2026-10-12T10:00:00"))
    assert past.state is ClockState.RUNNING
    assert past.stops[0].past_own_limit
    assert past.stops[0].days == 10
    # 29 Sep plus exactly the ten working days of the extension (14 Sep – 25 Sep with Sun 20 Sep).
    assert past.due_date == cal.add_working_days(date(2026, 9, 29), 10) == date(2026, 10, 19)


def correction_events() -> list[ClockEvent]:
    return [
        accepted("2026-09-01T10:00:00", 10),
        ev(EventKind.CORRECTION_NOTIFIED, "2026-09-04T10:00:00"),
        ev(EventKind.CORRECTION_RECEIVED, "2026-09-09T10:00:00"),
    ]


def test_correction_after_acceptance_stops_and_resumes_by_default(cal: WorkCalendar) -> None:
    waiting = compute_clock(correction_events()[:2], cal, t("2026-09-07T10:00:00"))
    assert waiting.state is ClockState.STOPPED
    reading = compute_clock(correction_events(), cal, t("2026-09-09T12:00:00"))
    # Used 2, 3 Sep; stopped 4, 7, 8 Sep; then 9 Sep onward: 8 more → 18 Sep.
    assert reading.days_used == 3
    assert reading.due_date == date(2026, 9, 18)


def test_correction_can_restart_the_count_from_receipt(cal: WorkCalendar) -> None:
    policy = ClockPolicy(correction_after_acceptance=CorrectionPolicy.RESTART)
    reading = compute_clock(correction_events(), cal, t("2026-09-09T12:00:00"), policy)
    assert reading.started_at == t("2026-09-09T10:00:00")
    assert reading.days_used == 0
    # 10, 11, 14–18, Sun 20 (make-up), 21, 22 Sep.
    assert reading.due_date == cal.add_working_days(date(2026, 9, 9), 10) == date(2026, 9, 22)


def test_acceptance_pending_correction_starts_when_material_arrives(cal: WorkCalendar) -> None:
    events = [
        ClockEvent(EventKind.AWAITING_CORRECTION, t("2026-09-25T10:00:00"), 5, G),
        ev(EventKind.CORRECTION_RECEIVED, "2026-09-29T10:00:00"),
    ]
    before = compute_clock(events, cal, t("2026-09-28T10:00:00"))
    assert before.state is ClockState.NOT_STARTED and before.due_date is None
    after = compute_clock(events, cal, t("2026-09-30T10:00:00"))
    assert after.started_at == t("2026-09-29T10:00:00")
    assert after.due_date == date(2026, 10, 12)


def test_notice_before_acceptance_leaves_the_acceptance_time_as_start(cal: WorkCalendar) -> None:
    events = [
        ev(EventKind.CORRECTION_NOTIFIED, "2026-09-20T10:00:00"),
        ev(EventKind.CORRECTION_RECEIVED, "2026-09-28T10:00:00"),
        accepted("2026-09-29T10:00:00", 5),
    ]
    reading = compute_clock(events, cal, t("2026-09-30T10:00:00"))
    assert reading.stops == ()
    assert reading.due_date == date(2026, 10, 12)


def test_completion_on_time_and_late(cal: WorkCalendar) -> None:
    base = [accepted("2026-09-29T10:00:00", 5)]
    on_time = compute_clock(
        [*base, ev(EventKind.COMPLETED, "2026-10-12T18:00:00")], cal, t("2026-11-01T00:00:00")
    )
    assert on_time.state is ClockState.COMPLETED_ON_TIME
    assert on_time.days_used == 5
    late = compute_clock(
        [*base, ev(EventKind.COMPLETED, "2026-10-13T08:30:00")], cal, t("2026-11-01T00:00:00")
    )
    assert late.state is ClockState.COMPLETED_LATE
    assert late.days_left == -1


def test_events_after_the_reading_are_ignored(cal: WorkCalendar) -> None:
    events = [accepted("2026-09-29T10:00:00", 5), ev(EventKind.COMPLETED, "2026-10-09T10:00:00")]
    assert compute_clock(events, cal, t("2026-10-08T10:00:00")).state is ClockState.RUNNING
    assert compute_clock(events, cal, t("2026-09-28T10:00:00")).state is ClockState.NOT_STARTED


def test_times_in_other_zones_are_read_in_china_time(cal: WorkCalendar) -> None:
    # 17:30 UTC on 29 Sep is 01:30 on 30 Sep in China: the clock starts on the 30th.
    utc = ClockEvent(EventKind.ACCEPTED, datetime(2026, 9, 29, 17, 30, tzinfo=UTC), 5, G)
    assert compute_clock([utc], cal, t("2026-10-01T00:00:00")).due_date == date(2026, 10, 13)
    naive = ClockEvent(EventKind.ACCEPTED, datetime(2026, 9, 29, 10, 0), 5, G)
    assert compute_clock([naive], cal, datetime(2026, 10, 1)).due_date == date(2026, 10, 12)


def test_zero_limit_is_due_the_same_day(cal: WorkCalendar) -> None:
    reading = compute_clock([accepted("2026-09-29T10:00:00", 0)], cal, t("2026-09-29T11:00:00"))
    assert reading.due_date == date(2026, 9, 29)
    assert reading.share_used == 1.0


def test_acceptance_without_a_limit_has_no_due(cal: WorkCalendar) -> None:
    reading = compute_clock([accepted("2026-09-29T10:00:00", None)], cal, t("2026-12-29T11:00:00"))
    assert reading.state is ClockState.RUNNING
    assert reading.due_date is None and reading.days_left is None


def test_reading_serialises_to_json_types(cal: WorkCalendar) -> None:
    events = [accepted("2026-09-29T10:00:00", 5), ev(EventKind.SUSPENDED, "2026-10-09T09:00:00")]
    data = compute_clock(events, cal, t("2026-10-11T10:00:00")).to_dict()
    assert data["state"] == "stopped"
    assert data["due_at"] == "2026-10-14T23:59:59+08:00"
    assert data["stops"][0]["reason"] == "suspension"


@pytest.mark.parametrize(
    ("raw", "unit"), [("G", G), ("g", G), ("工作日", G), ("Z", Z), (" z ", Z), ("自然日", Z)]
)
def test_limit_units_parse(raw: str, unit: LimitUnit) -> None:
    assert LimitUnit.parse(raw) is unit


def test_unknown_limit_unit_is_rejected() -> None:
    with pytest.raises(ValueError, match="neither G"):
        LimitUnit.parse("月")


def test_end_of_day_is_china_time() -> None:
    assert end_of_day(date(2026, 10, 12)).isoformat() == "2026-10-12T23:59:59+08:00"


def test_extension_adds_its_days_and_the_clock_keeps_running(cal: WorkCalendar) -> None:
    events = [
        accepted("2026-09-29T10:00:00", 5),
        ClockEvent(EventKind.EXTENDED, t("2026-10-09T10:00:00"), 10, G, ref="A"),
    ]
    reading = compute_clock(events, cal, t("2026-10-13T10:00:00"))
    assert reading.state is ClockState.RUNNING
    assert reading.extended_by == 10
    assert reading.due_date == cal.add_working_days(date(2026, 10, 12), 10) == date(2026, 10, 26)
    # 30 Sep, 8, 9, 10, 12, 13 Oct used; 14 – 26 Oct left (nine working days).
    assert (reading.days_used, reading.days_left) == (6, 9)
    assert reading.share_used == pytest.approx(6 / 15)


def test_extension_in_natural_days_is_appended_to_a_working_day_due(cal: WorkCalendar) -> None:
    events = [
        accepted("2026-09-29T10:00:00", 5),
        ClockEvent(EventKind.EXTENDED, t("2026-10-09T10:00:00"), 7, Z, ref="A"),
    ]
    assert compute_clock(events, cal, t("2026-10-13T10:00:00")).due_date == date(2026, 10, 19)


def test_extension_granted_after_the_due_day_does_not_rescue(cal: WorkCalendar) -> None:
    events = [
        accepted("2026-09-29T10:00:00", 5),
        ClockEvent(EventKind.EXTENDED, t("2026-10-13T10:00:00"), 10, G, ref="A"),
    ]
    reading = compute_clock(events, cal, t("2026-10-14T10:00:00"))
    assert reading.state is ClockState.OVERDUE
    assert reading.extended_by == 0
    assert reading.days_left == -2
