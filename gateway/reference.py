"""Reference documentation generated from the code: every gateway.toml key (from the configuration models) and
every common-schema kind, field and code table (from gateway.schema). `gateway docs` writes them; a test keeps
the committed copies under docs/reference/ equal to what the code says.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Union

import click
from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

__all__ = ["REFERENCE_FILES", "config_reference", "docs", "schema_reference"]

REFERENCE_FILES = {"configuration.md": "config", "schema.md": "schema"}
REGENERATE = "gateway docs write docs/reference"

_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*?#\s*(.+)$")
_FIELD = re.compile(r"^    (\w+)\s*:\s*\S")


@dataclass(frozen=True)
class _Key:
    key: str
    type: str
    default: str
    aliases: tuple[str, ...]
    note: str


@functools.cache
def _comments(model: type) -> dict[str, str]:
    """The code's own words for each key: the ``# …`` comment on the field's line, else the comment lines
    right above it."""
    try:
        source = inspect.getsource(model)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    above: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        m = _FIELD.match(line)
        if m and m.group(1) not in out:
            trailing = _COMMENT.match(line)
            text = trailing.group(2).strip() if trailing else " ".join(above)
            if text:
                out[m.group(1)] = text
        above = []
    return out


def _is_duration(info: FieldInfo) -> bool:
    return any(repr(m) == "Duration" for m in info.metadata)


def _type_name(annotation: Any, info: FieldInfo | None = None) -> str:
    if info is not None and _is_duration(info):
        return "duration"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        if any(repr(m) == "Duration" for m in args[1:]):
            return "duration"
        return _type_name(args[0])
    if origin in (Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(names))
    if origin is Literal:
        return " \\| ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in args)
    if origin in (list, tuple, set, frozenset):
        inner = [a for a in args if a is not Ellipsis]
        return f"list of {_type_name(inner[0])}" if inner else "list"
    if origin is dict:
        return "table"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
    if annotation in names:
        return names[annotation]
    return getattr(annotation, "__name__", str(annotation)).replace("typing.", "")


def _default(info: FieldInfo, duration: bool) -> str:
    if info.default_factory is not None:
        try:
            value = info.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
    elif info.default is PydanticUndefined:
        return "**required**"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "(section defaults)"
    if value is None:
        return "none"
    if duration and isinstance(value, int | float | timedelta):
        from gateway.durations import suggest

        seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
        return f'`"{suggest(seconds)}"`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, set | frozenset):  # no order of its own: sorted, so the reference reads the same every time
        value = sorted(value, key=lambda v: (type(v).__name__, v))
    if isinstance(value, list | tuple):
        return "`[]`" if not value else "`[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v)
                                                      for v in value) + "]`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    return f"`{getattr(value, 'value', value)}`"


def _submodels(annotation: Any) -> list[type[BaseModel]]:
    """The section models a field holds: one, or the alternatives of a union (auth = bearer or hmac …)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _submodels(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _submodels(a)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The section model a field holds, directly or optionally (None for none, or for a choice of several)."""
    models = _submodels(annotation)
    return models[0] if len(models) == 1 else None


def _variant(model: type[BaseModel]) -> str:
    """What tells one alternative of a union from the others: its one-value Literal key (type = "hmac")."""
    for name, info in model.model_fields.items():
        args = typing.get_args(info.annotation) if typing.get_origin(info.annotation) is Literal else ()
        if len(args) == 1:
            return f'⟨{name} = "{args[0]}"⟩'
    return f"⟨{model.__name__}⟩"


_VARIANT = re.compile(r"⟨([^⟩]*)⟩")


def _heading(path: str, brackets: str = "[]", also: str = "") -> str:
    """``[a.b.c]``, with the alternative a section belongs to said after it: ``[a.auth.key]`` (auth type = "hmac")."""
    variants = _VARIANT.findall(path) + ([also] if also else [])
    clean = _VARIANT.sub("", path)
    head = f"`{brackets[0]}{clean}{brackets[1]}`"
    return head + (" (" + "; ".join(variants) + ")" if variants else "")


def _container(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _container(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        for a in typing.get_args(annotation):
            if (c := _container(a)) != "":
                return c
    if origin is dict:
        return "dict"
    if origin in (list, tuple):
        return "list"
    return ""


def _keys(model: type[BaseModel]) -> Iterator[tuple[str, FieldInfo, _Key]]:
    comments: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        if issubclass(klass, BaseModel) and not klass.__module__.startswith("pydantic"):
            comments.update(_comments(klass))
    for name, info in model.model_fields.items():
        if name in ("base_dir", "path") and model.__name__ == "GatewayConfig":
            continue  # set by the loader, not written in gateway.toml
        alias = info.validation_alias
        key, aliases = name, ()
        if isinstance(alias, AliasChoices):
            choices = [c for c in alias.choices if isinstance(c, str)]
            key, aliases = choices[0], tuple(choices[1:])
        elif isinstance(alias, str):
            key = alias
        duration = _is_duration(info)
        note = (info.description or comments.get(name, "")).replace("|", "\\|")
        yield name, info, _Key(key, _type_name(info.annotation, info), _default(info, duration), aliases, note)


def _sections(model: type[BaseModel], path: str, seen: set[str]) -> Iterator[tuple[str, type[BaseModel]]]:
    yield path, model
    keys = {name: k.key for name, _, k in _keys(model)}
    for name, info in model.model_fields.items():
        sub = _submodel(info.annotation)
        choices = _submodels(info.annotation)
        if sub is None and len(choices) > 1:
            for choice in choices:
                child = f"{path}.{keys[name]}" if path else keys[name]
                if child + _variant(choice) not in seen:
                    seen.add(child + _variant(choice))
                    yield from _sections(choice, child + _variant(choice), seen)
            continue
        if sub is None:
            if _container(info.annotation) in ("dict", "list"):
                args = typing.get_args(info.annotation)
                inner = _submodel(args[-1]) if args else None
                if inner is not None:
                    key = keys[name]
                    marker = ".<name>" if _container(info.annotation) == "dict" else "[]"
                    child = f"{path}.{key}{marker}" if path else f"{key}{marker}"
                    if child not in seen:
                        seen.add(child)
                        yield from _sections(inner, child, seen)
            continue
        key = keys[name]
        child = f"{path}.{key}" if path else key
        if child not in seen:
            seen.add(child)
            yield from _sections(sub, child, seen)


def _table(model: type[BaseModel]) -> list[str]:
    rows = ["| key | type | default | deprecated names | what it is |", "|---|---|---|---|---|"]
    for _, info, k in _keys(model):
        if _submodel(info.annotation) is not None and k.default == "(section defaults)":
            continue  # a sub-section: it has its own heading
        rows.append(f"| `{k.key}` | {k.type} | {k.default} | {', '.join(f'`{a}`' for a in k.aliases)} | {k.note} |")
    return rows if len(rows) > 2 else []


def _doc(model: type) -> str:
    text = inspect.getdoc(model) or ""
    inherited = inspect.getdoc(BaseModel) or ""
    return "" if text == inherited else " ".join(text.split())


def config_reference() -> str:
    """Markdown: every section and key of gateway.toml, with the adapters' own keys for sources and sinks."""
    from gateway.adapters import discover
    from gateway.config import GatewayConfig
    from gateway.supervision.config import SupervisionConfig

    out = ["# Configuration reference (gateway.toml)", "",
           f"Generated from the configuration models by `{REGENERATE}`; do not edit by hand.", "",
           "Relative paths resolve against the folder of gateway.toml. Secrets are never written here: keys that "
           'take one name `{ env = "NAME" }` or `{ file = "path" }`. A deprecated name still works; '
           "`gateway check` lists each one it finds with the name to use. Unknown keys are errors. A *duration* is a "
           'number with a unit: "250ms", "30s", "5m", "2h", "7d" (a bare number of seconds, the old way, still '
           "works and `gateway check` warns).", ""]
    seen: set[str] = set()
    for path, model in _sections(GatewayConfig, "", seen):
        if path == "":
            continue
        array = "[]" in path and not path.startswith(("sources.", "sinks."))
        heading = _heading(path.replace("[]", ""), "⟦⟧") if array else _heading(path)
        rows = _table(model)
        out += [f"## {heading.replace('⟦', '[[').replace('⟧', ']]')}", ""]
        if doc := _doc(model):
            out += [doc, ""]
        out += rows + ([""] if rows else [])
        if path == "supervision":
            out += ["### `[supervision.rules]`", "",
                    "Thresholds of the electronic-supervision rules (电子监察规则).", ""] + _table(SupervisionConfig) + [""]
    adapters = discover()
    for name in sorted(adapters):
        adapter = adapters[name]
        for role, model in (("sources", adapter.source_config), ("sinks", adapter.sink_config)):
            if model is None:
                continue
            out += [f"## `[{role}.<name>]` with `adapter = \"{name}\"`", "",
                    f"{adapter.description} Besides the core keys above, a {role[:-1]} of this adapter takes:", ""]
            out += _table(model) + [""]
            for sub_path, sub in _sections(model, f"{role}.<name>", set()):
                if sub is model:
                    continue
                rows = _table(sub)
                if rows:
                    out += [f"### {_heading(sub_path, also=f'adapter `{name}`')}", ""]
                    if doc := _doc(sub):
                        out += [doc, ""]
                    out += rows + [""]
    return "\n".join(out).rstrip() + "\n"


def schema_reference() -> str:
    """Markdown: every record kind of the common schema, its fields, and every code table."""
    from gateway.schema import KINDS, PROVENANCE_FIELDS, SCHEMA_VERSION, code_tables

    out = [f"# Common schema reference (v{SCHEMA_VERSION})", "",
           f"Generated from gateway/schema by `{REGENERATE}`; do not edit by hand. "
           "`gateway schema export DIR` writes the same kinds as JSON Schema for partner teams.", "",
           "Every stored record is `{kind, data, provenance}`; `data` holds the fields below. Types: `str` text, "
           "`int` whole number, `decimal` a decimal string (\"1250.00\"), `datetime` ISO 8601 with offset, `date` "
           "YYYY-MM-DD, `code` a code of the named table, `credit_code` 统一社会信用代码 (GB 32100 check character), "
           "`id_number` 证件号码 checked by its 证件类型 (居民身份证 by GB 11643), `region_code` 行政区划代码. "
           "Personal fields are masked in every error, log and screen unless a role allows otherwise.", "",
           "## Kinds", "", "| kind | 名称 | key fields | business time | version field |", "|---|---|---|---|---|"]
    for name, kind in KINDS.items():
        out.append(f"| [`{name}`](#{name}) | {kind.title} | {', '.join(kind.key_fields)} | {kind.time_field} | "
                   f"{kind.version_field or ''} |")
    out.append("")
    for name, kind in KINDS.items():
        out += [f"### {name}", "", kind.title + (f": {kind.description}" if kind.description else "") + ".", "",
                "| field | 名称 | wire | type | required | limits | personal | notes |",
                "|---|---|---|---|---|---|---|---|"]
        for f in kind.fields:
            ftype = f.type + (f" [`{f.code_table}`](#table-{f.code_table})" if f.code_table else "")
            if f.enum:
                ftype += ": " + ", ".join(f"`{v}`" for v in f.enum)
            limits = []
            if f.max_length and f.type in ("str",):
                limits.append(f"≤ {f.max_length}")
            if f.type == "int" and f.minimum:
                limits.append(f"≥ {f.minimum}")
            notes = f.description
            if f.multiple:
                notes = ("several codes joined by `;`. " + notes).strip()
            if f.id_type_field:
                notes = (f"checked by the 证件类型 in `{f.id_type_field}`. " + notes).strip()
            out.append(f"| `{f.name}` | {f.title} | {f.wire or ''} | {ftype} | {'yes' if f.required else ''} | "
                       f"{' '.join(limits)} | {'yes' if f.personal else ''} | {notes.replace('|', '/')} |")
        out.append("")
    out += ["## Provenance", "", "Every record also carries, outside `data`:", ""]
    out += [f"- `{p}`" for p in PROVENANCE_FIELDS] + [""]
    out += ["## Code tables", ""]
    for table_id, table in sorted(code_tables().items()):
        out += [f"### table-{table_id}", "", f"`{table_id}`: {table.title}."
                + (f" Source: {table.source}." if table.source else "") + (f" {table.note}" if table.note else ""),
                ""]
        if table.is_translation:
            out += [f"Translates into `{table.target}`.", "", "| value | code |", "|---|---|"]
            out += [f"| `{k}` | `{v}` |" for k, v in (table.map or {}).items()]
        else:
            out += ["| code | label |", "|---|---|"] + [f"| `{k}` | {v} |" for k, v in table.codes.items()]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


_GENERATORS = {"config": config_reference, "schema": schema_reference}


@click.group("docs")
def docs() -> None:
    """Reference documentation generated from the code (configuration keys, the common schema)."""


@docs.command("config")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
def docs_config(output: Path | None) -> None:
    """Every gateway.toml section and key: type, default, unit, deprecated names (Markdown)."""
    _emit(config_reference(), output)


@docs.command("schema")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
def docs_schema(output: Path | None) -> None:
    """Every common-schema kind, field, type and code table (Markdown)."""
    _emit(schema_reference(), output)


@docs.command("write")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=Path("docs/reference"))
def docs_write(directory: Path) -> None:
    """Write both references into DIRECTORY (default docs/reference): configuration.md and schema.md."""
    directory.mkdir(parents=True, exist_ok=True)
    for filename, which in REFERENCE_FILES.items():
        _emit(_GENERATORS[which](), directory / filename)


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}", err=True)
