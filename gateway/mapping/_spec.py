"""Read a mapping file and check it against the closed vocabulary; produce a validated plan.

Nothing here runs user text: the plan holds paths (tuples of keys and indexes),
constants, code-table dictionaries and names from fixed sets.  Every refusal is a
:class:`MappingError` naming the file, the line, the output field, the rule and the
offending value.

Vocabulary of one field rule (a string alone is a ``path``)::

    path: SPSHENQIN/SBLSH          # or dotted, or a list of keys and indexes; /VERSION starts at the item
                                   # itself inside an output with each: (other paths start at the occurrence)
    const: "1"                     # or one of these three sources instead
    concat: [A/B, {const: "-"}, A/C]   separator: ""
    first_nonempty: [A/B, A/C]
    fn: [halfwidth, upper]         # named functions, applied in order
    lookup: hall.id_type           # or {table: …, on_missing: error|default|keep, default: …}
                                   # or {map: {raw: code}, …}; outbound also reverse: true;
                                   # value: label gives a domain table's label instead of the code
    format: auto                   # dates: one or a list of DATETIME_FORMATS
    zone: "+08:00"                 # how naive times are read (inbound) / written (outbound)
    default: "9"                   # used when the source is empty
    required: true                 # outbound only: refuse to render without a value
    on_invalid: accept_with_finding   # inbound: or {rule: action}; see gateway.mapping._policy

An inbound output may carry ``each: PATH``: one record per occurrence of a repeated
section (several SPGUOCHENG steps in one APPROVEDATAINFO, a JSON array of steps).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.formats._options import ENCODINGS, LIMIT_KEYS, delimiter_char, option_problem
from gateway.mapping._errors import MappingError
from gateway.mapping._policy import EMPTY, InvalidPolicy, PolicyError, parse_field_policy, parse_policy
from gateway.mapping._runtime import CHINA, DATETIME_FORMATS, TEXT_FUNCTIONS, parse_zone
from gateway.schema import KINDS, PROVENANCE_FIELDS, CodeTable, FieldSpec, RecordKind
from gateway.schema._text import nfc
from gateway.schema._yaml import Document, Location

DIRECTIONS = ("inbound", "outbound")
INPUT_FORMATS = ("xml", "csv", "jsonl", "json")
OUTPUT_FORMATS = ("json", "xml")
ON_MISSING = ("error", "default", "keep")

_TOP_INBOUND = frozenset(
    {"name", "version", "direction", "description", "system", "zone", "input", "outputs", "on_invalid", "codetables"}
)
_TOP_OUTBOUND = frozenset(
    {"name", "version", "direction", "description", "system", "zone", "format", "root", "outputs", "codetables"}
)
_INPUT_KEYS = frozenset({"format", "encoding", "delimiter", "header", "record", "quotechar", *LIMIT_KEYS})
_OUTPUT_KEYS = frozenset({"kind", "when", "each", "fields", "description"})
_SOURCES = ("path", "const", "concat", "first_nonempty")
_RULE_KEYS_IN = frozenset(
    {*_SOURCES, "separator", "fn", "lookup", "format", "zone", "default", "description", "on_invalid"}
)
_RULE_KEYS_OUT = (_RULE_KEYS_IN - {"on_invalid"}) | {"required"}
_LOOKUP_KEYS_IN = frozenset({"table", "map", "on_missing", "default", "value"})
_LOOKUP_KEYS_OUT = _LOOKUP_KEYS_IN | {"reverse"}
_WHEN_KEYS = frozenset({"exists", "absent", "equals"})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_XML_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_OUT_ROOTS = ("data", "provenance", "kind", "schema_version")
_TEXT_ONLY_FNS = frozenset(TEXT_FUNCTIONS) - {"int", "decimal"}

Path_ = tuple[str | int, ...]

ROOT = "/"
"""First step of a path anchored at the item itself (``/VERSION``) rather than at the occurrence of ``each:``."""


def path_text(path: Path_) -> str:
    """A path as a mapping file writes it: ``SPSHENQIN/SBLSH``, ``/VERSION``."""
    if path[:1] == (ROOT,):
        return "/" + "/".join(map(str, path[1:]))
    return "/".join(map(str, path))


@dataclass(frozen=True)
class Source:
    """Where a field's value comes from."""

    type: str  # path | const | concat | first_nonempty
    path: Path_ = ()
    const: str | int | None = None
    items: tuple[Source, ...] = ()
    separator: str = ""


