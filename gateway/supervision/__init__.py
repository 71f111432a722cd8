"""Electronic supervision (电子监察): the working-day calendar, the time-limit clock and the rules that raise
``supervision_alert`` records. Pure library code; the pipeline feeds it records and clock ticks.

Public surface::

    from gateway.supervision import SupervisionEngine, SupervisionConfig, WorkCalendar, CaseState

    engine = SupervisionEngine(SupervisionConfig(), WorkCalendar.default(override_path=None))
    key = engine.case_key(record)                       # None: not a case record, skip
    state, alerts = engine.on_record(state_or_none, record, received_at)
    alerts = engine.on_tick(state, now)                 # or: state, alerts = engine.tick(state, now)
    engine.next_check_at(state, now)                    # when a tick could next raise something
    CaseState.from_dict(state.to_dict())                # persisted per case as JSON
"""

from gateway.supervision.alerts import ALERT_TYPES, AlertType, alert_id
from gateway.supervision.calendar import CalendarError, WorkCalendar, YearSchedule, load_schedule_file
from gateway.supervision.clock import (
    CHINA_TZ,
    ClockEvent,
    ClockPolicy,
    ClockReading,
    ClockState,
    CorrectionPolicy,
    EventKind,
    LimitUnit,
    StopPeriod,
    compute_clock,
)
from gateway.supervision.config import SupervisionConfig
from gateway.supervision.rules import FIELDS, KEY_FIELDS, SupervisionEngine, SupervisionError
from gateway.supervision.state import CaseState, CaseStateError

__all__ = [
    "ALERT_TYPES",
    "CHINA_TZ",
    "FIELDS",
    "KEY_FIELDS",
    "AlertType",
    "CalendarError",
    "CaseState",
    "CaseStateError",
    "ClockEvent",
    "ClockPolicy",
    "ClockReading",
    "ClockState",
    "CorrectionPolicy",
    "EventKind",
    "LimitUnit",
    "StopPeriod",
    "SupervisionConfig",
    "SupervisionEngine",
    "SupervisionError",
    "WorkCalendar",
    "YearSchedule",
    "alert_id",
    "compute_clock",
    "load_schedule_file",
]
