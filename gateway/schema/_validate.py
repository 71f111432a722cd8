"""Compile a record kind's checks into one straight-line Python function.

The same value checks are emitted into compiled mappings (see gateway.mapping), so
that mapping and validation run as one function per output.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from gateway.schema import identifiers as _ids
from gateway.schema._codegen import CodeWriter, lit
from gateway.schema._codetables import CodeTable, code_tables
from gateway.schema._text import unsafe_in_identifier, unsafe_in_text
from gateway.schema._types import FieldError, FieldSpec, RecordKind, make_error, show_value

_DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})\Z", re.ASCII)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}\Z", re.ASCII)
_DECIMAL_RE = re.compile(r"-?\d{1,28}(?:\.\d{1,10})?\Z", re.ASCII)
MULTI_SEPARATOR = ";"
CHECKED_DOCUMENTS = frozenset({"111", "821", "811"})
"""证件类型 codes whose numbers have a check (see identifiers.check_document)."""


def is_datetime(value: str) -> bool:
    """A canonical datetime: ISO 8601 with seconds and an offset, and a real instant."""
    if _DATETIME_RE.match(value) is None:
        return False
    try:
        _dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def is_date(value: str) -> bool:
    return _DATE_RE.match(value) is not None and _ids._is_date(value[:4] + value[5:7] + value[8:10])


def is_decimal(value: str) -> bool:
    return _DECIMAL_RE.match(value) is not None


def first_bad_code(value: str, codes: frozenset[str]) -> str | None:
    """For fields holding several codes ("警告;罚款"): the first part that is not a code."""
    for part in value.split(MULTI_SEPARATOR):
        if part not in codes:
            return part
    return None


_CHECKS: dict[str, Callable[[str], str | None]] = {
    "credit_code": _ids.check_credit_code,
    "region_code": _ids.check_region_code,
    "license_id": _ids.check_license_id,
}


def runtime_namespace(kind: RecordKind) -> dict[str, Any]:
    """Names every generated function for ``kind`` may use."""
    return {
        "_E": functools.partial(make_error, kind.name),
        "_FieldError": FieldError,
        "_show": show_value,
        "_is_dt": is_datetime,
        "_is_d": is_date,
        "_is_dec": is_decimal,
        "_bad_code": first_bad_code,
        "_chk_credit_code": _ids.check_credit_code,
        "_chk_region_code": _ids.check_region_code,
        "_chk_license_id": _ids.check_license_id,
        "_chk_document": _ids.check_document,
        "_CHECKED_DOCUMENTS": CHECKED_DOCUMENTS,
        "_unsafe_id": unsafe_in_identifier,
        "_unsafe_text": unsafe_in_text,
    }


def emit_char_check(w: CodeWriter, spec: FieldSpec, var: str, depth: int, errs: str) -> None:
    """Refuse the characters gateway.schema._text keeps out of this field (only non-printable values are looked at)."""
    s = w.bind(spec, "_S")
    r = w.temp("r")
    check = "_unsafe_id" if spec.is_identifier else "_unsafe_text"
    w.emit(depth, f"if not {var}.isprintable():")
    w.emit(depth + 1, f"{r} = {check}({var})")
    w.emit(depth + 1, f"if {r} is not None: {errs}.append(_E({s}, {r}[0], {var}, {r}[1]))")


def emit_int_range(w: CodeWriter, spec: FieldSpec, var: str, depth: int, errs: str) -> None:
    s = w.bind(spec, "_S")
    w.emit(depth, f"if not {lit(spec.minimum)} <= {var} <= {lit(spec.maximum)}: {errs}.append(_E({s}, 'int_range', {var}))")


def emit_value_checks(
    w: CodeWriter, spec: FieldSpec, var: str, depth: int, errs: str, tables: Mapping[str, CodeTable]
) -> None:
    """Checks on a value already of the field's Python type (str, or int for int fields).

    Emits nothing for checks the conversion already guarantees (datetime, date,
    decimal and int formats).
    """
    s = w.bind(spec, "_S")
    t = spec.type
    if t in ("str", "id_number"):
        # id_number's own check needs the 证件类型, so it runs after all fields (emit_cross_checks)
        if spec.max_length is None:
            return
        w.emit(depth, f"if len({var}) > {lit(spec.max_length)}: {errs}.append(_E({s}, 'max_length', {var}))")
    elif t in _CHECKS:
        r = w.temp("r")
        w.emit(depth, f"{r} = _chk_{t}({var})")
        w.emit(depth, f"if {r} is not None: {errs}.append(_E({s}, {r}, {var}))")
    elif t == "code":
        table = tables[spec.code_table or ""]
        codes = w.bind(frozenset(table.codes), "_CODES", f"the {len(table.codes)} codes of table {table.id}")
        if spec.multiple:
            w.emit(depth, f"if _bad_code({var}, {codes}) is not None: {errs}.append(_E({s}, 'code_invalid', {var}))")
        else:
            w.emit(depth, f"if {var} not in {codes}: {errs}.append(_E({s}, 'code_invalid', {var}))")
    elif t == "enum":
        allowed = w.bind(frozenset(spec.enum), "_ENUM", f"the values of {spec.name}: {', '.join(spec.enum)}")
        w.emit(depth, f"if {var} not in {allowed}: {errs}.append(_E({s}, 'enum_invalid', {var}))")


def emit_cross_checks(w: CodeWriter, kind: RecordKind, present: set[str], data: str, errs: str, depth: int) -> None:
    """Checks that need two fields: a 证件号码 is checked by its 证件类型 (111, 821, 811)."""
    for spec in kind.fields:
        if spec.type != "id_number" or spec.name not in present:
            continue
        if not spec.id_type_field or spec.id_type_field not in present:
            continue  # without a type we cannot know the document; do not guess
        s = w.bind(spec, "_S")
        t = w.temp("t")
        v = w.temp("v")
        r = w.temp("r")
        w.emit(depth, f"{t} = {data}.get({lit(spec.id_type_field)})")
        w.emit(depth, f"if {t} in _CHECKED_DOCUMENTS:")
        w.emit(depth + 1, f"{v} = {data}.get({lit(spec.name)})")
        w.emit(depth + 1, f"if {v}.__class__ is str and {v}:")
        w.emit(depth + 2, f"{r} = _chk_document({t}, {v})")
        w.emit(depth + 2, f"if {r} is not None: {errs}.append(_E({s}, {r}, {v}))")


def compile_validator(
    kind: RecordKind, tables: Mapping[str, CodeTable] | None = None
) -> Callable[[Mapping[str, Any]], list[FieldError]]:
    """One function checking a ``data`` dict of ``kind`` in canonical form."""
    tables = tables if tables is not None else code_tables()
    w = CodeWriter(runtime_namespace(kind))
    names = w.bind(frozenset(kind.field_map), "_NAMES")
    w.emit(0, "def validate(data):")
    w.emit(1, "errs = []")
    w.emit(1, f"if not {names}.issuperset(data):")
    w.emit(2, "for k in data:")
    w.emit(3, f"if k not in {names}:")
    w.emit(
        4,
        f"errs.append(_FieldError(str(k), 'unknown_field', _show(data[k], False), "
        f"'is not a field of this record kind', {lit(kind.name)}))",
    )
    for spec in kind.fields:
        s = w.bind(spec, "_S")
        w.emit(1, f"v = data.get({lit(spec.name)})")
        w.emit(1, "if v is None or v == '':")
        w.emit(2, f"errs.append(_E({s}, 'required', None))" if spec.required else "pass")
        t = spec.type
        if t == "int":
            w.emit(1, "elif v.__class__ is not int:")
            w.emit(2, f"errs.append(_E({s}, 'int_format', v))")
            w.emit(1, "else:")
            emit_int_range(w, spec, "v", 2, "errs")
            continue
        w.emit(1, "elif v.__class__ is not str:")
        w.emit(2, f"errs.append(_E({s}, 'type', v, 'expected text'))")
        if t == "datetime":
            w.emit(1, "elif not _is_dt(v):")
            w.emit(2, f"errs.append(_E({s}, 'datetime_format', v, 'expected ISO 8601 with offset'))")
        elif t == "date":
            w.emit(1, "elif not _is_d(v):")
            w.emit(2, f"errs.append(_E({s}, 'date_format', v, 'expected YYYY-MM-DD'))")
        elif t == "decimal":
            w.emit(1, "elif not _is_dec(v):")
            w.emit(2, f"errs.append(_E({s}, 'decimal_format', v))")
        else:
            w.emit(1, "else:")
            emit_char_check(w, spec, "v", 2, "errs")
            emit_value_checks(w, spec, "v", 2, "errs", tables)
    emit_cross_checks(w, kind, set(kind.field_map), "data", "errs", 1)
    w.emit(1, "return errs")
    return w.build("validate", f"validator {kind.name}")