@dataclass(frozen=True)
class Lookup:
    """A code-table (or inline) translation, resolved to the dictionary used at run time."""

    name: str  # table id, or "inline map"
    table: dict[str, str]  # raw -> value
    on_missing: str
    default: str | None
    results: frozenset[str]  # every value the lookup can produce when on_missing != keep
    domain: bool  # the table is a domain table: the lookup only checks membership


@dataclass(frozen=True)
class Rule:
    """One output field's rule, validated."""

    name: str  # field name (inbound) or output key (outbound)
    loc: Location
    line: int | None
    source: Source
    fns: tuple[str, ...] = ()
    lookup: Lookup | None = None
    formats: tuple[str, ...] | None = None
    zone: _dt.timezone = CHINA
    default: str | int | None = None
    required: bool = False
    spec: FieldSpec | None = None  # inbound: the schema field; outbound: the data field read, if any
    on_invalid: InvalidPolicy = EMPTY  # inbound: this field's own entries


@dataclass(frozen=True)
class When:
    type: str  # exists | absent | equals
    path: Path_
    value: str | None = None


@dataclass
class Output:
    kind: RecordKind
    rules: list[Rule]
    when: When | None = None
    line: int | None = None
    each: Path_ | None = None  # one record per occurrence of this repeated section


@dataclass
class Plan:
    """A validated mapping file, ready to be compiled."""

    file: str
    name: str
    version: str
    direction: str
    description: str
    system: str | None
    zone: _dt.timezone
    outputs: list[Output]
    input: dict[str, Any] = field(default_factory=dict)
    format: str = "json"
    root: str | None = None
    on_invalid: InvalidPolicy = EMPTY  # the whole policy: top-level entries with every field's own laid over them


class _Ctx:
    """Where we are in the file, for error messages."""

    def __init__(self, doc: Document, tables: Mapping[str, CodeTable], searched: tuple[str, ...] = ()) -> None:
        self.doc = doc
        self.tables = tables
        self.searched = searched  # where code tables were looked for, in words (for unknown_table)

    def fail(
        self,
        loc: Location,
        rule: str,
        message: str,
        *,
        kind: str | None = None,
        field_name: str | None = None,
        value: Any = None,
    ) -> MappingError:
        return MappingError(
            message, file=self.doc.file, line=self.doc.line(loc), kind=kind, field=field_name, rule=rule, value=value
        )


def _check_keys(ctx: _Ctx, raw: Mapping[str, Any], allowed: frozenset[str], loc: Location, what: str, **kw: Any) -> None:
    for key in raw:
        if key not in allowed:
            raise ctx.fail(
                loc + (key,),
                "unknown_rule" if what == "field rule" else "unknown_key",
                f"{what} has no key {key!r}; allowed: {', '.join(sorted(allowed))}",
                value=key,
                **kw,
            )


def _parse_path(ctx: _Ctx, raw: Any, loc: Location, **kw: Any) -> Path_:
    anchored = False
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("/") and len(text) > 1:
            anchored, text = True, text[1:]
        parts: list[str | int] = []
        for seg in text.split("/") if "/" in text else text.split("."):
            seg = seg.strip()
            parts.append(int(seg) if seg.isdigit() and seg.isascii() else seg)
    elif isinstance(raw, list) and raw:
        parts = list(raw)
        if parts[0] == ROOT and len(parts) > 1:
            anchored, parts = True, parts[1:]
    else:
        raise ctx.fail(loc, "bad_path", "a path is text (A/B or A.B) or a list of keys and indexes", value=raw, **kw)
    for seg in parts:
        if isinstance(seg, bool) or not isinstance(seg, (str, int)) or seg == "" or seg == ROOT:
            raise ctx.fail(loc, "bad_path", f"path step {seg!r} is not a key or an index", value=raw, **kw)
    return (ROOT, *parts) if anchored else tuple(parts)


def _parse_item(ctx: _Ctx, raw: Any, loc: Location, **kw: Any) -> Source:
    """An element of concat / first_nonempty: a path, or {path: …} / {const: …}."""
    if isinstance(raw, dict):
        if set(raw) == {"const"}:
            if not isinstance(raw["const"], str):
                raise ctx.fail(loc, "bad_const", "a const inside concat must be quoted text", value=raw["const"], **kw)
            return Source("const", const=raw["const"])
        if set(raw) == {"path"}:
            return Source("path", path=_parse_path(ctx, raw["path"], loc + ("path",), **kw))
        raise ctx.fail(loc, "unknown_rule", "an item is a path, {path: …} or {const: …}", value=raw, **kw)
    return Source("path", path=_parse_path(ctx, raw, loc, **kw))


