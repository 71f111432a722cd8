"""The mapping error users read: which file, line, record kind, field and rule, and the bad value."""

from __future__ import annotations

from typing import Any


class MappingError(Exception):
    """A mapping file is wrong (raised by ``load_mapping``) or a record cannot be rendered (``render``).

    Every part that is known is kept as an attribute and shown in the message:
    ``file:line: kind.field: rule: message (value …)``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        kind: str | None = None,
        field: str | None = None,
        rule: str | None = None,
        value: Any = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.kind = kind
        self.field = field
        self.rule = rule
        self.value = value
        super().__init__(self._text())

    def _text(self) -> str:
        parts = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.kind or self.field:
            parts.append(".".join(p for p in (self.kind, self.field) if p))
        if self.rule:
            parts.append(self.rule)
        text = ": ".join(parts + [self.message])
        if self.value is not None:
            shown = repr(self.value)
            text += f" (value {shown[:200]})"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "kind": self.kind,
            "field": self.field,
            "rule": self.rule,
            "value": None if self.value is None else str(self.value),
            "message": self.message,
        }
