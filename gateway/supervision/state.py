"""What the supervision engine remembers about one case between records: a JSON-serialisable CaseState
that the store keeps per case and hands back with the next record or tick."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["STATE_FORMAT", "CaseState", "CaseStateError"]

STATE_FORMAT = 1
"""Version of the serialised shape; from_dict refuses other versions instead of misreading them."""


class CaseStateError(ValueError):
    """A stored case state cannot be read back."""


@dataclass
class CaseState:
    """Facts the rules need about one case, all as JSON types (times are ISO 8601 strings with offset).

    ``case_no`` is the case key: the 申办流水号, or the decision number for an approval result that
    names no case.
    """

    case_no: str
    first_kind: str
    first_received_at: str
    # Latest receipt time seen: time rules on a record never look earlier than this, so a record
    # replayed with its original receipt time cannot raise cards the case has already moved past.
    last_received_at: str | None = None
    # From the case record (办件).
    submitted_at: str | None = None
    item_type: str | None = None
    case_department: str | None = None
    case_limit: int | None = None
    case_limit_unit: str | None = None
    # The current acceptance (受理) and completion (办结); later versions replace them.
    acceptance: dict[str, Any] | None = None
    completion: dict[str, Any] | None = None
    # Keyed by the record's subject key, so a new version of the same record updates its entry.
    corrections: dict[str, dict[str, Any]] = field(default_factory=dict)
    suspension_marks: dict[str, dict[str, Any]] = field(default_factory=dict)
    special_procedures: dict[str, dict[str, Any]] = field(default_factory=dict)
    approval_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Highest version seen per subject key: older versions arriving late do not overwrite.
    versions: dict[str, int] = field(default_factory=dict)
    # Ids of alerts already raised for this case, so a re-evaluation does not raise them again.
    raised: list[str] = field(default_factory=list)
    # Data-quality findings the case's records were accepted with (on_invalid), as "field:rule" per
    # subject key; a later version of a record replaces its entry, so each finding counts once.
    findings: dict[str, list[str]] = field(default_factory=dict)

    def finding_count(self) -> int:
        """How many data-quality findings the case's current records carry."""
        return sum(len(found) for found in self.findings.values())

    def to_dict(self) -> dict[str, Any]:
        """A deep copy as plain JSON types, tagged with the state format."""
        return {"format": STATE_FORMAT, **copy.deepcopy(asdict(self))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseState:
        """Read back what to_dict produced; unknown formats and keys are errors, not guesses."""
        if not isinstance(data, dict):
            raise CaseStateError(f"case state must be a JSON object, got {type(data).__name__}")
        body = dict(data)
        fmt = body.pop("format", None)
        case = body.get("case_no", "?")
        if fmt != STATE_FORMAT:
            raise CaseStateError(
                f"case {case}: supervision state format {fmt!r} is not {STATE_FORMAT}; re-run supervision"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise CaseStateError(f"case {case}: unknown key(s) {unknown} in stored supervision state")
        missing = sorted(k for k in ("case_no", "first_kind", "first_received_at") if k not in body)
        if missing:
            raise CaseStateError(f"case {case}: stored supervision state lacks {missing}")
        return cls(**copy.deepcopy(body))

    def copy(self) -> CaseState:
        return CaseState.from_dict(self.to_dict())

    def with_raised(self, alerts: list[dict[str, Any]]) -> CaseState:
        """A copy that remembers ``alerts`` as raised (use after persisting on_tick's alerts)."""
        new = self.copy()
        for alert in alerts:
            if alert["alert_id"] not in new.raised:
                new.raised.append(alert["alert_id"])
        return new