def _parse_source(ctx: _Ctx, raw: Mapping[str, Any], loc: Location, **kw: Any) -> Source:
    given = [k for k in _SOURCES if k in raw]
    if len(given) != 1:
        what = "no source" if not given else f"several sources ({', '.join(given)})"
        raise ctx.fail(loc, "source", f"{what}: give exactly one of {', '.join(_SOURCES)}", **kw)
    key = given[0]
    value = raw[key]
    if "separator" in raw and key != "concat":
        raise ctx.fail(loc + ("separator",), "unknown_rule", "separator belongs to concat", **kw)
    if key == "path":
        return Source("path", path=_parse_path(ctx, value, loc + ("path",), **kw))
    if key == "const":
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ctx.fail(loc + ("const",), "bad_const", "const must be text (quote it) or a whole number", value=value, **kw)
        return Source("const", const=value)
    if not isinstance(value, list) or not value:
        raise ctx.fail(loc + (key,), "bad_path", f"{key} takes a non-empty list", value=value, **kw)
    items = tuple(_parse_item(ctx, item, loc + (key, i), **kw) for i, item in enumerate(value))
    sep = raw.get("separator", "")
    if not isinstance(sep, str):
        raise ctx.fail(loc + ("separator",), "bad_const", "separator must be quoted text", value=sep, **kw)
    return Source(key, items=items, separator=sep)


def _parse_fns(ctx: _Ctx, raw: Any, loc: Location, **kw: Any) -> tuple[str, ...]:
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names:
        raise ctx.fail(loc, "unknown_function", "fn takes a function name or a list of them", value=raw, **kw)
    for i, name in enumerate(names):
        if name not in TEXT_FUNCTIONS:
            raise ctx.fail(
                loc,
                "unknown_function",
                f"unknown function; known: {', '.join(TEXT_FUNCTIONS)}",
                value=name,
                **kw,
            )
        if name == "int" and i != len(names) - 1:
            raise ctx.fail(loc, "unknown_function", "int must be the last function (it yields a number)", value=name, **kw)
    return tuple(names)


def _parse_formats(ctx: _Ctx, raw: Any, loc: Location, *, single: bool, **kw: Any) -> tuple[str, ...]:
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names or (single and len(names) != 1):
        want = "one format name" if single else "a format name or a list of them"
        raise ctx.fail(loc, "bad_format", f"format takes {want}", value=raw, **kw)
    for name in names:
        if name == "auto" and not single and len(names) == 1:
            continue
        if name not in DATETIME_FORMATS:
            raise ctx.fail(
                loc,
                "bad_format",
                f"unknown date format; use auto or one of: {', '.join(DATETIME_FORMATS)}",
                value=name,
                **kw,
            )
    return tuple(names)


def _parse_zone(ctx: _Ctx, raw: Any, loc: Location, **kw: Any) -> _dt.timezone:
    zone = parse_zone(raw) if isinstance(raw, str) else None
    if zone is None:
        raise ctx.fail(loc, "bad_zone", "zone is +08:00, Asia/Shanghai, UTC or ±hh:mm", value=raw, **kw)
    return zone


def _allowed_codes(spec: FieldSpec | None, tables: Mapping[str, CodeTable]) -> frozenset[str] | None:
    if spec is None:
        return None
    if spec.type == "code":
        return frozenset(tables[spec.code_table or ""].codes)
    if spec.type == "enum":
        return frozenset(spec.enum)
    return None


def _unknown_table(ctx: _Ctx, table_id: Any) -> str:
    """Why a table id was not found: every place looked in, and how to fix it."""
    local = sorted(t for t in ctx.tables if "." in t)
    national = sorted(t for t in ctx.tables if "." not in t)
    looked = "; ".join(ctx.searched) or "the schema's national tables"
    text = f"no code table {table_id!r}. Looked in: {looked}. "
    if isinstance(table_id, str) and "." in table_id:
        prefix = table_id.split(".", 1)[0]
        text += (
            f"A counterpart table ({prefix}.…) is defined in a YAML file in a codetables/ folder beside the mapping "
            "file (or in a folder the mapping names with codetables:); a mapping copied without that folder "
            "cannot find it: copy the table file along (the shipped ones are in mappings/codetables/), or add "
            "codetables: [path/to/folder] to the mapping. "
        )
        similar = [t for t in local if t.startswith(prefix + ".")]
        if similar:
            text += f"Tables with that prefix: {', '.join(similar)}. "
    text += f"Counterpart tables found: {', '.join(local) or 'none'}; national tables: {', '.join(national)}"
    return text


