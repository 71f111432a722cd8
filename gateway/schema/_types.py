"""The building blocks of the common schema: field specifications, record kinds and field errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gateway.schema._text import escape_unprintable
from gateway.schema.identifiers import RULE_MESSAGES, mask

FIELD_TYPES = frozenset(
    {"str", "int", "decimal", "datetime", "date", "code", "credit_code", "id_number", "region_code", "license_id", "enum"}
)
"""The closed set of field types.

``decimal`` values are canonical decimal strings ("1250.00"), so that money never
passes through a float; ``datetime`` values are ISO 8601 strings with offset
("2026-09-29T10:00:00+08:00"); ``date`` values are "2026-09-29"; ``code`` values
are codes of the field's code table; the identifier types hold normalised
identifiers (upper-case, half-width, no spaces).
"""

# Identifier types: their lengths are fixed by their standards, not per field.
_DEFAULT_MAX = {"credit_code": 18, "region_code": 12, "id_number": 64, "license_id": 200, "code": 64, "enum": 64}

INT64_MAX = 2**63 - 1
"""Whole numbers are stored as signed 64-bit integers (SQLite INTEGER, PostgreSQL bigint)."""

IDENTIFIER_TYPES = frozenset({"credit_code", "id_number", "region_code", "license_id", "code", "enum"})
"""Types whose values are always identifiers (see FieldSpec.is_identifier)."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a record kind.

    ``title`` is the Chinese term, ``wire`` the short code provincial exchange XML
    uses for it (None where no short code is known and the field is the
    gateway's own).  ``personal`` fields are masked wherever they appear in errors.
    An ``id_number`` field names the field holding its 证件类型 in ``id_type_field``;
    the number is checked by that type: 111 by GB 11643, 821 (营业执照) as a
    统一社会信用代码, 811 as a 组织机构代码.
    """

    name: str
    type: str
    title: str
    wire: str | None = None
    required: bool = False
    max_length: int | None = None
    code_table: str | None = None
    enum: tuple[str, ...] = ()
    multiple: bool = False  # code fields only: several codes joined by ";"
    personal: bool = False
    id_type_field: str | None = None
    description: str = ""
    identifier: bool = False
    minimum: int | None = None
    maximum: int | None = None

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"field {self.name}: unknown type {self.type!r}")
        if (self.type == "code") != (self.code_table is not None):
            raise ValueError(f"field {self.name}: a code field needs code_table, and only a code field has one")
        if (self.type == "enum") != bool(self.enum):
            raise ValueError(f"field {self.name}: an enum field needs enum values, and only an enum field has them")
        if self.multiple and self.type != "code":
            raise ValueError(f"field {self.name}: only code fields may hold several values")
        if self.max_length is None and self.type in _DEFAULT_MAX:
            object.__setattr__(self, "max_length", _DEFAULT_MAX[self.type])
        if self.type == "int":
            if self.minimum is None:
                object.__setattr__(self, "minimum", 0)
            if self.maximum is None:
                object.__setattr__(self, "maximum", INT64_MAX)
        elif self.minimum is not None or self.maximum is not None:
            raise ValueError(f"field {self.name}: only int fields have a minimum or maximum")

    @property
    def is_identifier(self) -> bool:
        """True for business keys, codes and identifiers: stricter characters, see gateway.schema._text."""
        return self.identifier or self.type in IDENTIFIER_TYPES

    @property
    def doc(self) -> str:
        """One line for humans: 申办流水号 (SBLSH), required, str ≤ 64."""
        parts = [f"{self.title} ({self.wire})" if self.wire else self.title]
        parts.append("required" if self.required else "optional")
        kind = self.type
        if self.code_table:
            kind += f" [{self.code_table}]"
        if self.type == "str" and self.max_length:
            kind += f" ≤ {self.max_length}"
        parts.append(kind)
        return ", ".join(parts)


@dataclass(slots=True)
class FieldError:
    """One data-quality finding on one field of one record: what users read and quarantine keeps.

    ``value`` is already masked for personal fields, so an error can be logged and shown.
    ``where`` names the occurrence of a repeated section the record came from
    ("SPGUOCHENG #2"), for records a mapping's ``each:`` made.
    """

    field: str
    rule: str
    value: str
    message: str
    kind: str | None = None
    where: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.where is None:
            del out["where"]
        return out

    def __str__(self) -> str:
        where = f"{self.kind}.{self.field}" if self.kind else self.field
        if self.where:
            where = f"{self.where}: {where}"
        shown = f" (value {self.value!r})" if self.value else ""
        return f"{where}: {self.rule}: {self.message}{shown}"


GENERIC_MESSAGES: dict[str, str] = {
    "required": "is required and missing or empty",
    "max_length": "is longer than allowed",
    "type": "has the wrong type",
    "int_format": "is not a whole number",
    "int_range": "is outside the allowed range",
    "control_char": "contains a control character",
    "bidi_char": "contains a bidirectional control character",
    "invisible_char": "contains an invisible (zero-width or format) character",
    "invalid_char": "contains a code point that is not a character it may hold",
    "decimal_format": "is not a decimal number",
    "datetime_format": "is not a date and time in an accepted format",
    "date_format": "is not a date in an accepted format",
    "code_unknown": "is not in the code table used to translate it",
    "code_invalid": "is not a code of the field's code table",
    "enum_invalid": "is not one of the allowed values",
    "unknown_field": "is not a field of this record kind",
    "value_type": "is a structure where a single value is expected",
    "path_ambiguous": "the path reaches a repeated element; say which one with an index",
    "no_output": "no output of the mapping applies to this item",
    "internal": "could not be mapped because of an unexpected error",
}


def error_message(spec: FieldSpec | None, rule: str, detail: str | None = None) -> str:
    base = RULE_MESSAGES.get(rule) or GENERIC_MESSAGES.get(rule) or rule
    if spec is not None:
        if rule == "max_length" and spec.max_length:
            base = f"is longer than {spec.max_length} characters"
        elif rule == "code_invalid" and spec.code_table:
            base = f"is not a code of table {spec.code_table}"
        elif rule == "enum_invalid":
            base = f"is not one of {', '.join(spec.enum)}"
        elif rule == "int_range" and spec.minimum is not None:
            base = f"must be between {spec.minimum} and {spec.maximum}"
        base = f"{spec.title}: {base}"
    return f"{base}: {detail}" if detail else base


def show_value(value: Any, personal: bool) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 200:  # a wrong path can pull in a whole document; keep errors readable
        text = text[:200] + "…"
    # masked first (it counts characters), then made safe to print: no control or bidi character reaches a reader
    return escape_unprintable(mask(text) if personal else text)


def make_error(kind: str | None, spec: FieldSpec, rule: str, value: Any, detail: str | None = None) -> FieldError:
    """A FieldError for ``spec`` (value masked when the field is personal)."""
    return FieldError(spec.name, rule, show_value(value, spec.personal), error_message(spec, rule, detail), kind)


class RecordKind:
    """One kind of record of the common schema (case, acceptance, completion …)."""

    def __init__(
        self,
        name: str,
        title: str,
        fields: tuple[FieldSpec, ...],
        key_fields: tuple[str, ...],
        time_field: str,
        version_field: str | None = None,
        order_field: str = "case_no",
        description: str = "",
    ) -> None:
        self.name = name
        self.title = title
        self.fields = fields
        self.key_fields = key_fields
        self.time_field = time_field
        self.version_field = version_field
        self.order_field = order_field
        self.description = description
        self.field_map: Mapping[str, FieldSpec] = {f.name: f for f in fields}
        if len(self.field_map) != len(fields):
            raise ValueError(f"kind {name}: duplicate field names")
        for ref in (*key_fields, time_field, version_field, order_field):
            if ref is not None and ref not in self.field_map:
                raise ValueError(f"kind {name}: {ref!r} is not one of its fields")
        for key in key_fields:
            if not self.field_map[key].required:
                raise ValueError(f"kind {name}: key field {key!r} must be required")
            spec = self.field_map[key]
            if spec.type == "str" and not spec.identifier:
                raise ValueError(f"kind {name}: key field {key!r} is free text; mark it identifier=True")
        for f in fields:
            if f.id_type_field is not None and f.id_type_field not in self.field_map:
                raise ValueError(f"kind {name}: {f.name}.id_type_field names no field")
        self._validator: Callable[[Mapping[str, Any]], list[FieldError]] | None = None
        self._single_key = key_fields[0] if len(key_fields) == 1 else None

    def __repr__(self) -> str:
        return f"RecordKind({self.name!r}, {len(self.fields)} fields)"

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)

    def field(self, name: str) -> FieldSpec:
        return self.field_map[name]

    def record_key(self, data: Mapping[str, Any]) -> str:
        """The natural key without version: the key fields joined by "|"."""
        if self._single_key is not None:
            return str(data[self._single_key])
        return "|".join(str(data[f]) for f in self.key_fields)

    def case_no(self, data: Mapping[str, Any]) -> str:
        """What per-case ordering groups by: the order field, or the record key when it is empty."""
        value = data.get(self.order_field)
        if value is None or value == "":
            return self.record_key(data)
        return str(value)

    def version(self, data: Mapping[str, Any]) -> int:
        """The wire VERSION (1 when the kind or the record has none)."""
        if self.version_field is None:
            return 1
        value = data.get(self.version_field)
        return 1 if value is None or value == "" else int(value)

    def business_time(self, data: Mapping[str, Any]) -> str | None:
        value = data.get(self.time_field)
        return None if value is None or value == "" else str(value)

    @property
    def validator(self) -> Callable[[Mapping[str, Any]], list[FieldError]]:
        """Check a ``data`` dict in canonical form; compiled on first use, then reused."""
        if self._validator is None:
            from gateway.schema._validate import compile_validator

            self._validator = compile_validator(self)
        return self._validator

    def validate(self, data: Mapping[str, Any]) -> list[FieldError]:
        return self.validator(data)
