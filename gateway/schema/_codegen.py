"""A tiny source writer for compiled validators and mappings.

Generated code is built only from the schema's own names and from validated
values: every user-supplied object reaches the source as a namespace variable
(:meth:`CodeWriter.bind`) or as ``repr()`` of a plain ``str``/``int``/``bool``
(:func:`lit`), never spliced as raw text.  That is what makes ``compile()`` safe
here, and it is what makes the result as fast as hand-written Python.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

_counter = itertools.count()


def lit(value: str | int | bool | None) -> str:
    """A Python literal for a plain scalar (the only values allowed inline in generated code)."""
    if value is None or value.__class__ in (str, int, bool):
        return repr(value)
    raise TypeError(f"not a plain scalar: {value!r}")


def describe(value: Any) -> str:
    """A bound value in a few words (a field, a set of codes, a table, a function)."""
    doc = getattr(value, "doc", None)
    if isinstance(doc, str) and hasattr(value, "title"):
        return f"field {getattr(value, 'name', '?')}: {doc}"
    if isinstance(value, (frozenset, set)):
        shown = sorted(map(str, value))
        return f"{len(shown)} allowed values: {', '.join(shown[:8])}{' …' if len(shown) > 8 else ''}"
    if isinstance(value, dict):
        return f"a table of {len(value)} entries"
    name = getattr(value, "__qualname__", None) or type(value).__name__
    return f"function {name}" if callable(value) else repr(value)[:80]


class CodeWriter:
    """Collects lines of one module and the objects its names are bound to."""

    def __init__(self, namespace: dict[str, Any] | None = None) -> None:
        self.lines: list[str] = []
        self.ns: dict[str, Any] = dict(namespace or {})
        self._names: dict[int, str] = {}
        self._notes: dict[str, str] = {}
        self._n = 0

    def bind(self, value: Any, prefix: str = "_c", note: str | None = None) -> str:
        """A module-level name bound to ``value`` (the same object always gets the same name).

        ``note`` says in words what the value is, for :meth:`legend`.
        """
        key = id(value)
        name = self._names.get(key)
        if name is not None and self.ns.get(name) is value:
            return name
        name = f"{prefix}{self._n}"
        self._n += 1
        self.ns[name] = value
        self._names[key] = name
        if note:
            self._notes[name] = note
        return name

    def legend(self) -> list[str]:
        """``name: what it is`` for every value bound with :meth:`bind`, so generated code can be read."""
        out = []
        for name in sorted(set(self._names.values()), key=lambda n: (n.rstrip("0123456789"), len(n), n)):
            out.append(f"{name}: {self._notes.get(name) or describe(self.ns[name])}")
        return out

    def temp(self, prefix: str = "t") -> str:
        """A fresh local variable name."""
        self._n += 1
        return f"_{prefix}{self._n}"

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def source(self) -> str:
        return "\n".join(self.lines) + "\n"

    def build(self, function: str, label: str) -> Callable[..., Any]:
        """Compile the collected source and return the function named ``function``."""
        filename = f"<gateway-generated {label} #{next(_counter)}>"
        code = compile(self.source(), filename, "exec")
        namespace = dict(self.ns)
        exec(code, namespace)  # source built from schema names and bound constants only (see module doc)
        fn = namespace[function]
        fn.__gateway_source__ = self.source()
        return fn