def _parse_lookup(ctx: _Ctx, raw: Any, loc: Location, spec: FieldSpec | None, outbound: bool, **kw: Any) -> Lookup:
    if isinstance(raw, str):
        raw = {"table": raw}
    if not isinstance(raw, dict):
        raise ctx.fail(loc, "unknown_rule", "lookup is a table id or {table: …} / {map: …}", value=raw, **kw)
    _check_keys(ctx, raw, _LOOKUP_KEYS_OUT if outbound else _LOOKUP_KEYS_IN, loc, "lookup", **kw)
    if ("table" in raw) == ("map" in raw):
        raise ctx.fail(loc, "unknown_rule", "lookup needs exactly one of table: or map:", **kw)
    default = raw.get("default")
    if default is not None and not isinstance(default, str):
        raise ctx.fail(loc + ("default",), "bad_const", "a lookup default must be quoted text", value=default, **kw)
    on_missing = raw.get("on_missing", "default" if default is not None else "error")
    if on_missing not in ON_MISSING:
        raise ctx.fail(loc + ("on_missing",), "unknown_rule", f"on_missing is one of {', '.join(ON_MISSING)}", value=on_missing, **kw)
    if (on_missing == "default") != (default is not None):
        raise ctx.fail(loc, "unknown_rule", "on_missing: default needs a default value, and a default needs it", **kw)
    reverse = raw.get("reverse", False)
    if not isinstance(reverse, bool):
        raise ctx.fail(loc + ("reverse",), "unknown_rule", "reverse is true or false", value=reverse, **kw)
    give = raw.get("value", "code")
    if give not in ("code", "label"):
        raise ctx.fail(loc + ("value",), "unknown_rule", "value is code or label", value=give, **kw)
    allowed = None if outbound else _allowed_codes(spec, ctx.tables)
    domain = False
    if "table" in raw:
        table_id = raw["table"]
        table = ctx.tables.get(table_id) if isinstance(table_id, str) else None
        if table is None:
            raise ctx.fail(loc + ("table",), "unknown_table", _unknown_table(ctx, table_id), value=table_id, **kw)
        name = table.id
        if give == "label" and table.map is not None:
            raise ctx.fail(loc + ("value",), "unknown_rule", "value: label needs a domain table (codes:)", value=table_id, **kw)
        if table.map is not None:
            if not outbound and spec is not None and spec.type == "code" and table.target != spec.code_table:
                raise ctx.fail(
                    loc + ("table",),
                    "table_target",
                    f"table translates into {table.target!r} but the field holds codes of {spec.code_table!r}",
                    value=table_id,
                    **kw,
                )
            entries = dict(table.map)
            if reverse:
                entries = {}
                for raw_value, code in table.map.items():
                    entries.setdefault(code, raw_value)  # the first raw value listed for a code wins
        else:
            if not outbound and spec is not None and spec.type == "code" and table.id != spec.code_table:
                raise ctx.fail(
                    loc + ("table",),
                    "table_target",
                    f"the field holds codes of {spec.code_table!r}, not of {table.id!r}",
                    value=table_id,
                    **kw,
                )
            if give == "label":
                entries = dict(table.codes)
            else:
                entries = {code: code for code in table.codes}
                domain = True
    else:
        if give == "label":
            raise ctx.fail(loc + ("value",), "unknown_rule", "value: label needs a domain table (codes:)", **kw)
        inline = raw["map"]
        if not isinstance(inline, dict) or not inline:
            raise ctx.fail(loc + ("map",), "unknown_rule", "map is a non-empty mapping of raw value to value", **kw)
        entries = {}
        for k, v in inline.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ctx.fail(
                    loc + ("map", k), "bad_const", "inline map keys and values must be quoted text", value=k, **kw
                )
            entries[k if k.isascii() else nfc(k)] = v  # values are NFC by the time they are looked up
        name = "inline map"
    if allowed is not None:
        for k, v in entries.items():
            if v not in allowed:
                raise ctx.fail(loc, "code_invalid", f"{name} gives {v!r} for {k!r}, not a value of this field", value=v, **kw)
        if default is not None and default not in allowed:
            raise ctx.fail(loc + ("default",), "code_invalid", "the lookup default is not a value of this field", value=default, **kw)
    results = frozenset(entries.values()) | ({default} if default is not None else frozenset())
    return Lookup(name, entries, on_missing, default, results, domain)


