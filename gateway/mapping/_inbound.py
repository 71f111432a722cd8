"""Compile an inbound plan into one Python function: payload → list of Mapped records.

Each output becomes a straight-line function: path steps are inlined
(``node.get("SBLSH")``), code tables are bound dictionaries, date parsers are
bound closures, and the schema's checks are emitted in place, so mapping and
validation cost what a hand-written function would.  Every field runs inside its
own ``try``; a bad value becomes a FieldError, nothing raises out of ``map()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.mapping import _runtime as rt
from gateway.mapping._errors import MappingError
from gateway.mapping._model import Mapped
from gateway.mapping._spec import Output, Plan, Rule, Source, When
from gateway.schema import CodeTable, FieldError, FieldSpec, RecordKind
from gateway.schema._codegen import CodeWriter, lit
from gateway.schema._validate import emit_cross_checks, emit_value_checks, runtime_namespace
from gateway.schema.identifiers import normalize

_IDENTIFIER_TYPES = frozenset({"credit_code", "id_number", "region_code", "license_id"})
_INLINE_FNS = {"trim": "{v}.strip()", "upper": "{v}.upper()", "lower": "{v}.lower()"}


def _namespace(kind: RecordKind) -> dict[str, Any]:
    ns = runtime_namespace(kind)
    ns.update(
        _Bad=rt.Bad,
        _Mapped=Mapped,
        _text=rt.text,
        _node=rt.node,
        _index=rt.index,
        _item=rt.item,
        _to_int=rt.to_int,
        _to_decimal=rt.to_decimal,
        _normalize=normalize,
        _lookup_multi=rt.lookup_multi,
        _normalize_multi=rt.normalize_multi,
        _dict=dict,
    )
    for name, fn in rt.TEXT_FUNCTIONS.items():
        ns[f"_fn_{name}"] = fn
    return ns


class _OutputWriter:
    """Emits the function for one output of an inbound mapping."""

    def __init__(self, w: CodeWriter, plan: Plan, output: Output, tables: Mapping[str, CodeTable]) -> None:
        self.w = w
        self.plan = plan
        self.output = output
        self.kind = output.kind
        self.tables = tables
        self.nodes: dict[tuple[str | int, ...], str] = {(): "payload"}

    # ---------------------------------------------------------------- value acquisition

    def node_var(self, prefix: tuple[str | int, ...], depth: int) -> str:
        """A local holding the mapping at ``prefix`` (emitted once, before first use)."""
        known = self.nodes.get(prefix)
        if known is not None:
            return known
        parent = self.node_var(prefix[:-1], depth)
        step = prefix[-1]
        var = self.w.temp("n")
        if isinstance(step, int):
            self.w.emit(depth, f"{var} = _index({parent}, {lit(step)})")
        else:
            self.w.emit(depth, f"{var} = {parent}.get({lit(step)})")
            self.w.emit(depth, f"if {var}.__class__ is not _dict: {var} = _node({var})")
        self.nodes[prefix] = var
        return var

    def emit_path_value(self, path: tuple[str | int, ...], var: str, depth: int) -> None:
        """``var`` = the stripped text at ``path`` ("" when absent)."""
        parent = self.node_var(path[:-1], 1)
        leaf = path[-1]
        if isinstance(leaf, int):
            self.w.emit(depth, f"{var} = _item({parent}, {lit(leaf)})")
        else:
            self.w.emit(depth, f"{var} = {parent}.get({lit(leaf)})")
        self.w.emit(depth, f"if {var}.__class__ is not str: {var} = _text({var})")
        self.w.emit(depth, f"{var} = {var}.strip()")

    def emit_source(self, source: Source, depth: int) -> None:
        """Leave the field's raw value in ``v``: stripped text, or a constant."""
        w = self.w
        if source.type == "path":
            self.emit_path_value(source.path, "v", depth)
        elif source.type == "const":
            w.emit(depth, f"v = {lit(source.const)}")
        elif source.type == "first_nonempty":
            first = True
            for item in source.items:
                d = depth if first else depth + 1
                if not first:
                    w.emit(depth, "if not v:")
                if item.type == "const":
                    w.emit(d, f"v = {lit(item.const)}")
                else:
                    self.emit_path_value(item.path, "v", d)
                first = False
        else:  # concat: path parts that are empty are skipped; nothing present gives ""
            parts = w.temp("parts")
            found = w.temp("found")
            w.emit(depth, f"{parts} = []")
            w.emit(depth, f"{found} = False")
            for item in source.items:
                if item.type == "const":
                    w.emit(depth, f"{parts}.append({lit(item.const)})")
                else:
                    t = w.temp("p")
                    self.emit_path_value(item.path, t, depth)
                    w.emit(depth, f"if {t}:")
                    w.emit(depth + 1, f"{parts}.append({t})")
                    w.emit(depth + 1, f"{found} = True")
            w.emit(depth, f"v = {lit(source.separator)}.join({parts}) if {found} else ''")

    # ---------------------------------------------------------------- the value pipeline

    def emit_pipeline(self, rule: Rule, spec: FieldSpec, depth: int, errs: str = "errs") -> None:
        """Transform ``v`` (non-empty) into the field's canonical value, check it and store it."""
        w = self.w
        for name in rule.fns:
            inline = _INLINE_FNS.get(name)
            w.emit(depth, f"v = {inline.format(v='v')}" if inline else f"v = _fn_{name}(v)")
        if spec.type in _IDENTIFIER_TYPES and "identifier" not in rule.fns:
            w.emit(depth, "v = v.upper() if v.isascii() and ' ' not in v else _normalize(v)")
        lookup = rule.lookup
        checked = False
        if lookup is not None:
            table = w.bind(lookup.table, "_T")
            w.emit(depth, f"orig[{lit(spec.name)}] = v")
            if spec.multiple:
                w.emit(
                    depth,
                    f"v = _lookup_multi(v, {table}, {lit(lookup.on_missing)}, {lit(lookup.default)}, {lit(lookup.name)})",
                )
            else:
                r = w.temp("r")
                w.emit(depth, f"{r} = {table}.get(v)")
                w.emit(depth, f"if {r} is None:")
                if lookup.on_missing == "error":
                    what = f"not in code table {lookup.name}" if lookup.name != "inline map" else "not in the mapping's map"
                    w.emit(depth + 1, f"raise _Bad('code_unknown', v, {lit(what)})")
                elif lookup.on_missing == "default":
                    w.emit(depth + 1, f"{r} = {lit(lookup.default)}")
                else:
                    w.emit(depth + 1, f"{r} = v")
                w.emit(depth, f"v = {r}")
            # compile time proved every result is a valid value unless raw values are kept
            checked = lookup.on_missing != "keep" and spec.type in ("code", "enum")
        elif spec.multiple:
            w.emit(depth, "v = _normalize_multi(v)")
        t = spec.type
        if t == "int":
            w.emit(depth, "if v.__class__ is not int: v = _to_int(v)")
        elif t == "decimal":
            w.emit(depth, "v = _to_decimal(v)")
        elif t in ("datetime", "date"):
            formats = rule.formats
            if formats is None or formats == ("auto",):
                formats = rt.AUTO_DATE if t == "date" else rt.AUTO_DATETIME
            parser = w.bind(rt.make_datetime_parser(formats, rule.zone, date_only=t == "date"), "_P")
            w.emit(depth, f"v = {parser}(v)")
        elif not checked:
            emit_value_checks(w, spec, "v", depth, errs, self.tables)
        w.emit(depth, f"data[{lit(spec.name)}] = v")

    def emit_field(self, rule: Rule) -> None:
        spec = rule.spec
        assert spec is not None
        w = self.w
        s = w.bind(spec, "_S")
        # resolve the nodes this field needs before its try block (they never raise)
        for path in _paths(rule.source):
            self.node_var(path[:-1], 1)
        w.emit(1, f"# {spec.name} ({spec.title})")
        w.emit(1, "try:")
        self.emit_source(rule.source, 2)
        if rule.default is not None:
            w.emit(2, f"if not v: v = {lit(rule.default)}")
        if rule.source.type == "const" and rule.source.const not in ("", None):
            self.emit_pipeline(rule, spec, 2)
        else:
            w.emit(2, "if v:")
            self.emit_pipeline(rule, spec, 3)
            if spec.required:
                w.emit(2, "else:")
                w.emit(3, f"errs.append(_E({s}, 'required', None))")
        w.emit(1, "except _Bad as e:")
        w.emit(2, f"errs.append(_E({s}, e.rule, e.value, e.detail))")
        w.emit(1, "except Exception as e:")
        w.emit(2, f"errs.append(_E({s}, 'internal', None, repr(e)))")

    def emit(self, function: str) -> None:
        w = self.w
        w.emit(0, f"def {function}(payload):")
        w.emit(1, "errs = []")
        w.emit(1, "data = {}")
        w.emit(1, "orig = {}")
        for rule in self.output.rules:
            self.emit_field(rule)
        emit_cross_checks(w, self.kind, {r.name for r in self.output.rules}, "data", "errs", 1)
        w.emit(1, f"return _Mapped({lit(self.kind.name)}, data, orig, errs)")
        w.emit(0, "")


