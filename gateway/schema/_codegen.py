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


class CodeWriter:
    """Collects lines of one module and the objects its names are bound to."""

    def __init__(self, namespace: dict[str, Any] | None = None) -> None:
        self.lines: list[str] = []
        self.ns: dict[str, Any] = dict(namespace or {})
        self._names: dict[int, str] = {}
        self._n = 0

    def bind(self, value: Any, prefix: str = "_c") -> str:
        """A module-level name bound to ``value`` (the same object always gets the same name)."""
        key = id(value)
        name = self._names.get(key)
        if name is not None and self.ns.get(name) is value:
            return name
        name = f"{prefix}{self._n}"
        self._n += 1
        self.ns[name] = value
        self._names[key] = name
        return name

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