def parse_rule(
    ctx: _Ctx, name: str, raw: Any, loc: Location, kind: RecordKind, spec: FieldSpec | None, outbound: bool, zone: _dt.timezone
) -> Rule:
    kw = {"kind": kind.name, "field_name": name}
    if isinstance(raw, (str, list)):
        raw = {"path": raw}
    if not isinstance(raw, dict):
        raise ctx.fail(loc, "unknown_rule", "a field rule is a path or a mapping of rule keys", value=raw, **kw)
    _check_keys(ctx, raw, _RULE_KEYS_OUT if outbound else _RULE_KEYS_IN, loc, "field rule", **kw)
    source = _parse_source(ctx, raw, loc, **kw)
    fns = _parse_fns(ctx, raw["fn"], loc + ("fn",), **kw) if "fn" in raw else ()
    lookup = _parse_lookup(ctx, raw["lookup"], loc + ("lookup",), spec, outbound, **kw) if "lookup" in raw else None
    field_zone = _parse_zone(ctx, raw["zone"], loc + ("zone",), **kw) if "zone" in raw else zone
    formats = None
    if "format" in raw:
        formats = _parse_formats(ctx, raw["format"], loc + ("format",), single=outbound, **kw)
    default = raw.get("default")
    if default is not None and (isinstance(default, bool) or not isinstance(default, (str, int))):
        raise ctx.fail(loc + ("default",), "bad_const", "default must be quoted text or a whole number", value=default, **kw)
    required = raw.get("required", False)
    if not isinstance(required, bool):
        raise ctx.fail(loc + ("required",), "unknown_rule", "required is true or false", value=required, **kw)
    if required and default is not None:
        raise ctx.fail(loc + ("required",), "unknown_rule", "a required field cannot also have a default", **kw)
    policy = EMPTY
    if "on_invalid" in raw and spec is not None:
        try:
            policy = parse_field_policy(raw["on_invalid"], kind, spec)
        except PolicyError as exc:
            raise ctx.fail(loc + ("on_invalid",), "on_invalid", exc.message, value=raw["on_invalid"], **kw) from None
    return Rule(
        name=name,
        loc=loc,
        line=ctx.doc.line(loc),
        source=source,
        fns=fns,
        lookup=lookup,
        formats=formats,
        zone=field_zone,
        default=default,
        required=required,
        spec=spec,
        on_invalid=policy,
    )


def _check_inbound_rule(ctx: _Ctx, rule: Rule, spec: FieldSpec, kind: RecordKind) -> None:
    kw = {"kind": kind.name, "field_name": rule.name}
    if rule.formats is not None and spec.type not in ("datetime", "date"):
        raise ctx.fail(rule.loc + ("format",), "bad_format", f"format applies to date and datetime fields, not {spec.type}", **kw)
    if "int" in rule.fns and spec.type != "int":
        raise ctx.fail(rule.loc + ("fn",), "unknown_function", f"int makes a number; {spec.name} is a {spec.type} field", value="int", **kw)
    if isinstance(rule.source.const, int) and rule.fns:
        raise ctx.fail(rule.loc + ("fn",), "unknown_function", "text functions do not apply to a number const", **kw)
    for const, where in ((rule.source.const, "const"), (rule.default, "default")):
        if const is None:
            continue
        if isinstance(const, int) and spec.type != "int":
            raise ctx.fail(rule.loc + (where,), "bad_const", f"{spec.name} is not a number field: quote the value", value=const, **kw)


def _parse_when(ctx: _Ctx, raw: Any, loc: Location, kind: str) -> When:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ctx.fail(loc, "unknown_rule", "when takes one of exists: PATH, absent: PATH, equals: {path, value}", kind=kind, value=raw)
    _check_keys(ctx, raw, _WHEN_KEYS, loc, "when", kind=kind)
    (key, value), = raw.items()
    if key == "equals":
        if not isinstance(value, dict) or set(value) != {"path", "value"} or not isinstance(value["value"], str):
            raise ctx.fail(loc + ("equals",), "unknown_rule", "equals takes {path: …, value: \"text\"}", kind=kind, value=value)
        return When("equals", _parse_path(ctx, value["path"], loc + ("equals", "path"), kind=kind), value["value"])
    return When(key, _parse_path(ctx, value, loc + (key,), kind=kind))