def _paths(source: Source) -> list[tuple[str | int, ...]]:
    if source.type == "path":
        return [source.path]
    return [item.path for item in source.items if item.type == "path"]


def _when_text(when: When) -> str:
    path = "/".join(map(str, when.path))
    if when.type == "equals":
        return f"when {path} equals {when.value!r}"
    return f"when {when.type} {path}"


def _when_holds(when: When) -> Callable[[Mapping[str, Any]], bool]:
    path = when.path
    present = rt.present
    if len(path) == 1 and isinstance(path[0], str) and when.type != "equals":
        key = path[0]  # the common case, a top-level section: one dict lookup
        if when.type == "exists":
            return lambda payload: present(payload.get(key))
        return lambda payload: not present(payload.get(key))
    if when.type == "exists":
        return lambda payload: rt.present(rt.resolve(payload, path))
    if when.type == "absent":
        return lambda payload: not rt.present(rt.resolve(payload, path))
    expected = when.value

    def equals(payload: Mapping[str, Any]) -> bool:
        try:
            return rt.text(rt.resolve(payload, path)).strip() == expected
        except rt.Bad:
            return False

    return equals


def _probe(plan: Plan, output: Output, rule: Rule, tables: Mapping[str, CodeTable]) -> None:
    """Run a constant or default through its field's pipeline now, so a bad one fails at load."""
    spec = rule.spec
    assert spec is not None
    for value, where in ((rule.source.const, "const"), (rule.default, "default")):
        if value is None or (where == "const" and rule.source.type != "const"):
            continue
        w = CodeWriter(_namespace(output.kind))
        writer = _OutputWriter(w, plan, output, tables)
        w.emit(0, "def probe(v):")
        w.emit(1, "errs = []")
        w.emit(1, "data = {}")
        w.emit(1, "orig = {}")
        w.emit(1, "try:")
        writer.emit_pipeline(rule, spec, 2)
        w.emit(1, "except _Bad as e:")
        w.emit(2, f"errs.append(_E({w.bind(spec, '_S')}, e.rule, e.value, e.detail))")
        w.emit(1, "except Exception as e:")
        w.emit(2, f"errs.append(_E({w.bind(spec, '_S')}, 'internal', v, repr(e)))")
        w.emit(1, "return errs")
        errors: list[FieldError] = w.build("probe", f"probe {plan.name} {spec.name}")(value)
        if errors:
            raise MappingError(
                f"the {where} is not a valid value for this field: {errors[0].message}",
                file=plan.file,
                line=rule.line,
                kind=output.kind.name,
                field=spec.name,
                rule=f"bad_{where}",
                value=value,
            )


