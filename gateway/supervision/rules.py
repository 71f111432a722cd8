"""Electronic-supervision rules (电子监察规则): fold common-schema records into a CaseState and raise
``supervision_alert`` data for time limits, back-filling, outside-system processing and 双公示 disclosure.

Pure: no I/O, no clock of its own. The pipeline passes each record with its receipt time, and ticks
open cases with the current time; the engine returns the new state and the alerts to store.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from gateway.supervision.alerts import make_alert
from gateway.supervision.calendar import WorkCalendar
from gateway.supervision.clock import (
    ClockEvent,
    ClockReading,
    ClockState,
    EventKind,
    LimitUnit,
    compute_clock,
    end_of_day,
    local_date,
    to_china_time,
)
from gateway.supervision.config import SupervisionConfig
from gateway.supervision.state import CaseState

__all__ = ["FIELDS", "KEY_FIELDS", "SupervisionEngine", "SupervisionError"]

# Field names of the common schema (gateway/schema/_kinds.py) that the rules read, per record kind.
# Left: the engine's name for the fact; right: the field in record["data"].
FIELDS: dict[str, dict[str, str]] = {
    "case": {
        "case_no": "case_no",
        "submitted_at": "submitted_at",
        "item_type": "item_type",
        "limit": "promised_time_limit",
        "unit": "time_limit_unit",
        "department": "department_name",
    },
    "acceptance": {
        "case_no": "case_no",
        "accepted_at": "accepted_at",
        "status": "status",
        "limit": "promised_time_limit",
        "unit": "time_limit_unit",
        "promised_due_at": "promised_completion_at",
        "department": "department_name",
    },
    "process_step": {
        "case_no": "case_no",
        "at": "handled_at",
        "action": "action",
        "step_name": "step_name",
        "department": "department_name",
    },
    "correction": {"case_no": "case_no", "notified_at": "notified_at", "received_at": "resubmitted_at"},
    "special_procedure": {
        "case_no": "case_no",
        "type": "procedure_type",
        "started_at": "started_at",
        "ended_at": "ended_at",
        "limit": "time_limit",
        "unit": "time_limit_unit",
    },
    "completion": {
        "case_no": "case_no",
        "completed_at": "completed_at",
        "result_code": "result_code",
        "department": "department_name",
    },
    "approval_result": {
        "case_no": "case_no",
        "decision_no": "decision_no",
        "decided_on": "decided_on",
        "authority": "authority",
    },
    "supervision_result": {
        "case_no": "case_no",
        "decision_no": "decision_no",
        "decided_on": "decided_on",
        "authority": "authority",
        "result_type": "result_type",
    },
}

# Natural keys per kind (the schema's key_fields): one record and its later versions share a key.
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "case": ("case_no",),
    "acceptance": ("case_no",),
    "process_step": ("case_no", "step_code", "handled_at"),
    "correction": ("case_no", "notified_at"),
    "special_procedure": ("case_no", "procedure_type", "started_at"),
    "completion": ("case_no",),
    "approval_result": ("decision_no",),
    "supervision_result": ("decision_no",),
}
VERSION_FIELD = "version"
# No statutory time limit comes near ten years; a larger number is a data error, and would make the
# clock walk through centuries of calendar on every tick.
MAX_LIMIT_DAYS = 3650

_KIND_TITLES = {
    "case": "办件",
    "acceptance": "受理",
    "process_step": "办理环节",
    "correction": "补正",
    "special_procedure": "特别程序",
    "completion": "办结",
    "approval_result": "许可决定",
    "supervision_result": "监管（处罚）决定",
}
# Kinds the engine ignores: they carry nothing it supervises (its own alerts, citizens' ratings).
_IGNORED_KINDS = frozenset({"supervision_alert", "evaluation"})
# Kinds that make up the handling of a case (a change to one after completion is a finding).
_CASE_KINDS = frozenset(
    {"case", "acceptance", "process_step", "correction", "special_procedure", "completion", "approval_result"}
)
# Kinds keyed by their decision number when they name no case.
_DECISION_KINDS = ("approval_result", "supervision_result")


class SupervisionError(ValueError):
    """A record cannot be supervised as it stands; the message names system, record, field and rule."""


def _f(kind: str, fact: str) -> str:
    return FIELDS[kind][fact]


def _fmt_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def _fmt_time(moment: datetime) -> str:
    local = to_china_time(moment)
    return f"{_fmt_date(local.date())} {local:%H:%M}"


class _Record:
    """One incoming record with the helpers that turn its fields into typed values or readable errors."""

    def __init__(self, record: dict[str, Any]) -> None:
        if not isinstance(record, dict) or not isinstance(record.get("data"), dict):
            raise SupervisionError("supervision: a record must be a mapping with 'kind' and a 'data' mapping")
        self.kind: str = str(record.get("kind", ""))
        self.data: dict[str, Any] = record["data"]
        self.provenance: dict[str, Any] = record.get("provenance") or {}
        found = record.get("findings")
        self.findings: list[dict[str, Any]] = [f for f in found if isinstance(f, dict)] if isinstance(found, list) else []
        self.system = str(self.provenance.get("source_system") or "unknown system")
        self.source_id = str(self.provenance.get("source_id") or "?")

    def where(self) -> str:
        ref = self.provenance.get("ref")
        return f"{self.system} {self.kind} record {self.source_id}" + (f" ({ref})" if ref else "")

    def fail(self, field: str, value: Any, problem: str) -> SupervisionError:
        return SupervisionError(
            f"{self.where()}: field {field} = {value!r}: {problem} (electronic supervision)"
        )

    def get(self, fact: str) -> Any:
        """The value of ``fact`` for this kind; None when empty or when the kind has no such field."""
        name = FIELDS.get(self.kind, {}).get(fact)
        value = self.data.get(name) if name else None
        return None if value == "" else value

    def moment(self, fact: str, required: bool = False) -> datetime | None:
        name = _f(self.kind, fact)
        value = self.data.get(name)
        if value in (None, ""):
            if required:
                raise self.fail(name, value, "missing; the supervision clock needs it")
            return None
        try:
            return to_china_time(datetime.fromisoformat(str(value)))
        except ValueError:
            raise self.fail(
                name, value, "not an ISO 8601 date-time such as 2026-09-29T10:00:00+08:00"
            ) from None

    def day(self, fact: str, required: bool = False) -> date | None:
        name = _f(self.kind, fact)
        value = self.data.get(name)
        if value in (None, ""):
            if required:
                raise self.fail(name, value, "missing; the disclosure deadline needs it")
            return None
        text = str(value)
        try:
            return date.fromisoformat(text) if len(text) == 10 else local_date(datetime.fromisoformat(text))
        except ValueError:
            raise self.fail(name, value, "not an ISO 8601 date such as 2026-09-29") from None

    def integer(self, fact: str) -> int | None:
        name = _f(self.kind, fact)
        value = self.data.get(name)
        if value in (None, ""):
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise self.fail(name, value, "not a whole number of days") from None
        if not 0 <= number <= MAX_LIMIT_DAYS:
            raise self.fail(name, value, f"a time limit must be between 0 and {MAX_LIMIT_DAYS} days")
        return number

    def unit(self, fact: str) -> str | None:
        name = _f(self.kind, fact)
        value = self.data.get(name)
        if value in (None, ""):
            return None
        try:
            return LimitUnit.parse(value).value
        except ValueError as exc:
            raise self.fail(name, value, str(exc)) from None

    def subject_key(self) -> str:
        parts = [str(self.data.get(name, "")) for name in KEY_FIELDS.get(self.kind, ("case_no",))]
        return f"{self.kind}:" + "|".join(parts)

    def version(self) -> int | None:
        value = self.data.get(VERSION_FIELD, self.provenance.get("source_version"))
        try:
            return int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    def business_time(self) -> datetime | None:
        value = self.provenance.get("business_time")
        if value:
            try:
                text = str(value)
                parsed = datetime.fromisoformat(text)
                if len(text) == 10:  # a date: count from the start of that day in China
                    parsed = datetime.combine(parsed.date(), datetime.min.time())
                return to_china_time(parsed)
            except ValueError:
                raise SupervisionError(
                    f"{self.where()}: provenance.business_time = {value!r} is not ISO 8601 (electronic supervision)"
                ) from None
        return None


class SupervisionEngine:
    """Applies the supervision rules; one instance serves every case (it holds only configuration)."""

    def __init__(self, config: SupervisionConfig | None = None, calendar: WorkCalendar | None = None) -> None:
        self.config = config or SupervisionConfig()
        self.calendar = calendar or WorkCalendar.default()
        self._policy = self.config.clock_policy()

    # ------------------------------------------------------------------ public API

    @staticmethod
    def case_key(record: dict[str, Any]) -> str | None:
        """The key under which the pipeline keeps this record's CaseState, or None if it has none.

        The 申办流水号 when the record names one; for an approval or supervision result without one,
        its decision number. None for kinds the engine ignores (its own alerts, evaluations).
        """
        kind = record.get("kind")
        data = record.get("data") or {}
        if kind in _IGNORED_KINDS or kind not in FIELDS:
            return None
        case_no = data.get(FIELDS[kind]["case_no"])
        if case_no:
            return str(case_no)
        if kind in _DECISION_KINDS and data.get(_f(kind, "decision_no")):
            return str(data[_f(kind, "decision_no")])
        return None

    def on_record(
        self, state: CaseState | None, record: dict[str, Any], received_at: datetime, *, judge_time: bool = True
    ) -> tuple[CaseState, list[dict[str, Any]]]:
        """Fold ``record`` (received at ``received_at``) into the case state and return new alerts.

        ``judge_time=False`` folds the record without judging the time limits yet: the caller has more
        records of this case that arrived with it (a report carrying 申请, 受理 and 办结 together must not
        be judged "no acceptance" between its first and second record). ``state`` is not modified. Alerts already in the state's ``raised`` list are not returned again;
        every returned alert's id is added to the new state's ``raised``.
        """
        rec = _Record(record)
        received_at = to_china_time(received_at)
        key = self.case_key(record)
        if key is None:
            raise SupervisionError(
                f"{rec.where()}: kind {rec.kind!r} has no case number to supervise; "
                "call SupervisionEngine.case_key first and skip records it returns None for"
            )
        if state is None:
            state = CaseState(case_no=key, first_kind=rec.kind, first_received_at=received_at.isoformat())
            first = True
        else:
            if state.case_no != key:
                raise SupervisionError(
                    f"{rec.where()}: belongs to case {key}, but the state passed is case {state.case_no}"
                )
            state = state.copy()
            first = False

        subject = rec.subject_key()
        version = rec.version()
        seen = state.versions.get(subject)
        if version is not None and seen is not None and version < seen:
            # An older version arriving late is kept in the audit trail but does not overwrite.
            return state, []
        was_completed = state.completion is not None

        self._apply(state, rec, subject, received_at)
        if rec.findings:
            state.findings[subject] = [f"{f.get('field')}:{f.get('rule')}" for f in rec.findings]
        else:
            state.findings.pop(subject, None)  # a corrected version clears what the earlier one carried
        if version is not None:
            state.versions[subject] = max(version, seen or version)

        alerts = self._record_rules(state, rec, subject, received_at, first)
        if (
            rec.kind in _CASE_KINDS
            and was_completed
            and seen is not None
            and version is not None
            and version > seen
        ):
            alerts.append(self._changed_after_completion(state, rec, subject, seen, version, received_at))
        latest = received_at
        if state.last_received_at:
            latest = max(latest, datetime.fromisoformat(state.last_received_at))
        state.last_received_at = latest.isoformat()
        if judge_time:
            alerts.extend(self._time_rules(state, latest))
        fresh = self._fresh(state, alerts)
        state.raised.extend(alert["alert_id"] for alert in fresh)
        return state, fresh

    def on_tick(self, state: CaseState, now: datetime) -> list[dict[str, Any]]:
        """Alerts the passing of time raises for this case at ``now`` (not yet in ``state.raised``).

        Pure: the state is not modified. Persist ``state.with_raised(alerts)`` (or use ``tick``), or rely
        on the alert ids, which are the same on every evaluation.
        """
        return self._fresh(state, self._time_rules(state, to_china_time(now)))

    def tick(self, state: CaseState, now: datetime) -> tuple[CaseState, list[dict[str, Any]]]:
        """on_tick, returning also the state that remembers the alerts raised."""
        alerts = self.on_tick(state, now)
        return state.with_raised(alerts), alerts

    def clock(self, state: CaseState, as_of: datetime) -> ClockReading:
        """The case's clock at ``as_of``: due moment, days used and left, state."""
        return compute_clock(self._events(state), self.calendar, to_china_time(as_of), self._policy)

    def next_check_at(self, state: CaseState, now: datetime) -> datetime | None:
        """The first China-time midnight after ``now`` at which a tick would raise a new alert,
        or None when only a new record can change anything. Lets the pipeline tick only due cases."""
        now = to_china_time(now)
        today = now.date()
        horizon = self._horizon(state, now)
        if horizon is None:
            return None
        day = today + timedelta(days=1)
        while day <= horizon:
            moment = datetime.combine(day, datetime.min.time(), now.tzinfo)
            if self.on_tick(state, moment):
                return moment
            day += timedelta(days=1)
        return None

    # ------------------------------------------------------------------ folding records into state

    def _apply(self, state: CaseState, rec: _Record, subject: str, received_at: datetime) -> None:
        kind = rec.kind
        if kind == "case":
            submitted = rec.moment("submitted_at")
            state.submitted_at = submitted.isoformat() if submitted else state.submitted_at
            state.item_type = rec.get("item_type") or state.item_type
            state.case_department = rec.get("department") or state.case_department
            state.case_limit = rec.integer("limit")
            state.case_limit_unit = rec.unit("unit")
        elif kind == "acceptance":
            accepted_at = rec.moment("accepted_at", required=True)
            promised = rec.moment("promised_due_at")
            status = rec.get("status")
            state.acceptance = {
                "accepted_at": accepted_at.isoformat() if accepted_at else None,
                "status": str(status) if status is not None else None,
                "limit": rec.integer("limit"),
                "unit": rec.unit("unit"),
                "promised_due_at": promised.isoformat() if promised else None,
                "department": rec.get("department"),
                "received_at": received_at.isoformat(),
            }
        elif kind == "process_step":
            marker = self._suspension_marker(rec)
            if marker is not None:
                at = rec.moment("at") or rec.business_time()
                if at is None:
                    raise rec.fail(_f(kind, "at"), None, "a suspension step needs its time")
                state.suspension_marks[subject] = {"action": marker, "at": at.isoformat()}
        elif kind == "correction":
            notified = rec.moment("notified_at", required=True)
            received = rec.moment("received_at")
            state.corrections[subject] = {
                "notified_at": notified.isoformat() if notified else None,
                "received_at": received.isoformat() if received else None,
            }
        elif kind == "special_procedure":
            started = rec.moment("started_at", required=True)
            ended = rec.moment("ended_at")
            procedure_type = rec.get("type")
            state.special_procedures[subject] = {
                "type": str(procedure_type) if procedure_type is not None else None,
                "extension": str(procedure_type) in self.config.extension_procedure_types,
                "started_at": started.isoformat() if started else None,
                "ended_at": ended.isoformat() if ended else None,
                "limit": rec.integer("limit"),
                "unit": rec.unit("unit"),
            }
        elif kind == "completion":
            completed = rec.moment("completed_at", required=True)
            result = rec.get("result_code")
            state.completion = {
                "completed_at": completed.isoformat() if completed else None,
                "result_code": str(result) if result is not None else None,
                "department": rec.get("department"),
                "received_at": received_at.isoformat(),
            }
        elif kind == "approval_result":
            decision_no = str(rec.get("decision_no") or "")
            decided_on = rec.day("decided_on", required=True)
            state.approval_results[decision_no] = {
                "decided_on": decided_on.isoformat() if decided_on else None,
                "authority": rec.get("authority"),
                "received_at": received_at.isoformat(),
            }

    def _suspension_marker(self, rec: _Record) -> str | None:
        values = {str(v).strip() for v in (rec.get("action"), rec.get("step_name")) if v}
        if values & set(self.config.suspend_markers):
            return "suspend"
        if values & set(self.config.resume_markers):
            return "resume"
        return None

    # ------------------------------------------------------------------ state → clock events

    def _limit(self, state: CaseState) -> tuple[int | None, LimitUnit]:
        acceptance = state.acceptance or {}
        unit = LimitUnit(acceptance.get("unit") or state.case_limit_unit or LimitUnit.WORKING_DAYS.value)
        limit = acceptance.get("limit")
        if limit is None:
            limit = state.case_limit
        if limit is None and acceptance.get("promised_due_at") and acceptance.get("accepted_at"):
            # Only a promised completion moment was sent: recover the limit it implies.
            start = local_date(datetime.fromisoformat(acceptance["accepted_at"]))
            due = local_date(datetime.fromisoformat(acceptance["promised_due_at"]))
            if unit is LimitUnit.WORKING_DAYS:
                limit = max(self.calendar.working_days_between(start, due), 0)
            else:
                limit = max((due - start).days, 0)
        return limit, unit

    def _events(self, state: CaseState) -> list[ClockEvent]:
        events: list[ClockEvent] = []
        parse = datetime.fromisoformat
        acceptance = state.acceptance
        if acceptance and acceptance.get("accepted_at"):
            limit, unit = self._limit(state)
            status = acceptance.get("status")
            at = parse(acceptance["accepted_at"])
            if status in self.config.accepted_status_codes:
                events.append(ClockEvent(EventKind.ACCEPTED, at, limit, unit))
            elif status in self.config.awaiting_correction_status_codes:
                events.append(ClockEvent(EventKind.AWAITING_CORRECTION, at, limit, unit))
        for correction in state.corrections.values():
            events.append(ClockEvent(EventKind.CORRECTION_NOTIFIED, parse(correction["notified_at"])))
            if correction.get("received_at"):
                events.append(ClockEvent(EventKind.CORRECTION_RECEIVED, parse(correction["received_at"])))
        for mark in state.suspension_marks.values():
            kind = EventKind.SUSPENDED if mark["action"] == "suspend" else EventKind.RESUMED
            events.append(ClockEvent(kind, parse(mark["at"])))
        for key, procedure in state.special_procedures.items():
            unit = LimitUnit(procedure["unit"]) if procedure.get("unit") else None
            started = parse(procedure["started_at"])
            if procedure.get("extension"):
                events.append(ClockEvent(EventKind.EXTENDED, started, procedure.get("limit"), unit, ref=key))
                continue
            events.append(
                ClockEvent(EventKind.SPECIAL_STARTED, started, procedure.get("limit"), unit, ref=key)
            )
            if procedure.get("ended_at"):
                events.append(ClockEvent(EventKind.SPECIAL_ENDED, parse(procedure["ended_at"]), ref=key))
        if state.completion and state.completion.get("completed_at"):
            events.append(ClockEvent(EventKind.COMPLETED, parse(state.completion["completed_at"])))
        return events

    # ------------------------------------------------------------------ rules

    def _department(self, state: CaseState) -> str | None:
        for source in (state.completion, state.acceptance):
            if source and source.get("department"):
                return source["department"]
        return state.case_department

    def _record_rules(
        self, state: CaseState, rec: _Record, subject: str, received_at: datetime, first: bool
    ) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = []
        case_no = state.case_no
        title = _KIND_TITLES.get(rec.kind, rec.kind)

        business = rec.business_time()
        if rec.kind in self.config.backfill_kinds and business is not None:
            lag = received_at - business
            if lag > self.config.backfill_threshold:
                alerts.append(
                    make_alert(
                        "backfill_late_entry",
                        case_no=case_no,
                        raised_at=received_at,
                        department=self._responsible(state, rec),
                        description=(
                            f"办件 {case_no} 的{title}记录业务时间为 {_fmt_time(business)}，网关接收时间为 "
                            f"{_fmt_time(received_at)}，相隔 {_fmt_lag(lag)}，超过 {_fmt_lag(self.config.backfill_threshold)}，"
                            f"疑似事后补录。来源系统：{rec.system}，记录：{rec.source_id}。"
                        ),
                        subject_kind=rec.kind,
                        subject_key=subject,
                    )
                )

        has_case_no = bool(rec.data.get(FIELDS[rec.kind]["case_no"]))
        if first and rec.kind in ("completion", "approval_result") and has_case_no:
            alerts.append(
                make_alert(
                    "backfill_completed_on_first_sight",
                    case_no=case_no,
                    raised_at=received_at,
                    department=self._responsible(state, rec),
                    description=(
                        f"办件 {case_no} 首次出现在网关即为{title}记录，此前未收到申报、受理或办理记录，"
                        f"疑似办结后补录。来源系统：{rec.system}，记录：{rec.source_id}。"
                    ),
                    subject_kind=rec.kind,
                    subject_key=subject,
                )
            )

        if rec.kind in ("completion", "approval_result") and has_case_no:
            if rec.kind == "completion":
                happened = rec.moment("completed_at", required=True)
            else:
                decided = rec.day("decided_on", required=True)
                happened = end_of_day(decided) if decided else None
            accepted_at = (state.acceptance or {}).get("accepted_at")
            if happened is not None and (
                accepted_at is None or datetime.fromisoformat(accepted_at) > happened
            ):
                when = _fmt_time(happened) if rec.kind == "completion" else _fmt_date(happened.date())
                alerts.append(
                    make_alert(
                        "outside_system_no_acceptance",
                        case_no=case_no,
                        raised_at=received_at,
                        department=self._responsible(state, rec),
                        description=(
                            f"办件 {case_no} 于 {when} 作出{title}，但此前没有受理记录，疑似体外循环"
                            f"（系统外办理后录入）。来源系统：{rec.system}，记录：{rec.source_id}。"
                        ),
                        subject_kind=rec.kind,
                        subject_key=subject,
                    )
                )

        if rec.kind in _DECISION_KINDS:
            alerts.extend(self._disclosure_on_receipt(state, rec, subject, received_at))
        if rec.findings:
            alerts.append(self._data_quality(state, rec, subject, received_at))
        return alerts

    def _data_quality(self, state: CaseState, rec: _Record, subject: str, received_at: datetime) -> dict[str, Any]:
        """A record accepted with findings: supervisors see it once per record (values never in the text)."""
        shown = "；".join(
            f"{f.get('field')}（{f.get('rule')}）" for f in rec.findings[:5]
        ) + ("……" if len(rec.findings) > 5 else "")
        return make_alert(
            "data_quality_finding",
            case_no=state.case_no,
            raised_at=received_at,
            department=self._responsible(state, rec),
            description=(
                f"办件 {state.case_no} 的{_KIND_TITLES.get(rec.kind, rec.kind)}记录按配置带 {len(rec.findings)} 项"
                f"数据质量问题接收：{shown}。来源系统：{rec.system}，记录：{rec.source_id}。"
            ),
            subject_kind=rec.kind,
            subject_key=subject,
            distinct_subject=True,
        )

    def finding_counts(self, state: CaseState) -> dict[str, int]:
        """The case's data-quality findings by rule (what its current records were accepted with)."""
        counts: dict[str, int] = {}
        for found in state.findings.values():
            for entry in found:
                rule = entry.rsplit(":", 1)[-1]
                counts[rule] = counts.get(rule, 0) + 1
        return counts

    def _disclosure_on_receipt(
        self, state: CaseState, rec: _Record, subject: str, received_at: datetime
    ) -> list[dict[str, Any]]:
        """双公示: a licence or penalty decision reaching the gateway after its publication deadline."""
        if (
            rec.kind == "supervision_result"
            and rec.get("result_type") not in self.config.disclosure_supervision_result_types
        ):
            return []
        decided_on = rec.day("decided_on", required=True)
        if decided_on is None:
            return []
        due = self.calendar.add_working_days(decided_on, self.config.disclosure_working_days)
        if received_at.date() <= due:
            return []
        late = self.calendar.working_days_between(due, received_at.date())
        case_no = rec.get("case_no")
        about = (
            f"（办件 {case_no}，决定日期 {_fmt_date(decided_on)}）"
            if case_no
            else f"（决定日期 {_fmt_date(decided_on)}）"
        )
        return [
            make_alert(
                "disclosure_overdue",
                case_no=state.case_no,
                raised_at=received_at,
                department=self._responsible(state, rec),
                description=(
                    f"{_KIND_TITLES[rec.kind]} {rec.get('decision_no')}{about}应在 "
                    f"{self.config.disclosure_working_days} 个工作日内即 {_fmt_date(due)} 前公示，网关于 "
                    f"{_fmt_time(received_at)} 才收到，超期 {late} 个工作日。来源系统：{rec.system}。"
                ),
                due_at=end_of_day(due),
                subject_kind=rec.kind,
                subject_key=subject,
                # A penalty on a licensed case is a finding of its own, apart from the licence's.
                distinct_subject=rec.kind == "supervision_result",
            )
        ]

    def _responsible(self, state: CaseState, rec: _Record) -> str | None:
        if rec.kind in _DECISION_KINDS:
            return rec.get("authority") or self._department(state)
        return rec.get("department") or self._department(state)

    def _changed_after_completion(
        self, state: CaseState, rec: _Record, subject: str, old: int, new: int, received_at: datetime
    ) -> dict[str, Any]:
        completed_at = datetime.fromisoformat(state.completion["completed_at"]) if state.completion else None
        when = f"已于 {_fmt_time(completed_at)} 办结" if completed_at else "已办结"
        return make_alert(
            "changed_after_completion",
            case_no=state.case_no,
            raised_at=received_at,
            department=self._department(state),
            description=(
                f"办件 {state.case_no} {when}，其后收到{_KIND_TITLES.get(rec.kind, rec.kind)}记录的新版本"
                f"（版本 {old} → {new}）。来源系统：{rec.system}，记录：{rec.source_id}。"
            ),
            subject_kind=rec.kind,
            subject_key=subject,
            distinct_subject=True,
        )

    def _time_rules(self, state: CaseState, now: datetime) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = []
        case_no = state.case_no
        reading = self.clock(state, now)
        department = self._department(state)
        unit = reading.unit or LimitUnit.WORKING_DAYS

        if reading.due_date is not None and reading.limit is not None:
            limit_text = f"{reading.limit} 个{unit.label}" + (
                f"（含延长 {reading.extended_by} 个{unit.label}）" if reading.extended_by else ""
            )
            if reading.state in (ClockState.OVERDUE, ClockState.COMPLETED_LATE):
                over = -(reading.days_left or 0)
                if reading.state is ClockState.OVERDUE:
                    tail = f"已超期 {over} 个{unit.label}，尚未办结。"
                else:
                    tail = f"实际于 {_fmt_time(reading.completed_at)} 办结，超期 {over} 个{unit.label}。"  # type: ignore[arg-type]
                alerts.append(
                    make_alert(
                        "overdue_red",
                        case_no=case_no,
                        raised_at=now,
                        department=department,
                        description=f"办件 {case_no} 承诺时限 {limit_text}，应于 {_fmt_date(reading.due_date)} 前办结，{tail}",
                        due_at=reading.due_at,
                    )
                )
            elif reading.state is ClockState.RUNNING and reading.limit + reading.extended_by > 0:
                left = reading.days_left or 0
                share = reading.share_used or 0.0
                if left <= self.config.yellow_days_left or share >= self.config.yellow_share_used:
                    alerts.append(
                        make_alert(
                            "near_deadline_yellow",
                            case_no=case_no,
                            raised_at=now,
                            department=department,
                            description=(
                                f"办件 {case_no} 承诺时限 {limit_text}，应于 {_fmt_date(reading.due_date)} 前办结，"
                                f"剩余 {left} 个{unit.label}（已用 {share:.0%}），尚未办结。"
                            ),
                            due_at=reading.due_at,
                        )
                    )

        if not reading.completed and reading.state is not ClockState.NOT_STARTED:
            for stop in reading.stops:
                if stop.past_own_limit and stop.own_due_date is not None:
                    own_unit = stop.own_unit or LimitUnit.WORKING_DAYS
                    procedure = state.special_procedures.get(stop.ref or "", {})
                    alerts.append(
                        make_alert(
                            "special_procedure_overdue",
                            case_no=case_no,
                            raised_at=now,
                            department=department,
                            description=(
                                f"办件 {case_no} 的特别程序（种类 {procedure.get('type') or '未知'}）自 "
                                f"{_fmt_time(stop.started_at)} 开始，时限 {stop.own_limit} 个{own_unit.label}，"
                                f"已于 {_fmt_date(stop.own_due_date)} 届满，仍未结束；主时限已恢复计时。"
                            ),
                            due_at=end_of_day(stop.own_due_date),
                            subject_kind="special_procedure",
                            subject_key=stop.ref,
                            distinct_subject=True,
                        )
                    )

        answered = state.acceptance is not None or state.corrections or state.completion is not None
        if state.submitted_at and not answered:
            submitted = datetime.fromisoformat(state.submitted_at)
            due = self.calendar.add_working_days(local_date(submitted), self.config.acceptance_working_days)
            if now.date() > due:
                alerts.append(
                    make_alert(
                        "acceptance_overdue",
                        case_no=case_no,
                        raised_at=now,
                        department=state.case_department,
                        description=(
                            f"办件 {case_no} 于 {_fmt_time(submitted)} 申报，应在 {self.config.acceptance_working_days} "
                            f"个工作日内即 {_fmt_date(due)} 前作出受理决定，截至 {_fmt_time(now)} 仍无受理记录。"
                        ),
                        due_at=end_of_day(due),
                    )
                )

        due = self._disclosure_due(state)
        if due is not None and now.date() > due:
            completion = state.completion or {}
            completed_at = datetime.fromisoformat(completion["completed_at"])
            alerts.append(
                make_alert(
                    "disclosure_overdue",
                    case_no=case_no,
                    raised_at=now,
                    department=completion.get("department") or department,
                    description=(
                        f"许可事项办件 {case_no} 于 {_fmt_time(completed_at)} 办结（结果代码 {completion.get('result_code')}），"
                        f"许可决定应在 {self.config.disclosure_working_days} 个工作日内即 {_fmt_date(due)} 前公示，"
                        f"截至 {_fmt_time(now)} 网关仍未收到许可决定信息。"
                    ),
                    due_at=end_of_day(due),
                    subject_kind="completion",
                    subject_key=f"completion:{case_no}",
                )
            )
        return alerts

    def _disclosure_due(self, state: CaseState) -> date | None:
        """Disclosure deadline of a completed licence case whose approval result has not arrived."""
        completion = state.completion
        if not completion or state.approval_results or not self.config.disclosure_result_codes:
            return None
        if completion.get("result_code") not in self.config.disclosure_result_codes:
            return None
        if state.item_type not in self.config.disclosure_item_types:
            return None
        decided = local_date(datetime.fromisoformat(completion["completed_at"]))
        return self.calendar.add_working_days(decided, self.config.disclosure_working_days)

    def _horizon(self, state: CaseState, now: datetime) -> date | None:
        """Last day worth scanning in next_check_at: one past the furthest deadline still open."""
        candidates: list[date] = []
        reading = self.clock(state, now)
        if not reading.completed and reading.due_date is not None:
            candidates.append(reading.due_date)
        for stop in reading.stops:
            if stop.own_due_date is not None and stop.ended_at is None:
                candidates.append(stop.own_due_date)
        if state.submitted_at and state.acceptance is None:
            submitted = local_date(datetime.fromisoformat(state.submitted_at))
            candidates.append(self.calendar.add_working_days(submitted, self.config.acceptance_working_days))
        disclosure = self._disclosure_due(state)
        if disclosure is not None:
            candidates.append(disclosure)
        if not candidates:
            return None
        return max(candidates) + timedelta(days=1)

    def _fresh(self, state: CaseState, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Alerts not raised before and not disabled, each once."""
        seen = set(state.raised)
        fresh = []
        for alert in alerts:
            if alert["alert_id"] not in seen and alert["alert_type"] not in self.config.disabled_alert_types:
                seen.add(alert["alert_id"])
                fresh.append(alert)
        return fresh


def _fmt_lag(lag: timedelta) -> str:
    days, seconds = lag.days, lag.seconds
    if seconds == 0:
        return f"{days} 天"
    hours = seconds // 3600
    return f"{days} 天 {hours} 小时" if days else f"{hours} 小时"