def _parse_input(ctx: _Ctx, raw: Any) -> dict[str, Any]:
    loc: Location = ("input",)
    if not isinstance(raw, dict):
        raise ctx.fail(loc, "bad_input", "an inbound mapping needs an input: block (format, encoding …)")
    _check_keys(ctx, raw, _INPUT_KEYS, loc, "input")
    fmt = raw.get("format")
    if fmt not in INPUT_FORMATS:
        raise ctx.fail(loc + ("format",), "bad_input", f"input.format is one of {', '.join(INPUT_FORMATS)}", value=fmt)
    encoding = raw.get("encoding", "auto")
    if encoding not in ENCODINGS:
        raise ctx.fail(loc + ("encoding",), "bad_input", f"input.encoding is one of {', '.join(ENCODINGS)}", value=encoding)
    out: dict[str, Any] = {"format": fmt, "encoding": encoding}
    if fmt == "csv":
        delimiter = raw.get("delimiter", ",")
        if delimiter_char(delimiter) is None:
            raise ctx.fail(loc + ("delimiter",), "bad_input", "input.delimiter is one character (or tab)", value=delimiter)
        header = raw.get("header", True)
        if header is not True:
            raise ctx.fail(loc + ("header",), "bad_input", "CSV input needs a header row (header: true): fields are addressed by column name", value=header)
        out.update(delimiter=delimiter_char(delimiter), header=True)
        if "quotechar" in raw:
            problem = option_problem("quotechar", raw["quotechar"], fmt)
            if problem:
                raise ctx.fail(loc + ("quotechar",), "bad_input", problem, value=raw["quotechar"])
            out["quotechar"] = raw["quotechar"]
    else:
        for key in ("delimiter", "header", "quotechar"):
            if key in raw:
                raise ctx.fail(loc + (key,), "bad_input", f"input.{key} applies to csv only", value=raw[key])
    for key in LIMIT_KEYS:
        if key in raw:
            problem = option_problem(key, raw[key], fmt)
            if problem:
                raise ctx.fail(loc + (key,), "bad_input", problem, value=raw[key])
            out[key] = raw[key]
    record = raw.get("record")
    if fmt == "xml" and (not isinstance(record, str) or not _XML_NAME_RE.match(record)):
        raise ctx.fail(loc + ("record",), "bad_input", "XML input needs record: the element tag of one item", value=record)
    if record is not None:
        if fmt not in ("xml", "json") or not isinstance(record, str) or not record:
            raise ctx.fail(loc + ("record",), "bad_input", "input.record applies to xml (element tag) and json (array key)", value=record)
        out["record"] = record
    return out


def _outbound_spec(ctx: _Ctx, rule_path: Path_, kind: RecordKind, loc: Location, name: str) -> FieldSpec | None:
    """Check an outbound path's root and field; return the data field it reads, if any."""
    kw = {"kind": kind.name, "field_name": name}
    root = rule_path[0]
    if root not in _OUT_ROOTS:
        raise ctx.fail(loc, "bad_path", f"outbound paths start with {', '.join(_OUT_ROOTS)}", value="/".join(map(str, rule_path)), **kw)
    if root in ("kind", "schema_version"):
        if len(rule_path) != 1:
            raise ctx.fail(loc, "bad_path", f"{root} has nothing below it", **kw)
        return None
    if len(rule_path) < 2:
        raise ctx.fail(loc, "bad_path", f"name a field: {root}.<field>", **kw)
    leaf = rule_path[1]
    if root == "data":
        if leaf not in kind.field_map or len(rule_path) != 2:
            raise ctx.fail(loc, "unknown_field", f"{kind.name} has no field {leaf!r}", value=leaf, **kw)
        return kind.field_map[str(leaf)]
    if leaf not in PROVENANCE_FIELDS:
        raise ctx.fail(loc, "unknown_field", f"provenance has no {leaf!r}; known: {', '.join(PROVENANCE_FIELDS)}", value=leaf, **kw)
    if leaf == "original":
        if len(rule_path) != 3 or rule_path[2] not in kind.field_map:
            raise ctx.fail(loc, "unknown_field", "provenance.original.<field> names a field of the kind", **kw)
    elif len(rule_path) != 2:
        raise ctx.fail(loc, "bad_path", f"provenance.{leaf} has nothing below it", **kw)
    return None


def _source_paths(source: Source) -> list[Path_]:
    if source.type == "path":
        return [source.path]
    return [item.path for item in source.items if item.type == "path"]


