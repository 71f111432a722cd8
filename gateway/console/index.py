"""The console's case and alert index rows, built from the records the supervision follower folds.

Pure functions: the follower (gateway/pipeline/supervise.py) hands each batch of stored records
and the case states after folding; what comes back is upserted by gateway/store/cases.py in the
same transaction as the states and the watermark. Fields a record does not carry stay as they
were (the upsert keeps the stored value), flags only rise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.supervision.alerts import ALERT_TYPES

_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
WARNING_RANK = {"yellow": 1, "red": 2}
# Alert types that mark a case as overdue, back-filled or handled outside the system.
OVERDUE_TYPES = frozenset({"overdue_red"})
BACKFILL_TYPES = frozenset({"backfill_late_entry", "backfill_completed_on_first_sight"})
OUTSIDE_TYPES = frozenset({"outside_system_no_acceptance"})
# Alerts about the gateway's own work rather than the handling of the case: listed with the case and
# on the alert board, but they give the case no red or yellow card (a refused delivery is not the
# hall's lateness).
OPERATIONAL_TYPES = frozenset({"delivery_dead_letter", "audit_integrity", "data_quality_finding"})
# 统一社会信用代码: 18 characters over 0-9A-Z without I, O, S, V, Z (GB 32100).
_CREDIT_CODE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{18}$")
_PERSON_DOCUMENTS = frozenset({"111", "414", "516", "511", "553"})
_ACCEPTANCE_STATUS = {"1": "accepted", "2": "refused", "3": "correction", "4": "refused"}
STATUSES = ("received", "accepted", "correction", "refused", "completed")
"""Case statuses as the index keeps them: 已申报, 已受理, 补齐补正, 不予受理, 已办结."""

CASE_COLUMNS = (
    "case_no", "item_code", "item_name", "applicant_name", "applicant_type", "applicant_id_type",
    "applicant_credit_code", "region_code", "department", "status", "clock", "warning", "overdue", "backfilled",
    "outside_system", "alerts", "submitted_at", "accepted_at", "due_at", "completed_at", "on_time", "license_no",
    "received_month", "completed_month", "first_received_at", "last_received_at", "records",
)
ALERT_COLUMNS = ("alert_id", "record_id", "case_no", "alert_type", "severity", "raised_at", "department",
                 "description")


@dataclass
class IndexBatch:
    """What one follower batch changes in the index: case rows, alert rows, last contact per system."""

    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    contacts: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # system -> (at, record id, count)

    def __bool__(self) -> bool:
        return bool(self.cases or self.alerts or self.contacts)


def _text(value: Any) -> str | None:
    """A plain value as text; encrypted fields ({"$enc": …}) and structures are not indexed."""
    if value is None or isinstance(value, dict | list) or value == "":
        return None
    return str(value)


def month_of(moment: str | None) -> str | None:
    """YYYY-MM in China time of an ISO 8601 moment (a date without a zone is China time already)."""
    if not moment:
        return None
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return moment[:7] if re.match(r"^\d{4}-\d{2}", moment) else None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(_CHINA)
    return f"{parsed.year:04d}-{parsed.month:02d}"


def _credit_code(data: Mapping[str, Any]) -> str | None:
    """The applicant's 统一社会信用代码 when the applicant is an organisation (a person's ID is never indexed)."""
    if str(data.get("applicant_type") or "") == "1" or str(data.get("applicant_id_type") or "") in _PERSON_DOCUMENTS:
        return None
    value = _text(data.get("applicant_id_no"))
    return value.upper() if value is not None and _CREDIT_CODE.match(value.upper()) else None


def _blank_case(case_no: str, received_at: str) -> dict[str, Any]:
    row = dict.fromkeys(CASE_COLUMNS)
    row.update(case_no=case_no, status="received", warning=0, overdue=0, backfilled=0, outside_system=0, alerts=0,
               records=0, first_received_at=received_at, last_received_at=received_at,
               received_month=month_of(received_at))
    return row


def fold_record(batch: IndexBatch, record_id: int, received_at: str, record: Mapping[str, Any],
                case_key: str | None) -> None:
    """Add what one stored record says to ``batch`` (case fields, an alert, the system's last contact)."""
    system = str(record.get("provenance", {}).get("source_system") or "")
    kind = record.get("kind")
    data = record.get("data") or {}
    if system and kind != "supervision_alert" and system not in ("supervision", "audit"):
        _at, _rid, count = batch.contacts.get(system, ("", 0, 0))
        batch.contacts[system] = (received_at, record_id, count + 1)
    if kind == "supervision_alert":
        _fold_alert(batch, record_id, received_at, data)
        return
    if case_key is None or kind in ("evaluation", "audit_seal"):
        return
    row = batch.cases.get(case_key) or _blank_case(case_key, received_at)
    batch.cases[case_key] = row
    row["last_received_at"] = max(row["last_received_at"], received_at)
    row["first_received_at"] = min(row["first_received_at"], received_at)
    row["records"] += 1
    row["item_code"] = _text(data.get("item_code")) or row["item_code"]
    if kind == "case":
        for column in ("item_name", "applicant_name", "applicant_type", "applicant_id_type", "region_code"):
            row[column] = _text(data.get(column)) or row[column]
        row["applicant_credit_code"] = _credit_code(data) or row["applicant_credit_code"]
        row["department"] = _text(data.get("department_name")) or row["department"]
    elif kind in ("approval_result", "supervision_result"):
        if kind == "approval_result":
            row["license_no"] = _text(data.get("license_no")) or row["license_no"]
        credit = _text(data.get("counterpart_credit_code"))
        if credit is not None and data.get("counterpart_category") not in ("自然人",) and kind == "approval_result":
            row["applicant_credit_code"] = row["applicant_credit_code"] or credit
    elif kind == "completion":
        row["license_no"] = _text(data.get("license_no")) or row["license_no"]
    if kind in ("acceptance", "completion") and not row["department"]:
        row["department"] = _text(data.get("department_name"))


def _fold_alert(batch: IndexBatch, record_id: int, received_at: str, data: Mapping[str, Any]) -> None:
    alert_id = _text(data.get("alert_id"))
    case_no = _text(data.get("case_no"))
    alert_type = _text(data.get("alert_type")) or "unknown"
    known = ALERT_TYPES.get(alert_type)
    severity = _text(data.get("severity")) or (known.severity if known is not None else "info")
    if alert_id is None:
        return
    batch.alerts.append({
        "alert_id": alert_id, "record_id": record_id, "case_no": case_no or "", "alert_type": alert_type,
        "severity": severity, "raised_at": _text(data.get("raised_at")) or received_at,
        "department": _text(data.get("department")), "description": _text(data.get("description")),
    })
    if case_no is None:
        return
    row = batch.cases.get(case_no)
    if row is None:
        # An alert alone says nothing about the case's fields: an update that only raises its flags.
        row = _blank_case(case_no, received_at)
        row["status"] = None
        row["records"] = 0
        row["_alert_only"] = True
        batch.cases[case_no] = row
    row["alerts"] += 1
    if alert_type not in OPERATIONAL_TYPES:
        row["warning"] = max(row["warning"], WARNING_RANK.get(severity, 0))
    row["overdue"] = max(row["overdue"], int(alert_type in OVERDUE_TYPES))
    row["backfilled"] = max(row["backfilled"], int(alert_type in BACKFILL_TYPES))
    row["outside_system"] = max(row["outside_system"], int(alert_type in OUTSIDE_TYPES))


def apply_state(row: dict[str, Any], state: Any, reading: Any | None) -> None:
    """Status, times, due date and on-time verdict from the case's supervision state (after folding)."""
    row.pop("_alert_only", None)
    acceptance = state.acceptance or {}
    completion = state.completion or {}
    row["submitted_at"] = state.submitted_at or row["submitted_at"]
    row["accepted_at"] = acceptance.get("accepted_at") or row["accepted_at"]
    if not row["department"]:
        row["department"] = state.case_department or acceptance.get("department") or completion.get("department")
    if completion.get("completed_at"):
        row["status"] = "completed"
        row["completed_at"] = completion["completed_at"]
        row["completed_month"] = month_of(completion["completed_at"])
    elif acceptance:
        row["status"] = _ACCEPTANCE_STATUS.get(str(acceptance.get("status") or "1"), "accepted")
    else:
        row["status"] = "received"
    if state.submitted_at:
        row["received_month"] = month_of(state.submitted_at) or row["received_month"]
    if reading is not None:
        clock = str(getattr(reading.state, "value", reading.state))
        row["clock"] = clock
        due = reading.due_at
        row["due_at"] = due.isoformat() if due is not None else row["due_at"]
        if clock == "completed_on_time":
            row["on_time"] = 1
        elif clock == "completed_late":
            row["on_time"] = 0
            row["overdue"] = 1
        elif clock == "overdue":
            row["overdue"] = 1


def index_batch(rows: Iterable[tuple[int, str, dict[str, Any], str | None]], states: Mapping[str, Any],
                clock: Any | None, now: datetime) -> IndexBatch:
    """The index changes for stored records ``(id, receipt_time, record, case key)`` and the states after them.

    ``clock(state, as_of)`` reads a case's supervision clock (SupervisionEngine.clock), or None. It is
    read as of the case's newest record (or its completion), not ``now``: what the records said when
    they arrived. A case that runs late afterwards gets its red card from the rules' clock tick, as
    an alert record that raises the index's flags in turn; reading as of now would walk the calendar
    from the acceptance of every old case to today.
    """
    batch = IndexBatch()
    for record_id, received_at, record, key in rows:
        fold_record(batch, record_id, received_at, record, key)
    for key, row in batch.cases.items():
        state = states.get(key)
        if state is None:
            continue
        reading = None
        if clock is not None:
            try:
                reading = clock(state, _as_of(row, state, now))
            except Exception:  # a case whose clock cannot be read is still indexed, without its due date
                reading = None
        apply_state(row, state, reading)
    return batch


def _as_of(row: Mapping[str, Any], state: Any, now: datetime) -> datetime:
    moments = [row["last_received_at"], (state.completion or {}).get("completed_at")]
    parsed = []
    for moment in moments:
        try:
            value = datetime.fromisoformat(moment) if moment else None
        except ValueError:
            value = None
        if value is not None:
            parsed.append(value if value.tzinfo is not None else value.replace(tzinfo=_CHINA))
    return min(max(parsed), now) if parsed else now
