"""Specification of the supervision rules: yellow and red cards, back-filling, outside-system processing,
双公示 disclosure, special procedures, idempotent alerts and the persisted case state."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from gateway.schema import KINDS
from gateway.supervision import (
    ALERT_TYPES,
    FIELDS,
    KEY_FIELDS,
    CaseState,
    CaseStateError,
    ClockState,
    CorrectionPolicy,
    SupervisionConfig,
    SupervisionEngine,
    SupervisionError,
    WorkCalendar,
)

CASE_NO = "SBLSH-2026-0001"


def t(text: str) -> datetime:
    return datetime.fromisoformat(text + "+08:00")


def iso(text: str) -> str:
    return text + "+08:00"


_TIME_FIELD = {
    "case": "submitted_at",
    "acceptance": "accepted_at",
    "process_step": "handled_at",
    "correction": "notified_at",
    "special_procedure": "started_at",
    "completion": "completed_at",
    "approval_result": "decided_on",
    "supervision_result": "decided_on",
}


def rec(
    kind: str, system: str = "hall", version: int | None = None, business_time: str | None = None, **data: Any
) -> dict:
    """A stored common-schema record as the pipeline hands it over."""
    data.setdefault("case_no", CASE_NO)
    if version is not None:
        data["version"] = version
    key = "|".join(str(data.get(f, "")) for f in KEY_FIELDS[kind])
    return {
        "kind": kind,
        "schema_version": "1",
        "data": data,
        "provenance": {
            "source_system": system,
            "source_id": f"{kind}:{key}",
            "source_version": str(version or 1),
            "business_time": business_time or data.get(_TIME_FIELD[kind]),
            "receipt_time": None,
            "payload_hash": "0" * 64,
            "original": {},
            "ref": f"test {kind}",
            "mapping": "test@1",
        },
    }


def case(submitted: str = "2026-09-28T09:00:00", **kw: Any) -> dict:
    kw.setdefault("item_type", "01")
    kw.setdefault("department_name", "市行政审批服务局")
    return rec("case", submitted_at=iso(submitted), **kw)


def acceptance(
    at: str = "2026-09-29T10:00:00", limit: int | None = 5, unit: str = "G", status: str = "1", **kw: Any
) -> dict:
    if limit is not None:
        kw["promised_time_limit"] = limit
    return rec(
        "acceptance",
        accepted_at=iso(at),
        status=status,
        time_limit_unit=unit,
        department_name="市市场监督管理局",
        **kw,
    )


def completion(at: str, result: str = "0", **kw: Any) -> dict:
    return rec(
        "completion", completed_at=iso(at), result_code=result, department_name="市市场监督管理局", **kw
    )


def approval(decided_on: str, decision_no: str = "XK-2026-001", **kw: Any) -> dict:
    return rec(
        "approval_result", decision_no=decision_no, decided_on=decided_on, authority="市市场监督管理局", **kw
    )


@pytest.fixture(scope="module")
def calendar() -> WorkCalendar:
    return WorkCalendar.default()


@pytest.fixture
def engine(calendar: WorkCalendar) -> SupervisionEngine:
    return SupervisionEngine(SupervisionConfig(), calendar)


def feed(engine: SupervisionEngine, *steps: tuple[dict, str]) -> tuple[CaseState, list[dict]]:
    """Feed (record, received at) pairs in order; return the final state and every alert raised."""
    state: CaseState | None = None
    raised: list[dict] = []
    for record, received in steps:
        state, alerts = engine.on_record(state, record, t(received))
        raised.extend(alerts)
    assert state is not None
    return state, raised


def types(alerts: list[dict]) -> list[str]:
    return [a["alert_type"] for a in alerts]


def accepted_case(engine: SupervisionEngine) -> CaseState:
    state, alerts = feed(
        engine,
        (case(), "2026-09-28T09:01:00"),
        (acceptance(), "2026-09-29T10:01:00"),
    )
    assert alerts == []
    return state


# ---------------------------------------------------------------- time limits


def test_domain_example_clock_through_national_day(engine: SupervisionEngine) -> None:
    state = accepted_case(engine)
    reading = engine.clock(state, t("2026-10-09T12:00:00"))
    assert reading.state is ClockState.RUNNING
    assert reading.due_at == t("2026-10-12T23:59:59")
    assert (reading.days_used, reading.days_left) == (3, 2)


def test_yellow_then_red_on_tick(engine: SupervisionEngine) -> None:
    state = accepted_case(engine)
    assert engine.on_tick(state, t("2026-10-09T09:00:00")) == []
    # Sat 10 Oct is a make-up working day: 4 of 5 used, one left → yellow.
    state, alerts = engine.tick(state, t("2026-10-10T09:00:00"))
    assert types(alerts) == ["near_deadline_yellow"]
    yellow = alerts[0]
    assert yellow["severity"] == "yellow"
    assert yellow["due_at"] == "2026-10-12T23:59:59+08:00"
    assert yellow["department"] == "市市场监督管理局"
    assert "剩余 1 个工作日" in yellow["description"] and "2026年10月12日" in yellow["description"]
    # Still yellow on the last day, but already raised.
    assert engine.on_tick(state, t("2026-10-12T20:00:00")) == []
    state, alerts = engine.tick(state, t("2026-10-13T00:05:00"))
    assert types(alerts) == ["overdue_red"]
    assert alerts[0]["severity"] == "red"
    assert "已超期 1 个工作日，尚未办结" in alerts[0]["description"]
    assert engine.on_tick(state, t("2026-10-20T09:00:00")) == []


def test_yellow_by_share_of_time_used(calendar: WorkCalendar) -> None:
    engine = SupervisionEngine(SupervisionConfig(yellow_days_left=0, yellow_share_used=0.5), calendar)
    state, _ = feed(engine, (acceptance("2026-09-01T10:00:00", limit=10), "2026-09-01T10:00:00"))
    assert engine.on_tick(state, t("2026-09-07T18:00:00")) == []  # 4 of 10
    alerts = engine.on_tick(state, t("2026-09-08T18:00:00"))  # 5 of 10
    assert types(alerts) == ["near_deadline_yellow"]
    assert "已用 50%" in alerts[0]["description"]


def test_on_tick_is_pure_and_repeats_the_same_alert_id(engine: SupervisionEngine) -> None:
    state = accepted_case(engine)
    before = state.to_dict()
    first = engine.on_tick(state, t("2026-10-13T09:00:00"))
    second = engine.on_tick(state, t("2026-10-14T09:00:00"))
    assert state.to_dict() == before
    assert [a["alert_id"] for a in first] == [a["alert_id"] for a in second]
    assert types(first) == ["overdue_red"]


def test_completion_late_raises_red_once(engine: SupervisionEngine) -> None:
    state = accepted_case(engine)
    state, alerts = engine.tick(state, t("2026-10-13T09:00:00"))
    red_id = alerts[0]["alert_id"]
    state, alerts = engine.on_record(state, completion("2026-10-14T16:00:00"), t("2026-10-14T16:01:00"))
    assert alerts == []  # the red card for this case is already out
    assert engine.clock(state, t("2026-10-15T00:00:00")).state is ClockState.COMPLETED_LATE
    # A case that completes late before any tick saw it still gets its red card, with the same id.
    _, alerts = feed(
        engine,
        (case(), "2026-09-28T09:01:00"),
        (acceptance(), "2026-09-29T10:01:00"),
        (completion("2026-10-14T16:00:00"), "2026-10-14T16:01:00"),
    )
    assert types(alerts) == ["overdue_red"]
    assert alerts[0]["alert_id"] == red_id
    assert "实际于 2026年10月14日 16:00 办结，超期 2 个工作日" in alerts[0]["description"]


def test_completion_on_time_raises_nothing_further(engine: SupervisionEngine) -> None:
    state = accepted_case(engine)
    state, alerts = engine.on_record(state, completion("2026-10-12T11:00:00"), t("2026-10-12T11:05:00"))
    assert alerts == []
    assert engine.on_tick(state, t("2026-10-13T09:00:00")) == []
    assert engine.clock(state, t("2026-10-13T09:00:00")).state is ClockState.COMPLETED_ON_TIME


def test_natural_day_limit(engine: SupervisionEngine) -> None:
    state, _ = feed(engine, (acceptance("2026-09-29T10:00:00", limit=10, unit="Z"), "2026-09-29T10:00:00"))
    assert engine.clock(state, t("2026-09-30T00:00:00")).due_at == t("2026-10-09T23:59:59")
    assert types(engine.on_tick(state, t("2026-10-08T09:00:00"))) == ["near_deadline_yellow"]
    assert "剩余 1 个自然日" in engine.on_tick(state, t("2026-10-08T09:00:00"))[0]["description"]
    assert types(engine.on_tick(state, t("2026-10-10T09:00:00"))) == ["overdue_red"]


def test_refused_application_has_no_clock(engine: SupervisionEngine) -> None:
    state, _ = feed(engine, (acceptance(status="2"), "2026-09-29T10:01:00"))
    assert engine.clock(state, t("2026-12-01T00:00:00")).state is ClockState.NOT_STARTED
    assert engine.on_tick(state, t("2026-12-01T00:00:00")) == []


def test_limit_recovered_from_promised_completion_time(engine: SupervisionEngine) -> None:
    record = acceptance(limit=None, promised_completion_at=iso("2026-10-12T17:00:00"))
    state, _ = feed(engine, (record, "2026-09-29T10:01:00"))
    reading = engine.clock(state, t("2026-09-30T00:00:00"))
    assert (reading.limit, reading.due_date.isoformat()) == (5, "2026-10-12")


def test_limit_from_the_case_record_when_acceptance_has_none(engine: SupervisionEngine) -> None:
    state, _ = feed(
        engine,
        (case(promised_time_limit=10, time_limit_unit="Z"), "2026-09-28T09:01:00"),
        (acceptance(limit=None, unit=""), "2026-09-29T10:01:00"),
    )
    reading = engine.clock(state, t("2026-09-30T00:00:00"))
    assert (reading.limit, reading.unit.value, reading.due_date.isoformat()) == (10, "Z", "2026-10-09")


# ---------------------------------------------------------------- stops: suspension, correction, special procedures


def step(name: str, at: str, step_code: str = "2") -> dict:
    return rec("process_step", step_code=step_code, step_name=name, handled_at=iso(at), action="other")


def test_suspension_by_process_steps_moves_the_deadline_and_blocks_cards(engine: SupervisionEngine) -> None:
    state = accepted_case(engine)
    state, alerts = engine.on_record(state, step("挂起", "2026-10-09T09:00:00"), t("2026-10-09T09:01:00"))
    assert alerts == []
    # Suspended over the weekend: no yellow though the original due day is near.
    assert engine.on_tick(state, t("2026-10-12T09:00:00")) == []
    assert engine.clock(state, t("2026-10-12T09:00:00")).state is ClockState.STOPPED
    state, alerts = engine.on_record(
        state, step("恢复", "2026-10-13T09:00:00", "3"), t("2026-10-13T09:01:00")
    )
    assert engine.clock(state, t("2026-10-13T10:00:00")).due_date.isoformat() == "2026-10-15"
    assert engine.on_tick(state, t("2026-10-16T00:00:01"))[-1]["alert_type"] == "overdue_red"


def test_suspension_marks_in_any_arrival_order(engine: SupervisionEngine) -> None:
    resume = step("恢复", "2026-10-13T09:00:00", "3")
    suspend = step("挂起", "2026-10-09T09:00:00")
    state, _ = feed(
        engine,
        (acceptance(), "2026-09-29T10:01:00"),
        (resume, "2026-10-13T09:01:00"),
        (suspend, "2026-10-13T09:02:00"),
    )
    assert engine.clock(state, t("2026-10-13T10:00:00")).due_date.isoformat() == "2026-10-15"


def correction(notified: str, received: str | None = None, version: int = 1) -> dict:
    data = {"notice_reason": "材料不全", "notified_at": iso(notified)}
    if received:
        data["resubmitted_at"] = iso(received)
    return rec("correction", version=version, **data)


def test_correction_stops_the_clock_until_material_arrives(engine: SupervisionEngine) -> None:
    state, _ = feed(
        engine,
        (acceptance("2026-09-01T10:00:00", limit=10), "2026-09-01T10:01:00"),
        (correction("2026-09-04T10:00:00", version=1), "2026-09-04T10:01:00"),
    )
    assert engine.clock(state, t("2026-09-08T10:00:00")).state is ClockState.STOPPED
    # A new version of the same correction record carries the resubmission time.
    state, _ = engine.on_record(
        state, correction("2026-09-04T10:00:00", "2026-09-09T10:00:00", version=2), t("2026-09-09T10:01:00")
    )
    assert len(state.corrections) == 1
    assert engine.clock(state, t("2026-09-09T12:00:00")).due_date.isoformat() == "2026-09-18"


def test_correction_policy_restart_is_configurable(calendar: WorkCalendar) -> None:
    engine = SupervisionEngine(SupervisionConfig(correction_after_acceptance="restart"), calendar)
    assert engine.config.correction_after_acceptance is CorrectionPolicy.RESTART
    state, _ = feed(
        engine,
        (acceptance("2026-09-01T10:00:00", limit=10), "2026-09-01T10:01:00"),
        (correction("2026-09-04T10:00:00", "2026-09-09T10:00:00"), "2026-09-09T10:01:00"),
    )
    reading = engine.clock(state, t("2026-09-09T12:00:00"))
    assert reading.days_used == 0
    assert reading.due_date.isoformat() == "2026-09-22"


def test_acceptance_answered_with_correction_request_starts_on_receipt(engine: SupervisionEngine) -> None:
    state, _ = feed(
        engine,
        (acceptance("2026-09-25T10:00:00", status="3"), "2026-09-25T10:01:00"),
        (correction("2026-09-25T10:00:00"), "2026-09-25T10:02:00"),
    )
    assert engine.clock(state, t("2026-09-28T10:00:00")).state is ClockState.NOT_STARTED
    state, _ = engine.on_record(
        state, correction("2026-09-25T10:00:00", "2026-09-29T10:00:00", version=2), t("2026-09-29T10:01:00")
    )
    assert engine.clock(state, t("2026-09-30T10:00:00")).due_date.isoformat() == "2026-10-12"


def special(kind: str, started: str, limit: int | None, unit: str = "G", ended: str | None = None) -> dict:
    data: dict[str, Any] = {"procedure_type": kind, "started_at": iso(started), "time_limit_unit": unit}
    if limit is not None:
        data["time_limit"] = limit
    if ended:
        data["ended_at"] = iso(ended)
    return rec("special_procedure", **data)


def test_special_procedure_past_its_own_limit_is_flagged_and_the_clock_runs_again(
    engine: SupervisionEngine,
) -> None:
    state, _ = feed(
        engine,
        (acceptance("2026-09-01T10:00:00", limit=20), "2026-09-01T10:01:00"),
        (special("B", "2026-09-14T10:00:00", 5), "2026-09-14T10:01:00"),
    )
    assert engine.on_tick(state, t("2026-09-18T10:00:00")) == []
    assert engine.clock(state, t("2026-09-18T10:00:00")).state is ClockState.STOPPED
    alerts = engine.on_tick(state, t("2026-09-22T10:00:00"))
    assert types(alerts) == ["special_procedure_overdue"]
    assert "已于 2026年9月20日 届满" in alerts[0]["description"]  # Sun 20 Sep is a make-up day
    assert alerts[0]["subject_kind"] == "special_procedure"
    assert engine.clock(state, t("2026-09-22T10:00:00")).state is ClockState.RUNNING


def test_extension_special_procedure_extends_the_limit(engine: SupervisionEngine) -> None:
    state, _ = feed(
        engine,
        (acceptance(), "2026-09-29T10:01:00"),
        (special("A", "2026-10-09T10:00:00", 10), "2026-10-09T10:01:00"),
    )
    reading = engine.clock(state, t("2026-10-13T10:00:00"))
    assert reading.state is ClockState.RUNNING
    assert reading.extended_by == 10
    assert reading.due_date.isoformat() == "2026-10-26"
    assert engine.on_tick(state, t("2026-10-13T10:00:00")) == []


# ---------------------------------------------------------------- back-filling and outside-system processing


def test_late_entry_beyond_threshold_is_a_backfill_finding(engine: SupervisionEngine) -> None:
    state, alerts = feed(
        engine,
        (case(), "2026-09-28T09:01:00"),
        (acceptance("2026-09-29T10:00:00"), "2026-10-03T10:00:01"),
    )
    assert types(alerts) == ["backfill_late_entry"]
    alert = alerts[0]
    assert alert["subject_kind"] == "acceptance"
    assert "相隔 4 天" in alert["description"] and "超过 3 天" in alert["description"]
    assert "来源系统：hall" in alert["description"]


def test_entry_within_threshold_is_not_backfill(engine: SupervisionEngine) -> None:
    _, alerts = feed(
        engine, (case(), "2026-09-28T09:01:00"), (acceptance("2026-09-29T10:00:00"), "2026-10-02T10:00:00")
    )
    assert alerts == []


def test_backfill_threshold_is_configurable(calendar: WorkCalendar) -> None:
    config = SupervisionConfig.model_validate({"backfill_threshold": "PT12H"})
    assert config.backfill_threshold == timedelta(hours=12)
    engine = SupervisionEngine(config, calendar)
    _, alerts = feed(engine, (acceptance("2026-09-29T10:00:00"), "2026-09-30T10:00:00"))
    assert types(alerts) == ["backfill_late_entry"]
    assert "相隔 1 天，超过 12 小时" in alerts[0]["description"]


def test_case_first_seen_completed_is_backfill_and_outside_system(engine: SupervisionEngine) -> None:
    state, alerts = feed(engine, (completion("2026-10-12T11:00:00"), "2026-10-12T11:05:00"))
    assert sorted(types(alerts)) == ["backfill_completed_on_first_sight", "outside_system_no_acceptance"]
    assert state.first_kind == "completion"
    by_type = {a["alert_type"]: a for a in alerts}
    assert by_type["outside_system_no_acceptance"]["severity"] == "red"
    assert "此前没有受理记录" in by_type["outside_system_no_acceptance"]["description"]


def test_approval_result_first_for_a_case_is_backfill(engine: SupervisionEngine) -> None:
    _, alerts = feed(engine, (approval("2026-10-12"), "2026-10-12T18:00:00"))
    assert sorted(types(alerts)) == ["backfill_completed_on_first_sight", "outside_system_no_acceptance"]


def test_completion_without_acceptance_is_outside_system(engine: SupervisionEngine) -> None:
    _, alerts = feed(
        engine, (case(), "2026-09-28T09:01:00"), (completion("2026-09-30T15:00:00"), "2026-09-30T15:01:00")
    )
    assert types(alerts) == ["outside_system_no_acceptance"]
    assert alerts[0]["department"] == "市市场监督管理局"


def test_acceptance_dated_after_the_completion_does_not_count(engine: SupervisionEngine) -> None:
    _, alerts = feed(
        engine,
        (case(), "2026-09-28T09:01:00"),
        (acceptance("2026-10-01T10:00:00"), "2026-10-01T10:01:00"),
        (completion("2026-09-30T15:00:00"), "2026-10-01T10:02:00"),
    )
    assert "outside_system_no_acceptance" in types(alerts)


def test_approval_result_without_case_number_is_kept_under_its_decision(engine: SupervisionEngine) -> None:
    record = approval("2026-09-29")
    del record["data"]["case_no"]
    assert engine.case_key(record) == "XK-2026-001"
    state, alerts = engine.on_record(None, record, t("2026-09-30T09:00:00"))
    assert state.case_no == "XK-2026-001"
    assert alerts == []  # no case to have been back-filled or handled outside the system


# ---------------------------------------------------------------- 双公示 disclosure


def completed_licence_case(engine: SupervisionEngine) -> CaseState:
    state, alerts = feed(
        engine,
        (case(), "2026-09-28T09:01:00"),
        (acceptance(), "2026-09-29T10:01:00"),
        (completion("2026-09-30T15:00:00"), "2026-09-30T15:01:00"),
    )
    assert alerts == []
    return state


def test_approval_result_received_after_seven_working_days_is_disclosure_overdue(
    engine: SupervisionEngine,
) -> None:
    # Decided 30 Sep: 8, 9, 10, 12, 13, 14, 15 Oct → disclose by the end of 15 Oct.
    state = completed_licence_case(engine)
    _, alerts = engine.on_record(state, approval("2026-09-30"), t("2026-10-15T18:00:00"))
    assert alerts == []
    state, alerts = engine.on_record(state, approval("2026-09-30"), t("2026-10-16T08:00:00"))
    assert types(alerts) == ["disclosure_overdue"]
    assert alerts[0]["due_at"] == "2026-10-15T23:59:59+08:00"
    assert "超期 1 个工作日" in alerts[0]["description"]


def test_tick_raises_disclosure_overdue_when_no_approval_result_arrives(engine: SupervisionEngine) -> None:
    state = completed_licence_case(engine)
    assert engine.on_tick(state, t("2026-10-15T20:00:00")) == []
    alerts = engine.on_tick(state, t("2026-10-16T00:00:01"))
    assert types(alerts) == ["disclosure_overdue"]
    assert "仍未收到许可决定信息" in alerts[0]["description"]
    # Once the approval result is in, the tick has nothing to say.
    state, _ = engine.on_record(state, approval("2026-09-30"), t("2026-10-14T09:00:00"))
    assert engine.on_tick(state, t("2026-10-20T00:00:00")) == []


def test_non_licence_items_and_refusals_need_no_disclosure(engine: SupervisionEngine) -> None:
    state, _ = feed(
        engine,
        (case(item_type="20"), "2026-09-28T09:01:00"),
        (acceptance(), "2026-09-29T10:01:00"),
        (completion("2026-09-30T15:00:00"), "2026-09-30T15:01:00"),
    )
    assert engine.on_tick(state, t("2026-11-30T00:00:00")) == []
    state, _ = feed(
        engine,
        (case(), "2026-09-28T09:01:00"),
        (acceptance(), "2026-09-29T10:01:00"),
        (completion("2026-09-30T15:00:00", result="1"), "2026-09-30T15:01:00"),
    )
    assert engine.on_tick(state, t("2026-11-30T00:00:00")) == []


def penalty(decided_on: str, result_type: str = "penalty", version: int = 1) -> dict:
    record = rec(
        "supervision_result",
        version=version,
        decision_no="CF-2026-009",
        result_type=result_type,
        decided_on=decided_on,
        authority="市市场监督管理局",
        content="罚款",
    )
    del record["data"]["case_no"]
    return record


def test_penalty_decision_received_late_is_disclosure_overdue(engine: SupervisionEngine) -> None:
    assert engine.case_key(penalty("2026-09-30")) == "CF-2026-009"
    _, alerts = engine.on_record(None, penalty("2026-09-30"), t("2026-10-15T18:00:00"))
    assert alerts == []
    state, alerts = engine.on_record(None, penalty("2026-09-30"), t("2026-10-16T09:00:00"))
    assert types(alerts) == ["disclosure_overdue"]
    assert alerts[0]["case_no"] == "CF-2026-009"
    assert alerts[0]["description"].startswith("监管（处罚）决定 CF-2026-009（决定日期 2026年9月30日）")
    # A re-report of the penalty is not a change to a case.
    _, alerts = engine.on_record(state, penalty("2026-09-30", version=2), t("2026-10-17T09:00:00"))
    assert alerts == []


def test_inspection_results_have_no_disclosure_deadline(engine: SupervisionEngine) -> None:
    _, alerts = engine.on_record(
        None, penalty("2026-09-30", result_type="inspection"), t("2026-11-30T09:00:00")
    )
    assert alerts == []


# ---------------------------------------------------------------- other findings


def test_no_acceptance_decision_within_five_working_days(engine: SupervisionEngine) -> None:
    # Submitted Fri 25 Sep: 28, 29, 30 Sep, 8, 9 Oct → decide by 9 Oct.
    state, _ = feed(engine, (case("2026-09-25T09:00:00"), "2026-09-25T09:01:00"))
    assert engine.on_tick(state, t("2026-10-09T20:00:00")) == []
    alerts = engine.on_tick(state, t("2026-10-10T08:00:00"))
    assert types(alerts) == ["acceptance_overdue"]
    assert alerts[0]["department"] == "市行政审批服务局"


def test_new_version_after_completion_is_flagged(engine: SupervisionEngine) -> None:
    state, _ = feed(
        engine,
        (case(version=1), "2026-09-28T09:01:00"),
        (acceptance(version=1), "2026-09-29T10:01:00"),
        (completion("2026-09-30T15:00:00", version=1), "2026-09-30T15:01:00"),
    )
    state, alerts = engine.on_record(state, acceptance(version=2), t("2026-10-01T09:00:00"))
    assert types(alerts) == ["changed_after_completion"]
    assert "版本 1 → 2" in alerts[0]["description"]
    assert alerts[0]["subject_key"] == f"acceptance:{CASE_NO}"


def test_replayed_record_with_an_old_receipt_time_raises_no_stale_card(engine: SupervisionEngine) -> None:
    state = accepted_case(engine)
    state, _ = engine.on_record(state, completion("2026-10-12T11:00:00"), t("2026-10-12T11:05:00"))
    # A step re-delivered with its original receipt time on Sat 10 Oct, when one working day was
    # left (a yellow card then); the engine has since seen the case completed on time.
    replayed = step("审核", "2026-10-10T09:00:00")
    assert types(engine.on_tick(accepted_case(engine), t("2026-10-10T09:01:00"))) == ["near_deadline_yellow"]
    state, alerts = engine.on_record(state, replayed, t("2026-10-10T09:01:00"))
    assert alerts == []
    assert state.last_received_at == "2026-10-12T11:05:00+08:00"


def test_older_version_arriving_late_does_not_overwrite(engine: SupervisionEngine) -> None:
    state, _ = feed(engine, (acceptance(limit=10, version=2), "2026-09-29T10:01:00"))
    state, alerts = engine.on_record(state, acceptance(limit=5, version=1), t("2026-09-29T10:02:00"))
    assert alerts == []
    assert engine.clock(state, t("2026-09-30T00:00:00")).limit == 10


# ---------------------------------------------------------------- idempotency and persistence


def test_alert_ids_are_deterministic_and_replays_raise_nothing_new(calendar: WorkCalendar) -> None:
    steps = [
        (completion("2026-10-12T11:00:00"), "2026-10-16T11:05:00"),
        (approval("2026-09-30"), "2026-10-16T12:00:00"),
    ]
    _, first = feed(SupervisionEngine(SupervisionConfig(), calendar), *steps)
    _, again = feed(SupervisionEngine(SupervisionConfig(), calendar), *steps)
    assert [a["alert_id"] for a in first] == [a["alert_id"] for a in again]
    assert len({a["alert_id"] for a in first}) == len(first)
    # Feeding the same records again into the resulting state raises nothing.
    engine = SupervisionEngine(SupervisionConfig(), calendar)
    state, _ = feed(engine, *steps)
    for record, received in steps:
        state, alerts = engine.on_record(state, record, t(received))
        assert alerts == []


def test_alert_id_depends_on_case_rule_and_severity(engine: SupervisionEngine) -> None:
    state = accepted_case(engine)
    yellow = engine.on_tick(state, t("2026-10-10T09:00:00"))[0]
    red = engine.on_tick(state, t("2026-10-13T09:00:00"))[0]
    assert yellow["rule"] == red["rule"] == "promised_time_limit"
    assert yellow["alert_id"] != red["alert_id"]
    other_case = SupervisionEngine(engine.config, engine.calendar)
    other, _ = other_case.on_record(
        None,
        rec(
            "acceptance",
            case_no="OTHER",
            accepted_at=iso("2026-09-29T10:00:00"),
            status="1",
            promised_time_limit=5,
        ),
        t("2026-09-29T10:01:00"),
    )
    assert other_case.on_tick(other, t("2026-10-13T09:00:00"))[0]["alert_id"] != red["alert_id"]


def test_state_survives_a_json_round_trip(engine: SupervisionEngine) -> None:
    state = accepted_case(engine)
    state, _ = engine.on_record(state, step("挂起", "2026-10-09T09:00:00"), t("2026-10-09T09:01:00"))
    state, raised = engine.tick(state, t("2026-10-09T09:02:00"))
    restored = CaseState.from_dict(json.loads(json.dumps(state.to_dict(), ensure_ascii=False)))
    assert restored == state
    assert engine.clock(restored, t("2026-10-11T00:00:00")) == engine.clock(state, t("2026-10-11T00:00:00"))


def test_on_record_does_not_modify_the_state_passed_in(engine: SupervisionEngine) -> None:
    state = accepted_case(engine)
    before = state.to_dict()
    engine.on_record(state, completion("2026-10-14T16:00:00"), t("2026-10-14T16:01:00"))
    assert state.to_dict() == before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"format": 99, "case_no": "X"}, "format 99"),
        (
            {"format": 1, "case_no": "X", "first_kind": "case", "first_received_at": "x", "surprise": 1},
            "unknown key",
        ),
        ({"format": 1, "case_no": "X"}, "lacks"),
    ],
)
def test_unreadable_state_is_an_error(data: dict, message: str) -> None:
    with pytest.raises(CaseStateError, match=message):
        CaseState.from_dict(data)


def test_next_check_at_points_to_the_next_day_a_tick_matters(engine: SupervisionEngine) -> None:
    state = accepted_case(engine)
    assert engine.next_check_at(state, t("2026-10-08T09:00:00")) == t("2026-10-10T00:00:00")
    state, _ = engine.tick(state, t("2026-10-10T09:00:00"))
    assert engine.next_check_at(state, t("2026-10-10T09:00:00")) == t("2026-10-13T00:00:00")
    done = completed_licence_case(engine)
    assert engine.next_check_at(done, t("2026-10-01T09:00:00")) == t("2026-10-16T00:00:00")
    done, _ = engine.on_record(done, approval("2026-09-30"), t("2026-10-02T09:00:00"))
    assert engine.next_check_at(done, t("2026-10-02T09:00:00")) is None


# ---------------------------------------------------------------- errors, configuration, alignment with the schema


def test_records_without_a_case_are_refused_with_a_readable_error(engine: SupervisionEngine) -> None:
    alert_record = {"kind": "supervision_alert", "data": {"alert_id": "sa-1", "case_no": CASE_NO}}
    assert engine.case_key(alert_record) is None
    with pytest.raises(SupervisionError, match="no case number to supervise"):
        engine.on_record(None, alert_record, t("2026-10-01T00:00:00"))


@pytest.mark.parametrize(
    ("record", "field", "problem"),
    [
        (rec("acceptance", status="1"), "accepted_at", "missing"),
        (rec("acceptance", status="1", accepted_at="29/09/2026"), "accepted_at", "not an ISO 8601 date-time"),
        (
            rec("acceptance", status="1", accepted_at=iso("2026-09-29T10:00:00"), time_limit_unit="月"),
            "time_limit_unit",
            "neither G",
        ),
        (
            rec("acceptance", status="1", accepted_at=iso("2026-09-29T10:00:00"), promised_time_limit="five"),
            "promised_time_limit",
            "whole number",
        ),
        (
            rec("acceptance", status="1", accepted_at=iso("2026-09-29T10:00:00"), promised_time_limit=99999),
            "promised_time_limit",
            "between 0 and 3650",
        ),
        (rec("approval_result", decision_no="XK-1", decided_on="2026/09/29"), "decided_on", "ISO 8601 date"),
    ],
)
def test_bad_fields_name_system_record_and_field(
    engine: SupervisionEngine, record: dict, field: str, problem: str
) -> None:
    with pytest.raises(SupervisionError) as info:
        engine.on_record(None, record, t("2026-10-01T00:00:00"))
    text = str(info.value)
    assert "hall" in text and record["provenance"]["source_id"] in text
    assert f"field {field}" in text and problem in text


def test_state_of_another_case_is_refused(engine: SupervisionEngine) -> None:
    state = accepted_case(engine)
    with pytest.raises(SupervisionError, match="state passed is case"):
        engine.on_record(
            state,
            rec("acceptance", case_no="OTHER", status="1", accepted_at=iso("2026-09-29T10:00:00")),
            t("2026-10-01T00:00:00"),
        )


def test_disabled_alert_types_are_not_raised(calendar: WorkCalendar) -> None:
    engine = SupervisionEngine(
        SupervisionConfig(disabled_alert_types=("backfill_completed_on_first_sight",)), calendar
    )
    _, alerts = feed(engine, (completion("2026-10-12T11:00:00"), "2026-10-12T11:05:00"))
    assert types(alerts) == ["outside_system_no_acceptance"]


@pytest.mark.parametrize(
    "bad",
    [
        {"yellow_share_used": 1.5},
        {"yellow_days_left": -1},
        {"backfill_threshold": "PT0S"},
        {"disabled_alert_types": ["no_such_alert"]},
        {"correction_after_acceptance": "sometimes"},
        {"unknown_option": 1},
    ],
)
def test_invalid_configuration_is_rejected(bad: dict) -> None:
    with pytest.raises(ValidationError):
        SupervisionConfig.model_validate(bad)


def test_alerts_are_valid_supervision_alert_records(engine: SupervisionEngine) -> None:
    state = accepted_case(engine)
    _, alerts = feed(
        engine,
        (completion("2026-10-12T11:00:00"), "2026-10-16T11:05:00"),
        (approval("2026-09-30"), "2026-10-16T12:00:00"),
    )
    alerts += engine.on_tick(state, t("2026-10-13T09:00:00"))
    alerts += engine.on_tick(accepted_case(engine), t("2026-10-10T09:00:00"))
    assert len(set(types(alerts))) >= 5
    validate = KINDS["supervision_alert"].validator
    for alert in alerts:
        data = {k: v for k, v in alert.items() if v is not None}
        assert validate(data) == [], alert


def test_alert_types_match_the_schema_code_table() -> None:
    path = Path(__file__).resolve().parents[1] / "gateway/schema/codetables/supervision_alert_type.yaml"
    table = yaml.safe_load(path.read_text(encoding="utf-8"))["codes"]
    for code, kind in ALERT_TYPES.items():
        assert code in table, code
        assert table[code]["severity"] == kind.severity, code
        assert table[code]["label"] == kind.label, code


def test_field_table_names_fields_the_schema_has() -> None:
    for kind, facts in FIELDS.items():
        schema = KINDS[kind]
        for fact, name in facts.items():
            assert name in schema.field_map, f"{kind}.{fact} → {name}"
        assert KEY_FIELDS[kind] == schema.key_fields, kind
