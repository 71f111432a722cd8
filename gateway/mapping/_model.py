"""What an inbound mapping produces for one payload: one :class:`Mapped` per output record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.schema import FieldError


@dataclass(slots=True)
class Mapped:
    """One record mapped from a payload.

    ``data`` holds the record's fields in canonical form (what could be mapped, even
    when there are errors, so that a finding can be accepted where configuration
    allows; None only when no output applied at all).  ``original`` holds the raw
    values of coded fields before their code table translated them.  Non-empty
    ``errors`` means the caller quarantines this record.  ``findings`` are field
    errors the mapping's on_invalid policy accepts: the record is stored and carries
    them (``findings`` in its stored body); they are never set beside ``errors``.
    """

    kind: str
    data: dict[str, Any] | None
    original: dict[str, Any] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)
    findings: list[FieldError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


MappedRecord = Mapped
