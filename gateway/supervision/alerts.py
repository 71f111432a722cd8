"""The gateway's electronic-supervision alert types (电子监察预警类型) and the alert record they produce.

The codes, labels and severities match gateway/schema/codetables/supervision_alert_type.yaml.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["ALERT_TYPES", "AlertType", "alert_id", "make_alert"]


@dataclass(frozen=True)
class AlertType:
    """One alert type: its code, the rule that raises it, its severity and its Chinese label."""

    code: str
    rule: str
    severity: str  # red | yellow | info
    label: str


ALERT_TYPES: dict[str, AlertType] = {
    t.code: t
    for t in (
        AlertType("near_deadline_yellow", "promised_time_limit", "yellow", "黄牌：临近时限"),
        AlertType("overdue_red", "promised_time_limit", "red", "红牌：超期未办结"),
        AlertType("acceptance_overdue", "acceptance_time_limit", "yellow", "受理超期"),
        AlertType("special_procedure_overdue", "special_procedure_time_limit", "yellow", "特别程序超时"),
        AlertType("backfill_late_entry", "backfill_business_time", "yellow", "补录：业务时间远早于接收时间"),
        AlertType(
            "backfill_completed_on_first_sight", "backfill_first_sight", "yellow", "补录：首次出现即已办结"
        ),
        AlertType("outside_system_no_acceptance", "outside_system", "red", "体外循环：无受理即办结"),
        AlertType("disclosure_overdue", "credit_disclosure", "yellow", "双公示超期"),
        AlertType("changed_after_completion", "change_after_completion", "yellow", "办结后修改"),
        AlertType("audit_integrity", "audit_integrity", "red", "审计链完整性受损：封印已拒签"),
        AlertType("data_quality_finding", "data_quality", "info", "数据质量：带问题接收"),
        AlertType("delivery_dead_letter", "delivery_dead_letter", "red", "投递死信：对方拒收或长期不可达"),
        # the two-way exchange (gateway.exchange)
        AlertType("licence_suspended", "licence_effect", "yellow", "监管结果：许可已暂扣"),
        AlertType("licence_revoked", "licence_effect", "red", "监管结果：许可已撤销或吊销"),
        AlertType("version_conflict", "version_conflict", "yellow", "版本冲突：同一版本内容不同"),
        AlertType("parallel_late", "parallel_time_limit", "red", "并联审批：部门逾期未反馈"),
        AlertType("feed_missing", "watchdog_expected_by", "yellow", "对接系统：未按时收到数据"),
        AlertType("no_contact", "watchdog_silence", "red", "对接系统：长时间无联络"),
        AlertType("watchdog_cleared", "watchdog_cleared", "info", "对接系统：已恢复"),
        AlertType("reconciliation_gap", "reconciliation", "yellow", "对账：发现未修复的差异"),
    )
}


def alert_id(case_no: str, rule: str, severity: str, subject_key: str = "") -> str:
    """Deterministic alert id: the same finding on the same case always gets the same id.

    ``subject_key`` tells apart findings of one rule about different records of a case (two special
    procedures, two changed records); rules with one finding per case leave it empty.
    """
    material = json.dumps([case_no, rule, severity, subject_key], ensure_ascii=False, separators=(",", ":"))
    return "sa-" + hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


def make_alert(
    alert_type: str,
    *,
    case_no: str,
    raised_at: datetime,
    description: str,
    department: str | None = None,
    due_at: datetime | None = None,
    subject_kind: str | None = None,
    subject_key: str | None = None,
    distinct_subject: bool = False,
) -> dict[str, Any]:
    """The data of a ``supervision_alert`` record (field names as in the common schema)."""
    kind = ALERT_TYPES[alert_type]
    return {
        "alert_id": alert_id(
            case_no, kind.rule, kind.severity, (subject_key or "") if distinct_subject else ""
        ),
        "case_no": case_no,
        "rule": kind.rule,
        "alert_type": kind.code,
        "severity": kind.severity,
        "raised_at": raised_at.isoformat(),
        "department": department,
        "description": description,
        "due_at": due_at.isoformat() if due_at else None,
        "subject_kind": subject_kind,
        "subject_key": subject_key,
    }
