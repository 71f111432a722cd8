"""Compile an inbound plan into one Python function: payload → list of Mapped records.

Each output becomes a straight-line function: path steps are inlined
(``node.get("SBLSH")``), code tables are bound dictionaries, date parsers are
bound closures, and the schema's checks are emitted in place, so mapping and
validation cost what a hand-written function would.  Every field runs inside its
own ``try``; a bad value becomes a FieldError, nothing raises out of ``map()``.

An output with ``each:`` is called once per occurrence of its repeated section;
its relative paths start at the occurrence, ``/``-anchored ones at the item.  The
``on_invalid`` policy is compiled in as one bound judge per output, called only
for a record that has errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.formats._options import merge_input, override_problems
from gateway.mapping import _runtime as rt
from gateway.mapping._errors import MappingError
from gateway.mapping._model import Mapped
from gateway.mapping._policy import EMPTY, InvalidPolicy, PolicyError, make_judge, parse_policy
from gateway.mapping._spec import ROOT, Output, Plan, Rule, Source, When, path_text
from gateway.schema import CodeTable, FieldError, FieldSpec, RecordKind
from gateway.schema._codegen import CodeWriter, lit
from gateway.schema._text import nfc
from gateway.schema._types import show_value
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
        _text_strict=rt.text_strict,
        _nfc=nfc,
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

    def __init__(
        self, w: CodeWriter, plan: Plan, output: Output, tables: Mapping[str, CodeTable], policy: InvalidPolicy = EMPTY
    ) -> None:
        self.w = w
        self.plan = plan
        self.output = output
        self.kind = output.kind
        self.tables = tables
        self.policy = policy
        # Relative paths start at the occurrence (each:) or the item; /-anchored ones always at the item.
        self.nodes: dict[tuple[str | int, ...], str] = {
            (): "occ" if output.each is not None else "payload",
            (ROOT,): "payload",
        }

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

    def emit_path_value(self, path: tuple[str | int, ...], var: str, depth: int, conv: str) -> None:
        """``var`` = the stripped text at ``path`` ("" when absent); ``conv`` turns a non-str value into text."""
        parent = self.node_var(path[:-1], 1)
        leaf = path[-1]
        if isinstance(leaf, int):
            self.w.emit(depth, f"{var} = _item({parent}, {lit(leaf)})")
        else:
            self.w.emit(depth, f"{var} = {parent}.get({lit(leaf)})")
        self.w.emit(depth, f"if {var}.__class__ is not str: {var} = {conv}({var})")
        self.w.emit(depth, f"{var} = {var}.strip()")

    def emit_source(self, source: Source, depth: int, conv: str) -> None:
        """Leave the field's raw value in ``v``: stripped text, or a constant."""
        w = self.w
        if source.type == "path":
            self.emit_path_value(source.path, "v", depth, conv)
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
                    self.emit_path_value(item.path, "v", d, conv)
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
                    self.emit_path_value(item.path, t, depth, conv)
                    w.emit(depth, f"if {t}:")
                    w.emit(depth + 1, f"{parts}.append({t})")
                    w.emit(depth + 1, f"{found} = True")
            w.emit(depth, f"v = {lit(source.separator)}.join({parts}) if {found} else ''")

    # ---------------------------------------------------------------- the value pipeline

    def emit_text_rules(self, rule: Rule, spec: FieldSpec, depth: int) -> None:
        """Refuse unsafe characters, then normalise to NFC (gateway.schema._text): before functions and lookups."""
        w = self.w
        numbers = isinstance(rule.source.const, int) or isinstance(rule.default, int)
        if numbers and rule.source.type == "const":
            return
        if numbers:  # a number default may stand in for the text
            w.emit(depth, "if v.__class__ is str:")
            depth += 1
        check = "_unsafe_id" if spec.is_identifier else "_unsafe_text"
        r = w.temp("r")
        w.emit(depth, "if not v.isprintable():")
        w.emit(depth + 1, f"{r} = {check}(v)")
        w.emit(depth + 1, f"if {r} is not None: raise _Bad({r}[0], v, {r}[1])")
        w.emit(depth, "if not v.isascii(): v = _nfc(v)")

    def emit_pipeline(self, rule: Rule, spec: FieldSpec, depth: int, errs: str = "errs", probe: bool = False) -> None:
        """Transform ``v`` (non-empty) into the field's canonical value, check it and store it.

        A constant skips the character rules at run time: ``_probe`` ran them on it at load.
        """
        w = self.w
        if probe or rule.source.type != "const":
            self.emit_text_rules(rule, spec, depth)
        for name in rule.fns:
            inline = _INLINE_FNS.get(name)
            w.emit(depth, f"v = {inline.format(v='v')}" if inline else f"v = _fn_{name}(v)")
        if spec.type in _IDENTIFIER_TYPES and "identifier" not in rule.fns:
            w.emit(depth, "v = v.upper() if v.isascii() and ' ' not in v else _normalize(v)")
        lookup = rule.lookup
        checked = False
        if lookup is not None:
            note = f"code table {lookup.name}" if lookup.name != "inline map" else "the mapping's inline map"
            table = w.bind(lookup.table, "_T", f"{note} ({len(lookup.table)} entries)")
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
            w.emit(depth, f"if not {lit(spec.minimum)} <= v <= {lit(spec.maximum)}: raise _Bad('int_range', v)")
        elif t == "decimal":
            w.emit(depth, "v = _to_decimal(v)")
        elif t in ("datetime", "date"):
            formats = rule.formats
            if formats is None or formats == ("auto",):
                formats = rt.AUTO_DATE if t == "date" else rt.AUTO_DATETIME
            parser = w.bind(
                rt.make_datetime_parser(formats, rule.zone, date_only=t == "date"),
                "_P",
                f"{t} parser: {', '.join(formats)}; times without a zone read as UTC{rt.zone_text(rule.zone)}",
            )
            w.emit(depth, f"v = {parser}(v)")
        elif not checked:
            emit_value_checks(w, spec, "v", depth, errs, self.tables)
        w.emit(depth, f"data[{lit(spec.name)}] = v")

    def emit_field(self, rule: Rule) -> None:
        spec = rule.spec
        assert spec is not None
        w = self.w
        s = w.bind(spec, "_S")
        # a number in an identifier or a date is a counterpart's mistake (370602.10 lost its zero); in free text
        # or a number field it is just a number
        conv = "_text_strict" if spec.is_identifier or spec.type in ("datetime", "date") else "_text"
        # resolve the nodes this field needs before its try block (they never raise)
        for path in _paths(rule.source):
            self.node_var(path[:-1], 1)
        where = f"{Path(self.plan.file).name}:{rule.line}"
        w.emit(1, f"# {spec.name} ({spec.title}) ← {where}")
        w.emit(1, "try:")
        self.emit_source(rule.source, 2, conv)
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
        w.emit(2, f"errs.append(_E({s}, 'internal', None, {lit(f'mapping {self.plan.file}:{rule.line}: ')} + repr(e)))")

    def emit(self, function: str) -> None:
        w = self.w
        w.emit(0, f"def {function}(payload, occ):" if self.output.each is not None else f"def {function}(payload):")
        w.emit(1, "errs = []")
        w.emit(1, "data = {}")
        w.emit(1, "orig = {}")
        for rule in self.output.rules:
            self.emit_field(rule)
        emit_cross_checks(w, self.kind, {r.name for r in self.output.rules}, "data", "errs", 1)
        if self.policy.may_accept(self.kind):
            judge = w.bind(make_judge(self.policy, self.kind), "_judge", "on_invalid: accept the errors as findings, or none")
            w.emit(1, "if errs:")
            w.emit(2, f"errs, found = {judge}(errs, data)")
            w.emit(2, f"return _Mapped({lit(self.kind.name)}, data, orig, errs, found)")
        w.emit(1, f"return _Mapped({lit(self.kind.name)}, data, orig, errs)")
        w.emit(0, "")