def compile_inbound(plan: Plan, tables: Mapping[str, CodeTable]) -> tuple[Callable[[Any], list[Mapped]], str]:
    """The ``map`` function of ``plan`` and its generated source (for ``--show-source`` and debugging)."""
    first_kind = plan.outputs[0].kind.name
    w = CodeWriter({"_dict": dict})
    sources: list[str] = []
    guards: list[str] = []
    for i, output in enumerate(plan.outputs):
        for rule in output.rules:
            _probe(plan, output, rule, tables)
        # each output is compiled in its own namespace: its error factory names its kind
        sub = CodeWriter(_namespace(output.kind))
        _OutputWriter(sub, plan, output, tables).emit("map_output")
        w.ns[f"_out{i}"] = sub.build("map_output", f"{plan.name}@{plan.version} output {i} ({output.kind.name})")
        sources.append(sub.source())
        guards.append(w.bind(_when_holds(output.when), "_W") if output.when is not None else "")
    described = "; ".join(_when_text(o.when) for o in plan.outputs if o.when is not None)
    no_output_field = "/".join(map(str, plan.outputs[0].when.path)) if plan.outputs[0].when else ""
    w.ns["_no_output"] = lambda: Mapped(
        first_kind,
        None,
        {},
        [FieldError(no_output_field, "no_output", "", f"no output of mapping {plan.name} applies ({described})", first_kind)],
    )
    w.ns["_crash"] = lambda exc: Mapped(
        first_kind, None, {}, [FieldError("", "internal", "", f"mapping {plan.name} failed: {exc!r}", first_kind)]
    )
    w.ns["_not_mapping"] = lambda payload: Mapped(
        first_kind,
        None,
        {},
        [FieldError("", "value_type", type(payload).__name__, "the item is not a mapping of fields", first_kind)],
    )
    w.ns["_Mapping"] = Mapping
    w.emit(0, "def map_payload(payload):")
    w.emit(1, "if payload.__class__ is not _dict and not isinstance(payload, _Mapping):")
    w.emit(2, "return [_not_mapping(payload)]")
    w.emit(1, "try:")
    if len(plan.outputs) == 1 and not guards[0]:
        w.emit(2, "return [_out0(payload)]")
    else:
        w.emit(2, "out = []")
        for i, guard in enumerate(guards):
            if guard:
                w.emit(2, f"if {guard}(payload): out.append(_out{i}(payload))")
            else:
                w.emit(2, f"out.append(_out{i}(payload))")
        w.emit(2, "return out or [_no_output()]")
    w.emit(1, "except Exception as e:")
    w.emit(2, "return [_crash(e)]")
    fn = w.build("map_payload", f"inbound mapping {plan.name}@{plan.version}")
    return fn, "\n".join([*sources, w.source()])


class InboundMapping:
    """A compiled inbound mapping: counterpart payload → common-schema records.

    ``map(payload)`` never raises: values that cannot be mapped or fail the
    schema's checks come back as ``Mapped.errors``.
    """

    direction = "inbound"

    def __init__(self, plan: Plan, path: Path, tables: Mapping[str, CodeTable]) -> None:
        self.name = plan.name
        self.version = plan.version
        self.path = path
        self.system = plan.system
        self.description = plan.description
        self.input: dict[str, Any] = dict(plan.input)
        self.kinds: tuple[str, ...] = tuple(dict.fromkeys(o.kind.name for o in plan.outputs))
        self.plan = plan
        fn, source = compile_inbound(plan, tables)
        self.source = source
        self.map: Callable[[Mapping[str, Any]], list[Mapped]] = fn

    @property
    def ref(self) -> str:
        """``name@version``, as recorded in provenance."""
        return f"{self.name}@{self.version}"

    def __repr__(self) -> str:
        return f"InboundMapping({self.ref}, kinds={self.kinds})"
