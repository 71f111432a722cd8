"""JSON Schema (draft 2020-12) of stored common-schema records, one document per kind.

The documents describe a whole stored record (kind, schema_version, data and
provenance) so that a counterpart or an auditor can validate what the gateway
hands out without reading Python.  Identifier check characters cannot be said in
JSON Schema; the patterns give the shape and the descriptions name the check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.schema._codetables import CodeTable, code_tables
from gateway.schema._kinds import KINDS, PROVENANCE_FIELDS, SCHEMA_VERSION
from gateway.schema._types import FieldSpec, RecordKind

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"
_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
_CHECK_NOTES = {
    "credit_code": "GB 32100 统一社会信用代码 (check character and embedded GB 11714 check enforced by the gateway)",
    "id_number": (
        "证件号码, checked by its 证件类型: 111 GB 11643 居民身份证号 (MOD 11-2), "
        "821 营业执照 as a 统一社会信用代码 or 15-digit 注册号, 811 GB 11714 组织机构代码"
    ),
    "region_code": "GB/T 2260 行政区划代码, 6 digits, or the 9 / 12 digit statistical forms",
    "license_id": "GB/T 36904 电子证照标识 with ISO/IEC 7064 MOD 37,36 check character",
}


def schema_id(kind: str) -> str:
    return f"urn:exchange-gateway:schema:{SCHEMA_VERSION}:{kind}"


def _field_schema(spec: FieldSpec, tables: Mapping[str, CodeTable]) -> dict[str, Any]:
    out: dict[str, Any] = {"title": spec.title}
    if spec.wire:
        out["x-wire"] = spec.wire
    t = spec.type
    if t == "int":
        out.update(type="integer", minimum=spec.minimum, maximum=spec.maximum)
    elif t == "decimal":
        out.update(type="string", pattern=r"^-?\d{1,28}(\.\d{1,10})?$")
    elif t == "datetime":
        out.update(type="string", format="date-time", pattern=_DATETIME_PATTERN)
    elif t == "date":
        out.update(type="string", format="date", pattern=_DATE_PATTERN)
    elif t == "code":
        table = tables[spec.code_table or ""]
        codes = list(table.codes)
        out["x-code-table"] = table.id
        out["x-codes"] = dict(table.codes)
        if spec.multiple:
            alternatives = "|".join(_escape(c) for c in codes)
            out.update(type="string", pattern=f"^({alternatives})(;({alternatives}))*$")
        else:
            out.update(type="string", enum=codes)
    elif t == "enum":
        out.update(type="string", enum=list(spec.enum))
    elif t == "credit_code":
        out.update(type="string", pattern=r"^[0-9A-HJ-NP-RTUWXY]{18}$")
    elif t == "region_code":
        out.update(type="string", pattern=r"^(\d{6}|\d{9}|\d{12})$")
    elif t == "license_id":
        out.update(type="string", pattern=r"^1\.2\.156\.3005\.2\.[0-9A-Z]+\.[0-9A-Z]{18}\.[0-9A-Z]+\.[0-9A-Z]+\.[0-9A-Z]$")
    else:
        out["type"] = "string"
        out["minLength"] = 1
    if spec.max_length and t in ("str", "id_number"):
        out["maxLength"] = spec.max_length
    notes = [n for n in (spec.description, _CHECK_NOTES.get(t)) if n]
    if spec.personal:
        notes.append("personal data: masked in errors and for readers without the right")
    if notes:
        out["description"] = "; ".join(notes)
    return out


def _escape(code: str) -> str:
    return "".join("\\" + c if c in r".^$*+?()[]{}|\/" else c for c in code)


def _provenance_schema() -> dict[str, Any]:
    props: dict[str, Any] = {
        "source_system": {"type": "string", "minLength": 1},
        "source_id": {"type": ["string", "null"]},
        "source_version": {"type": ["integer", "null"], "minimum": 1},
        "business_time": {"type": ["string", "null"]},
        "receipt_time": {"type": "string", "format": "date-time", "pattern": _DATETIME_PATTERN},
        "payload_hash": {"type": "string", "minLength": 1},
        "original": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        "ref": {"type": ["string", "null"]},
        "mapping": {"type": ["string", "null"], "pattern": r"^[^@]+@[^@]+$"},
    }
    for name, text in PROVENANCE_FIELDS.items():
        props[name]["description"] = text
    return {
        "type": "object",
        "title": "provenance (来源信息)",
        "properties": props,
        "required": ["source_system", "receipt_time", "payload_hash"],
        "additionalProperties": True,
    }


def _findings_schema() -> dict[str, Any]:
    return {
        "type": "array",
        "title": "findings (数据质量问题)",
        "description": (
            "data-quality findings the record was accepted with, because the mapping's or the source's "
            "on_invalid says accept_with_finding; absent when there are none. A field whose value lost its "
            "shape is left out of data; values of personal fields are masked here."
        ),
        "items": {
            "type": "object",
            "properties": {
                "field": {"type": "string"},
                "rule": {"type": "string"},
                "value": {"type": "string"},
                "message": {"type": "string"},
                "kind": {"type": ["string", "null"]},
                "where": {"type": "string", "description": "the occurrence of a repeated section (each:)"},
            },
            "required": ["field", "rule", "message"],
        },
        "minItems": 1,
    }


def kind_json_schema(kind: RecordKind, tables: Mapping[str, CodeTable] | None = None) -> dict[str, Any]:
    """The JSON Schema of one stored record of ``kind``."""
    tables = tables if tables is not None else code_tables()
    data = {
        "type": "object",
        "title": f"{kind.title} data",
        "properties": {f.name: _field_schema(f, tables) for f in kind.fields},
        "required": list(kind.required),
        "additionalProperties": False,
    }
    return {
        "$schema": DIALECT,
        "$id": schema_id(kind.name),
        "title": f"{kind.title} ({kind.name}), common schema v{SCHEMA_VERSION}",
        "description": kind.description,
        "type": "object",
        "properties": {
            "kind": {"const": kind.name},
            "schema_version": {"const": SCHEMA_VERSION},
            "data": data,
            "provenance": _provenance_schema(),
            "findings": _findings_schema(),
        },
        "required": ["kind", "schema_version", "data", "provenance"],
        "x-key-fields": list(kind.key_fields),
        "x-version-field": kind.version_field,
        "x-time-field": kind.time_field,
        "x-order-field": kind.order_field,
    }


def export_json_schemas(directory: str | Path) -> list[Path]:
    """Write ``<kind>.schema.json`` for every kind into ``directory``; return the paths written."""
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS.values():
        path = out_dir / f"{kind.name}.schema.json"
        text = json.dumps(kind_json_schema(kind), ensure_ascii=False, indent=2) + "\n"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