def _paths(source: Source) -> list[tuple[str | int, ...]]:
    if source.type == "path":
        return [source.path]
    return [item.path for item in source.items if item.type == "path"]


def _when_text(when: When) -> str:
    path = path_text(when.path)
    if when.type == "equals":
        return f"when {path} equals {when.value!r}"
    return f"when {when.type} {path}"


def _output_text(output: Output) -> str:
    parts = []
    if output.each is not None:
        parts.append(f"each {path_text(output.each)}")
    if output.when is not None:
        parts.append(_when_text(output.when))
    return ", ".join(parts)


def _when_holds(when: When) -> Callable[[Any, Mapping[str, Any]], bool]:
    """``holds(occurrence, payload)``: relative paths from the occurrence, ``/``-anchored ones from the payload."""
    path = when.path
    anchored = path[:1] == (ROOT,)
    if anchored:
        path = path[1:]
    present = rt.present
    if len(path) == 1 and isinstance(path[0], str) and when.type != "equals" and not anchored:
        key = path[0]  # the common case, a top-level section: one dict lookup
        if when.type == "exists":
            return lambda occ, payload: present(occ.get(key))
        return lambda occ, payload: not present(occ.get(key))

    def value(occ: Any, payload: Mapping[str, Any]) -> Any:
        return rt.resolve(payload if anchored else occ, path)

    if when.type == "exists":
        return lambda occ, payload: present(value(occ, payload))
    if when.type == "absent":
        return lambda occ, payload: not present(value(occ, payload))
    expected = when.value

    def equals(occ: Any, payload: Mapping[str, Any]) -> bool:
        try:
            found = rt.text(value(occ, payload)).strip()
        except rt.Bad:
            return False
        return (found if found.isascii() else nfc(found)) == expected

    return equals


