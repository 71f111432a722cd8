"""Thresholds and counting choices of the electronic-supervision rules, validated once (the
``[supervision]`` section of gateway.toml maps onto SupervisionConfig field by field)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.durations import TimedeltaSetting
from gateway.supervision.alerts import ALERT_TYPES
from gateway.supervision.clock import ClockPolicy, CorrectionPolicy

__all__ = ["SupervisionConfig"]


class SupervisionConfig(BaseModel):
    """Every threshold the rules use, with the defaults DOMAIN.md describes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Yellow card (黄牌): raised when either condition holds while the clock runs. Days are counted
    # in the case's own unit (working days for G limits, natural days for Z limits).
    yellow_days_left: int = Field(
        1, ge=0, description="raise yellow when this many counting days or fewer are left"
    )
    yellow_share_used: float = Field(
        0.8, gt=0, le=1, description="raise yellow when this share of the limit is used"
    )

    # Back-filling (补录): a record whose business time is this much earlier than its receipt.
    backfill_threshold: TimedeltaSetting = Field(
        timedelta(days=3), description='a duration such as "3d" or "36h" (ISO 8601 P3D, deprecated, still works)'
    )
    backfill_kinds: tuple[str, ...] = (
        "case",
        "acceptance",
        "process_step",
        "correction",
        "special_procedure",
        "completion",
    )

    # 行政许可法 第三十二条: decide on acceptance within 5 working days of the application.
    acceptance_working_days: int = Field(5, ge=0)

    # 双公示: licence and penalty decisions published within 7 working days of the decision date. The tick also
    # expects an approval result for completed licence cases (事项类型 01 许可) whose result is a decision.
    disclosure_working_days: int = Field(7, ge=0)
    disclosure_item_types: tuple[str, ...] = ("01",)
    disclosure_result_codes: tuple[str, ...] = ("0", "6")
    # Supervision results that are 行政处罚 decisions under 双公示 (暂扣 and 吊销 are penalties too).
    disclosure_supervision_result_types: tuple[str, ...] = ("penalty", "revocation", "suspension")

    correction_after_acceptance: CorrectionPolicy = CorrectionPolicy.RESUME
    natural_due_rolls_to_workday: bool = False

    # Acceptance status codes (受理状态 SLZTDM): 1 受理 starts the clock; 3 补齐补正 starts it when the
    # material arrives; any other code (2 不受理, 4 不予受理) means there is no clock to watch.
    accepted_status_codes: tuple[str, ...] = ("1",)
    awaiting_correction_status_codes: tuple[str, ...] = ("3",)

    # 特别程序种类 that extend the limit (A 延长审批); every other type stops the clock.
    extension_procedure_types: tuple[str, ...] = ("A",)

    # A process step is a suspension (挂起) or a resumption (恢复) when its action or step name is one of
    # these; the common schema's action enum has no such values yet, so step names carry them today.
    suspend_markers: tuple[str, ...] = ("挂起", "暂停计时", "suspend")
    resume_markers: tuple[str, ...] = ("恢复", "解挂", "恢复计时", "resume")

    # Alert types to leave out entirely (codes of the supervision_alert_type table).
    disabled_alert_types: tuple[str, ...] = ()

    @field_validator("backfill_threshold")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("backfill_threshold must be longer than zero")
        return value

    @field_validator("disabled_alert_types")
    @classmethod
    def _known_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(ALERT_TYPES))
        if unknown:
            raise ValueError(f"unknown alert type(s) {unknown}; known: {sorted(ALERT_TYPES)}")
        return value

    def clock_policy(self) -> ClockPolicy:
        return ClockPolicy(
            correction_after_acceptance=self.correction_after_acceptance,
            natural_due_rolls_to_workday=self.natural_due_rolls_to_workday,
        )
