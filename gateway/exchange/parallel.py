"""并联审批: the lead department accepts once, every department concerned gets the case at once, each answers
within its own limit, and the hall gets one combined result when all have answered.

Pure logic over plain rows (``exchange_parallel`` and ``exchange_parallel_departments``); the
follower reads and writes them. Limits count on the working-day calendar of electronic
supervision: the day of acceptance is not counted, and a limit of N working days ends at the
end of the Nth working day after it (行政许可法 第八十二条).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from gateway.exchange.config import ParallelDepartment, ParallelScheme
from gateway.supervision.calendar import WorkCalendar

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
ANSWERS = ("pass", "return")  # a process step with one of these actions is a department's opinion
SYSTEM = "exchange"  # the source the combined result carries
STEP_CODE = "2"  # 审核
STEP_NAME = "并联审批意见汇总"
_ACTION_WORDS = {"pass": "同意", "return": "退回"}


def scheme_for(schemes: Sequence[ParallelScheme], item_code: str | None) -> ParallelScheme | None:
    """The first scheme whose 事项编码 prefixes cover ``item_code``."""
    if not item_code:
        return None
    for scheme in schemes:
        if item_code.startswith(tuple(scheme.items)):
            return scheme
    return None


def local(moment: datetime) -> datetime:
    return moment.astimezone(CHINA) if moment.tzinfo is not None else moment.replace(tzinfo=CHINA)


def due_at(calendar: WorkCalendar, accepted: datetime, department: ParallelDepartment) -> datetime:
    """The end of the department's limit: the end of the Nth working (or natural) day after the acceptance day."""
    day: date = local(accepted).date()
    last = calendar.add_working_days(day, department.time_limit) if department.unit == "G" \
        else day + timedelta(days=department.time_limit)
    return datetime.combine(last, time(23, 59, 59), CHINA)


def start(scheme: ParallelScheme, case_no: str, accepted: datetime, lead: str, calendar: WorkCalendar,
          now: datetime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The rows of a scheme started by an acceptance: the case and one row per department."""
    departments = [{
        "case_no": case_no, "department": d.name, "system": d.system, "sink": d.out,
        "due_at": due_at(calendar, accepted, d).isoformat(), "answered_at": None, "action": None, "opinion": None,
        "record_id": None, "late_alert": None} for d in scheme.departments]
    row = {"case_no": case_no, "scheme": scheme.name, "lead": lead, "accepted_at": local(accepted).isoformat(),
           "dispatched_at": now.isoformat(timespec="milliseconds"), "state": "open", "completed_at": None,
           "result": None, "result_key": None, "next_check": None}
    row["next_check"] = next_check(departments)
    return row, departments


def next_check(departments: Sequence[Mapping[str, Any]]) -> float | None:
    """When the next department that has neither answered nor been reported late falls due (unix time)."""
    pending = [datetime.fromisoformat(d["due_at"]).timestamp() + 1.0 for d in departments
               if not d.get("answered_at") and not d.get("late_alert")]
    return min(pending) if pending else None


def late(departments: Sequence[Mapping[str, Any]], now: datetime) -> list[Mapping[str, Any]]:
    """Departments past their limit without an opinion and not yet reported."""
    return [d for d in departments if not d.get("answered_at") and not d.get("late_alert")
            and datetime.fromisoformat(d["due_at"]) < now]


def combined(scheme: ParallelScheme, case_no: str, item_code: str | None,
             departments: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The combined result (限时归口出件) as a process_step record of the common schema.

    Its key is made of the case and the time of the last opinion, so it is the same record
    however often it is made: the store recognises a repeat.
    """
    action = "return" if any(d.get("action") == "return" for d in departments) else "pass"
    handled = max(str(d["answered_at"]) for d in departments)
    opinions = "；".join(f"{d['department']}：{_ACTION_WORDS.get(str(d.get('action')), d.get('action'))}"
                        + (f"（{d['opinion']}）" if d.get("opinion") else "")
                        + ("，逾期" if d.get("late_alert") or str(d["answered_at"]) > str(d["due_at"]) else "")
                        for d in departments)
    data: dict[str, Any] = {
        "case_no": case_no, "step_code": STEP_CODE, "step_name": STEP_NAME,
        "department_name": scheme.lead_department or scheme.name, "handler_name": "交换网关",
        "opinion": f"并联审批（{scheme.name}）各部门意见：{opinions}"[:2000], "handled_at": handled, "action": action,
        "version": 1,
    }
    if item_code:
        data["item_code"] = item_code
    return data


def describe_late(scheme: ParallelScheme, case_no: str, department: Mapping[str, Any]) -> str:
    due = datetime.fromisoformat(department["due_at"])
    return (f"并联审批（{scheme.name}）办件 {case_no}：{department['department']} 未在时限内反馈意见"
            f"（时限至 {due:%Y-%m-%d %H:%M}，经 {department['system']} 反馈）")
