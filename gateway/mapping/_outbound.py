"""Compile an outbound plan: a stored common-schema record → the body a counterpart expects.

One function per kind, generated like the inbound ones.  Rendering is strict: a
missing required value, an unknown code or a malformed date raises
:class:`MappingError` naming the kind, the output field and the rule, because a
delivery that cannot be rendered must be dead-lettered, not sent half-empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lxml import etree

from gateway.mapping import _runtime as rt
from gateway.mapping._errors import MappingError
from gateway.mapping._spec import Output, Plan, Rule
from gateway.schema import CodeTable
from gateway.schema._codegen import CodeWriter, lit
from gateway.schema._types import show_value

_INLINE_FNS = {"trim": "{v}.strip()", "upper": "{v}.upper()", "lower": "{v}.lower()"}


class _Failure:
    """Turns a run-time problem of one output field into a MappingError (bound per field)."""

    def __init__(self, plan: Plan, output: Output, rule: Rule) -> None:
        self.file = plan.file
        self.line = rule.line
        self.kind = output.kind.name
        self.field = rule.name
        self.personal = bool(rule.spec is not None and rule.spec.personal)
        self.source = "/".join(map(str, rule.source.path)) if rule.source.type == "path" else rule.source.type

    def __call__(self, exc: Exception) -> MappingError:
        if isinstance(exc, rt.Bad):
            rule, value, detail = exc.rule, exc.value, exc.detail
        else:
            rule, value, detail = "internal", None, repr(exc)
        messages = {
            "required": f"no value at {self.source}, and the counterpart requires this field",
            "code_unknown": "the value has no counterpart code",
            "datetime_format": "the value is not an ISO 8601 date or time",
        }
        message = messages.get(rule, rule)
        if detail:
            message = f"{message}: {detail}"
        shown = show_value(value, self.personal) if value is not None else None
        return MappingError(message, file=self.file, line=self.line, kind=self.kind, field=self.field, rule=rule, value=shown)


class _RenderWriter:
    def __init__(self, w: CodeWriter, plan: Plan, output: Output) -> None:
        self.w = w
        self.plan = plan
        self.output = output
        self.nodes: dict[tuple[str | int, ...], str] = {(): "rec"}
        self.groups: dict[tuple[str, ...], str] = {(): "out"}

    def node_var(self, prefix: tuple[str | int, ...]) -> str:
        known = self.nodes.get(prefix)
        if known is not None:
            return known
        parent = self.node_var(prefix[:-1])
        var = self.w.temp("n")
        self.w.emit(1, f"{var} = {parent}.get({lit(prefix[-1])})")
        self.w.emit(1, f"if {var}.__class__ is not _dict: {var} = _node({var})")
        self.nodes[prefix] = var
        return var

    def group_var(self, parts: tuple[str, ...]) -> str:
        known = self.groups.get(parts)
        if known is not None:
            return known
        parent = self.group_var(parts[:-1])
        var = self.w.temp("g")
        self.w.emit(1, f"{var} = {{}}")
        self.w.emit(1, f"{parent}[{lit(parts[-1])}] = {var}")
        self.groups[parts] = var
        return var

    def emit_value(self, path: tuple[str | int, ...], var: str, depth: int) -> None:
        parent = self.nodes[path[:-1]]
        self.w.emit(depth, f"{var} = {parent}.get({lit(path[-1])})")

    def emit_field(self, rule: Rule) -> None:
        w = self.w
        fail = w.bind(_Failure(self.plan, self.output, rule), "_fail", f"reports a failure of {rule.name} as a MappingError "
                      f"naming {Path(self.plan.file).name}:{rule.line}")
        source = rule.source
        paths = [source.path] if source.type == "path" else [i.path for i in source.items if i.type == "path"]
        for path in paths:
            self.node_var(path[:-1])
        parts = tuple(rule.name.split("."))
        target = self.group_var(parts[:-1])
        w.emit(1, f"# {rule.name} ← {Path(self.plan.file).name}:{rule.line}")
        w.emit(1, "try:")
        d = 2
        if source.type == "path":
            self.emit_value(source.path, "v", d)
        elif source.type == "const":
            w.emit(d, f"v = {lit(source.const)}")
        elif source.type == "first_nonempty":
            w.emit(d, "v = None")
            for item in source.items:
                w.emit(d, "if v is None or v == '':")
                if item.type == "const":
                    w.emit(d + 1, f"v = {lit(item.const)}")
                else:
                    self.emit_value(item.path, "v", d + 1)
        else:
            acc = w.temp("parts")
            found = w.temp("found")
            w.emit(d, f"{acc} = []")
            w.emit(d, f"{found} = False")
            for item in source.items:
                if item.type == "const":
                    w.emit(d, f"{acc}.append({lit(item.const)})")
                    continue
                t = w.temp("p")
                self.emit_value(item.path, t, d)
                w.emit(d, f"if {t} is not None and {t} != '':")
                w.emit(d + 1, f"{acc}.append({t} if {t}.__class__ is str else _text({t}))")
                w.emit(d + 1, f"{found} = True")
            w.emit(d, f"v = {lit(source.separator)}.join({acc}) if {found} else None")
        if rule.default is not None:
            w.emit(d, f"if v is None or v == '': v = {lit(rule.default)}")
        elif rule.required:
            w.emit(d, "if v is None or v == '': raise _Bad('required', None)")
        else:
            w.emit(d, "if v is not None and v != '':")
            d += 1
        if rule.lookup is not None:
            lk = rule.lookup
            table = w.bind(lk.table, "_T", f"{'code table ' + lk.name if lk.name != 'inline map' else 'the inline map'} "
                           f"({len(lk.table)} entries)")
            r = w.temp("r")
            w.emit(d, f"{r} = {table}.get(v if v.__class__ is str else _text(v))")
            w.emit(d, f"if {r} is None:")
            if lk.on_missing == "error":
                w.emit(d + 1, f"raise _Bad('code_unknown', v, {lit('not in ' + lk.name)})")
            elif lk.on_missing == "default":
                w.emit(d + 1, f"{r} = {lit(lk.default)}")
            else:
                w.emit(d + 1, f"{r} = v")
            w.emit(d, f"v = {r}")
        if rule.formats is not None:
            formatter = w.bind(rt.make_datetime_formatter(rule.formats[0], rule.zone), "_F",
                               f"writes dates as {rule.formats[0]} in UTC{rt.zone_text(rule.zone)}")
            w.emit(d, f"v = {formatter}(v)")
        if rule.fns:
            w.emit(d, "if v.__class__ is not str: v = _text(v)")
            for name in rule.fns:
                inline = _INLINE_FNS.get(name)
                w.emit(d, f"v = {inline.format(v='v')}" if inline else f"v = _fn_{name}(v)")
        w.emit(d, f"{target}[{lit(parts[-1])}] = v")
        w.emit(1, "except Exception as e:")
        w.emit(2, f"raise {fail}(e) from None")

    def emit(self) -> None:
        w = self.w
        w.emit(0, "def render(rec):")
        w.emit(1, "out = {}")
        for rule in self.output.rules:
            self.emit_field(rule)
        w.emit(1, "return out")


def _to_xml(root: str, body: Mapping[str, Any]) -> bytes:
    element = etree.Element(root)

    def fill(parent: etree._Element, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            child = etree.SubElement(parent, key)
            if isinstance(value, Mapping):
                fill(child, value)
            elif value is not None:
                child.text = value if isinstance(value, str) else rt.text(value)

    fill(element, body)
    return etree.tostring(element, xml_declaration=True, encoding="UTF-8")


def compile_outbound(plan: Plan, tables: Mapping[str, CodeTable]) -> tuple[dict[str, Callable[[Mapping[str, Any]], Any]], str]:
    renderers: dict[str, Callable[[Mapping[str, Any]], Any]] = {}
    sources = []
    for output in plan.outputs:
        ns: dict[str, Any] = {"_dict": dict, "_node": rt.node, "_text": rt.text, "_Bad": rt.Bad}
        for name, fn in rt.TEXT_FUNCTIONS.items():
            ns[f"_fn_{name}"] = fn
        w = CodeWriter(ns)
        _RenderWriter(w, plan, output).emit()
        render = w.build("render", f"outbound mapping {plan.name}@{plan.version} {output.kind.name}")
        if plan.format == "xml":
            root = plan.root or "record"

            def render_xml(record: Mapping[str, Any], _render: Callable[..., Any] = render, _root: str = root) -> bytes:
                return _to_xml(_root, _render(record))

            renderers[output.kind.name] = render_xml
        else:
            renderers[output.kind.name] = render
        legend = "".join(f"#   {line}\n" for line in w.legend())
        sources.append(f"# {output.kind.name} ({output.kind.title}), {Path(plan.file).name}:{output.line}\n"
                       + (f"# bound values:\n{legend}" if legend else "") + w.source())
    return renderers, "\n".join(sources)


class OutboundMapping:
    """A compiled outbound mapping: stored common record → counterpart body (dict, or XML bytes)."""

    direction = "outbound"

    def __init__(self, plan: Plan, path: Path, tables: Mapping[str, CodeTable]) -> None:
        self.name = plan.name
        self.version = plan.version
        self.path = path
        self.system = plan.system
        self.description = plan.description
        self.format = plan.format
        self.kinds: tuple[str, ...] = tuple(o.kind.name for o in plan.outputs)
        self.plan = plan
        self._renderers, self.source = compile_outbound(plan, tables)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, record: Mapping[str, Any]) -> Any:
        """The counterpart body for ``record``; raises MappingError when it cannot be rendered."""
        kind = record.get("kind") if isinstance(record, Mapping) else None
        renderer = self._renderers.get(kind) if isinstance(kind, str) else None
        if renderer is None:
            raise MappingError(
                f"this mapping renders {', '.join(self.kinds)} only",
                file=str(self.path),
                kind=kind if isinstance(kind, str) else None,
                rule="kind_not_mapped",
                value=kind,
            )
        return renderer(record)

    def __reduce__(self) -> tuple[Any, ...]:
        # compiled functions do not pickle; a helper process compiles the same file again
        return (_reload_outbound, (str(self.path),))

    def __repr__(self) -> str:
        return f"OutboundMapping({self.ref}, kinds={self.kinds})"


def _reload_outbound(path: str) -> OutboundMapping:
    """Unpickling: the same mapping compiled again from its file."""
    from gateway.mapping._load import load_mapping

    mapping = load_mapping(path)
    assert isinstance(mapping, OutboundMapping)
    return mapping