def _output_keys(ctx: _Ctx, keys: list[tuple[str, Location]], xml: bool, kind: str) -> None:
    seen: set[tuple[str, ...]] = set()
    leaves: set[tuple[str, ...]] = set()
    for key, loc in keys:
        parts = tuple(key.split("."))
        if any(not p for p in parts) or (xml and not all(_XML_NAME_RE.match(p) for p in parts)):
            raise ctx.fail(loc, "bad_path", "output keys are names joined by dots (XML element names for xml)", kind=kind, value=key)
        for i in range(1, len(parts)):
            if parts[:i] in leaves:
                raise ctx.fail(loc, "bad_path", f"{'.'.join(parts[:i])} is a value and cannot also hold {key}", kind=kind)
        if parts in seen:
            raise ctx.fail(loc, "bad_path", f"{key} is nested inside another output key", kind=kind)
        leaves.add(parts)
        for i in range(1, len(parts)):
            seen.add(parts[:i])
    for parts in leaves:
        if parts in seen:
            raise ctx.fail((), "bad_path", f"{'.'.join(parts)} is both a value and a group of values", kind=kind)


def parse_plan(doc: Document, tables: Mapping[str, CodeTable], path: Path, searched: tuple[str, ...] = ()) -> Plan:
    """Validate the whole document; raise MappingError at the first problem.

    ``searched`` says where the code tables were looked for, so an unknown table id can name every place.
    """
    ctx = _Ctx(doc, tables, searched)
    top = doc.value
    if not isinstance(top, dict):
        raise ctx.fail((), "mapping_format", "a mapping file is a YAML mapping with name, version, direction and outputs")
    direction = top.get("direction")
    if direction not in DIRECTIONS:
        raise ctx.fail(("direction",), "mapping_format", "direction is inbound or outbound", value=direction)
    stem_direction = {".in": "inbound", ".out": "outbound"}.get(Path(path.stem).suffix)
    if stem_direction is not None and stem_direction != direction:
        raise ctx.fail(("direction",), "mapping_format", f"the file name says {stem_direction} but direction says {direction}", value=direction)
    outbound = direction == "outbound"
    _check_keys(ctx, top, _TOP_OUTBOUND if outbound else _TOP_INBOUND, (), "a mapping")
    name = top.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ctx.fail(("name",), "mapping_format", "name is required: letters, digits, _ . -", value=name)
    version = top.get("version")
    if isinstance(version, bool) or not isinstance(version, (str, int)) or str(version) == "" or "@" in str(version):
        raise ctx.fail(("version",), "mapping_format", "version is required (a number or text without @)", value=version)
    description = top.get("description") or ""
    system = top.get("system")
    if not isinstance(description, str) or (system is not None and not isinstance(system, str)):
        raise ctx.fail((), "mapping_format", "description and system are text")
    zone = _parse_zone(ctx, top["zone"], ("zone",)) if "zone" in top else CHINA
    plan = Plan(
        file=doc.file,
        name=name,
        version=str(version),
        direction=direction,
        description=description,
        system=system,
        zone=zone,
        outputs=[],
    )
    if outbound:
        fmt = top.get("format", "json")
        if fmt not in OUTPUT_FORMATS:
            raise ctx.fail(("format",), "mapping_format", f"format is one of {', '.join(OUTPUT_FORMATS)}", value=fmt)
        plan.format = fmt
        root = top.get("root")
        if fmt == "xml" and (not isinstance(root, str) or not _XML_NAME_RE.match(root)):
            raise ctx.fail(("root",), "mapping_format", "xml output needs root: the element that holds one record", value=root)
        if fmt == "json" and root is not None:
            raise ctx.fail(("root",), "mapping_format", "root applies to xml output only", value=root)
        plan.root = root
    else:
        plan.input = _parse_input(ctx, top.get("input"))
    outputs = top.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        raise ctx.fail(("outputs",), "mapping_format", "outputs is a non-empty list of {kind, fields}")
    seen_kinds: set[str] = set()
    for i, raw in enumerate(outputs):
        loc: Location = ("outputs", i)
        if not isinstance(raw, dict):
            raise ctx.fail(loc, "mapping_format", "an output is a mapping with kind and fields")
        kind_name = raw.get("kind")
        _check_keys(ctx, raw, _OUTPUT_KEYS, loc, "an output", kind=kind_name if isinstance(kind_name, str) else None)
        kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            raise ctx.fail(loc + ("kind",), "unknown_kind", f"kind is one of {', '.join(KINDS)}", value=kind_name)
        if outbound and kind.name in seen_kinds:
            raise ctx.fail(loc + ("kind",), "mapping_format", "an outbound mapping has one output per kind", kind=kind.name)
        seen_kinds.add(kind.name)
        when = None
        if "when" in raw:
            if outbound:
                raise ctx.fail(loc + ("when",), "unknown_key", "when applies to inbound outputs", kind=kind.name)
            when = _parse_when(ctx, raw["when"], loc + ("when",), kind.name)
        each = None
        if "each" in raw:
            if outbound:
                raise ctx.fail(loc + ("each",), "unknown_key", "each applies to inbound outputs", kind=kind.name)
            each = _parse_path(ctx, raw["each"], loc + ("each",), kind=kind.name)
            if each[0] == ROOT:
                each = each[1:]  # each: always starts at the item
            if any(isinstance(step, int) for step in each):
                raise ctx.fail(loc + ("each",), "bad_path", "each names a repeated section, not one occurrence of it: "
                               "leave out the index", kind=kind.name, value=raw["each"])
        fields_raw = raw.get("fields")
        if not isinstance(fields_raw, dict) or not fields_raw:
            raise ctx.fail(loc + ("fields",), "mapping_format", "fields is a non-empty mapping of field: rule", kind=kind.name)
        rules: list[Rule] = []
        keys: list[tuple[str, Location]] = []
        for fname, frule in fields_raw.items():
            floc = loc + ("fields", fname)
            if not isinstance(fname, str):
                raise ctx.fail(floc, "unknown_field", "field names are text", kind=kind.name, value=fname)
            if outbound:
                rule = parse_rule(ctx, fname, frule, floc, kind, None, True, zone)
                specs = [_outbound_spec(ctx, p, kind, floc, fname) for p in _source_paths(rule.source)]
                data_spec = specs[0] if rule.source.type == "path" else None
                if rule.formats is not None:
                    reads_time = (data_spec is not None and data_spec.type in ("datetime", "date")) or (
                        rule.source.type == "path" and rule.source.path[:2] in (("provenance", "receipt_time"), ("provenance", "business_time"))
                    )
                    if not reads_time:
                        raise ctx.fail(floc + ("format",), "bad_format", "format applies to date and datetime values", kind=kind.name, field_name=fname)
                rule = replace(rule, spec=data_spec)
                keys.append((fname, floc))
            else:
                spec = kind.field_map.get(fname)
                if spec is None:
                    raise ctx.fail(
                        floc, "unknown_field", f"{kind.name} has no field {fname!r}; fields: {', '.join(kind.field_map)}",
                        kind=kind.name, field_name=fname, value=fname,
                    )
                rule = parse_rule(ctx, fname, frule, floc, kind, spec, False, zone)
                _check_inbound_rule(ctx, rule, spec, kind)
            rules.append(rule)
        if outbound:
            _output_keys(ctx, keys, plan.format == "xml", kind.name)
        else:
            mapped = {r.name for r in rules}
            for req in kind.required:
                if req not in mapped:
                    raise ctx.fail(
                        loc + ("fields",), "missing_required",
                        f"the output does not map required field {req!r} ({kind.field_map[req].title})",
                        kind=kind.name, field_name=req,
                    )
        if each is None:
            # outside each: the occurrence is the item, so /A and A are the same path
            rules = [_unanchor(rule) for rule in rules]
            if when is not None and when.path[:1] == (ROOT,):
                when = replace(when, path=when.path[1:])
        plan.outputs.append(Output(kind, rules, when, doc.line(loc), each))
    if not outbound:
        plan.on_invalid = _plan_policy(ctx, top.get("on_invalid"), plan.outputs)
    return plan


def _unanchor(rule: Rule) -> Rule:
    def strip(source: Source) -> Source:
        if source.type == "path":
            return replace(source, path=source.path[1:]) if source.path[:1] == (ROOT,) else source
        return replace(source, items=tuple(strip(item) for item in source.items))

    return replace(rule, source=strip(rule.source))


def _plan_policy(ctx: _Ctx, raw: Any, outputs: list[Output]) -> InvalidPolicy:
    """The top-level on_invalid block with every field's own entries laid over it (a field's own word wins)."""
    kinds = list({o.kind.name: o.kind for o in outputs}.values())
    try:
        policy = parse_policy(raw, kinds)
    except PolicyError as exc:
        raise ctx.fail(("on_invalid", exc.key), "on_invalid", exc.message, value=exc.key) from None
    for output in outputs:
        for rule in output.rules:
            if rule.on_invalid:
                policy = rule.on_invalid.over(policy)
    return policy