def _mark(label: str) -> Callable[[Mapped, int], None]:
    """Names the occurrence on every error and finding of a record an ``each:`` output made."""

    def mark(mapped: Mapped, number: int) -> None:
        where = f"{label} #{number}"
        for e in (*mapped.errors, *mapped.findings):
            e.where = where

    return mark


def _not_a_section(kind: str, label: str) -> Callable[[int, Any], Mapped]:
    def error(number: int, value: Any) -> Mapped:
        return Mapped(kind, None, {}, [FieldError(
            label, "value_type", show_value(value, False),
            f"occurrence {number} of {label} is a single value, not a section of fields", kind, f"{label} #{number}",
        )])

    return error


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
        writer.emit_pipeline(rule, spec, 2, probe=True)
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


def compile_inbound(
    plan: Plan, tables: Mapping[str, CodeTable], policy: InvalidPolicy | None = None
) -> tuple[Callable[[Any], list[Mapped]], str]:
    """The ``map`` function of ``plan`` and its generated source, annotated for ``gateway mapping show``.

    ``policy`` is the on_invalid policy to compile in (the plan's own when None).
    """
    policy = plan.on_invalid if policy is None else policy
    first_kind = plan.outputs[0].kind.name
    w = CodeWriter({"_dict": dict, "_Mapping": Mapping})
    sections: list[str] = []
    calls: list[list[str]] = []
    for i, output in enumerate(plan.outputs):
        for rule in output.rules:
            _probe(plan, output, rule, tables)
        # each output is compiled in its own namespace: its error factory names its kind
        sub = CodeWriter(_namespace(output.kind))
        _OutputWriter(sub, plan, output, tables, policy).emit("map_output")
        w.ns[f"_out{i}"] = sub.build("map_output", f"{plan.name}@{plan.version} output {i} ({output.kind.name})")
        header = f"# output {i} ({Path(plan.file).name}:{output.line}): {output.kind.name} ({output.kind.title})"
        described = _output_text(output)
        legend = "".join(f"#   {line}\n" for line in sub.legend())
        sections.append(
            f"{header}{'; ' + described if described else ''}\n"
            + (f"# bound values:\n{legend}" if legend else "")
            + sub.source().replace("def map_output(", f"def _out{i}(", 1)
        )
        guard = w.bind(_when_holds(output.when), "_W", _when_text(output.when)) if output.when is not None else None
        if output.each is None:
            test = f"if {guard}(payload, payload): " if guard else ""
            calls.append([f"{test}out.append(_out{i}(payload))"])
            continue
        label = path_text(output.each)
        each = w.bind(lambda payload, _path=output.each: rt.occurrences(payload, _path), "_each", f"occurrences of {label}")
        mark = w.bind(_mark(label), "_mark", f"names the occurrence of {label} on errors and findings")
        single = w.bind(_not_a_section(output.kind.name, label), "_single", f"an occurrence of {label} that is a value")
        lines = [
            f"for n, o in enumerate({each}(payload), 1):",
            f"    if o.__class__ is not _dict and not isinstance(o, _Mapping): out.append({single}(n, o)); continue",
        ]
        if guard:
            lines.append(f"    if not {guard}(o, payload): continue")
        lines += [
            f"    m = _out{i}(payload, o)",
            f"    if m.errors or m.findings: {mark}(m, n)",
            "    out.append(m)",
        ]
        calls.append(lines)
    described = "; ".join(d for d in (_output_text(o) for o in plan.outputs) if d)
    first = plan.outputs[0]
    anchor = first.each if first.each is not None else (first.when.path if first.when else ())
    no_output_field = path_text(anchor) if anchor else ""
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
    w.emit(0, "def map_payload(payload):")
    w.emit(1, "if payload.__class__ is not _dict and not isinstance(payload, _Mapping):")
    w.emit(2, "return [_not_mapping(payload)]")
    w.emit(1, "try:")
    if len(plan.outputs) == 1 and len(calls[0]) == 1 and not calls[0][0].startswith("if "):
        w.emit(2, "return [_out0(payload)]")
    else:
        w.emit(2, "out = []")
        for lines in calls:
            for line in lines:
                w.emit(2, line)
        w.emit(2, "return out or [_no_output()]")
    w.emit(1, "except Exception as e:")
    w.emit(2, "return [_crash(e)]")
    fn = w.build("map_payload", f"inbound mapping {plan.name}@{plan.version}")
    legend = "".join(f"#   {line}\n" for line in w.legend())
    driver = "# the mapping: every output in turn, one record per output (per occurrence with each:)\n"
    if legend:
        driver += f"# bound values:\n{legend}"
    return fn, "\n".join([*sections, driver + w.source()])


