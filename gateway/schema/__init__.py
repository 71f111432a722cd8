"""Common schema v1: record kinds, field types, code tables, identifier checks, JSON Schema export.

Public surface::

    from gateway.schema import SCHEMA_VERSION, KINDS, RecordKind, FieldSpec, FieldError, code_tables
    errors = KINDS["case"].validator(data)
"""

from gateway.schema._codetables import CodeTable, CodeTableError, code_tables
from gateway.schema._jsonschema import export_json_schemas, kind_json_schema
from gateway.schema._kinds import KINDS, PROVENANCE_FIELDS, SCHEMA_VERSION
from gateway.schema._types import FIELD_TYPES, FieldError, FieldSpec, RecordKind

__all__ = [
    "FIELD_TYPES",
    "KINDS",
    "PROVENANCE_FIELDS",
    "SCHEMA_VERSION",
    "CodeTable",
    "CodeTableError",
    "FieldError",
    "FieldSpec",
    "RecordKind",
    "code_tables",
    "export_json_schemas",
    "kind_json_schema",
]