class OverrideError(ValueError):
    """A source's overrides of its mapping (gateway.toml ``input`` / ``on_invalid``) are wrong; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _reload(path: str, input_overrides: dict[str, Any], on_invalid: Any) -> InboundMapping:
    """Unpickling: the same mapping compiled again from its file, with the same source overrides."""
    from gateway.mapping._load import load_mapping

    mapping = load_mapping(path)
    assert isinstance(mapping, InboundMapping)
    return mapping.for_source(input=input_overrides, on_invalid=on_invalid)


class InboundMapping:
    """A compiled inbound mapping: counterpart payload → common-schema records.

    ``map(payload)`` never raises: values that cannot be mapped or fail the
    schema's checks come back as ``Mapped.errors`` (or ``Mapped.findings``, where the
    on_invalid policy accepts them).  ``input`` is the effective input block: the
    mapping's own with the source's overrides laid over it (see :meth:`for_source`).
    """

    direction = "inbound"

    def __init__(
        self,
        plan: Plan,
        path: Path,
        tables: Mapping[str, CodeTable],
        *,
        input_overrides: Mapping[str, Any] | None = None,
        on_invalid: Any = None,
        source_policy: InvalidPolicy = EMPTY,
    ) -> None:
        self.name = plan.name
        self.version = plan.version
        self.path = path
        self.system = plan.system
        self.description = plan.description
        self.input_overrides: dict[str, Any] = dict(input_overrides or {})
        self.input: dict[str, Any] = merge_input(plan.input, self.input_overrides)
        self.kinds: tuple[str, ...] = tuple(dict.fromkeys(o.kind.name for o in plan.outputs))
        self.plan = plan
        self.on_invalid_overrides = on_invalid
        self.policy = source_policy.over(plan.on_invalid) if source_policy else plan.on_invalid
        self._tables = tables
        fn, source = compile_inbound(plan, tables, self.policy)
        self.source = source
        self.map: Callable[[Mapping[str, Any]], list[Mapped]] = fn

    def for_source(self, *, input: Mapping[str, Any] | None = None, on_invalid: Any = None) -> InboundMapping:
        """This mapping as one source uses it: its ``input`` overrides and ``on_invalid`` laid over the file's.

        Raises :class:`OverrideError` listing every problem (as ``input.encoding: …``).
        """
        if not input and not on_invalid:
            return self
        problems = [p for p in override_problems(input or {}, self.plan.input.get("format"))]
        policy = EMPTY
        try:
            policy = parse_policy(on_invalid, [o.kind for o in self.plan.outputs])
        except PolicyError as exc:
            problems.append(f"on_invalid.{exc.key}: {exc.message}")
        if problems:
            raise OverrideError(problems)
        return InboundMapping(
            self.plan, self.path, self._tables, input_overrides=input, on_invalid=on_invalid, source_policy=policy
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # compiled functions do not pickle; a helper process compiles the same file with the same overrides
        return (_reload, (str(self.path), self.input_overrides, self.on_invalid_overrides))

    @property
    def ref(self) -> str:
        """``name@version``, as recorded in provenance."""
        return f"{self.name}@{self.version}"

    def show(self) -> str:
        """The generated Python of this mapping, with what it was compiled from (``gateway mapping show``)."""
        head = [
            f"# {self.ref}: inbound mapping compiled from {self.path}",
            f"# produces: {', '.join(self.kinds)}",
            f"# input: {', '.join(f'{k}={v!r}' for k, v in self.input.items())}",
        ]
        if self.input_overrides:
            head.append(f"#   of which the source overrides: {', '.join(sorted(self.input_overrides))}")
        policy = self.policy.describe()
        head.append("# on_invalid: " + ("; ".join(policy) if policy else "every field error quarantines the record"))
        head.append("# This is what runs for every item; nothing else interprets the YAML at run time.")
        return "\n".join(head) + "\n\n" + self.source

    def __repr__(self) -> str:
        return f"InboundMapping({self.ref}, kinds={self.kinds})"
