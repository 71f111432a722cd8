"""A closed, tiny JSON path syntax for configuration: ``data.items``, ``links.next``, ``results[0].id``.

Only object keys and list indices; no wildcards, filters or expressions, so a path in
``gateway.toml`` is checked once when the configuration loads and cannot do anything surprising.
``""`` or ``"$"`` is the document itself.
"""

from __future__ import annotations

import re
from typing import Any

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

MISSING: Any = object()
"""What :func:`resolve` returns when the path does not exist in the document."""


def compile_path(path: str) -> tuple[str | int, ...]:
    """Split a path into keys and indices; raise ValueError naming the path when it is malformed."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:].lstrip(".")
    if not text:
        return ()
    steps: list[str | int] = []
    pos = 0
    while pos < len(text):
        if text[pos] == "." and steps and pos + 1 < len(text) and text[pos + 1] != "[":
            pos += 1
        match = _SEGMENT.match(text, pos)
        if match is None:
            raise ValueError(
                f"JSON path {path!r}: cannot read from position {pos} ({text[pos:]!r}); "
                "use dotted keys and [n] indices, e.g. 'data.items' or 'results[0].id'"
            )
        key, index = match.groups()
        steps.append(int(index) if index is not None else key)
        pos = match.end()
    return tuple(steps)


def resolve(document: Any, steps: tuple[str | int, ...]) -> Any:
    """The value at ``steps`` in ``document``, or :data:`MISSING`."""
    current = document
    for step in steps:
        if isinstance(step, int):
            if not isinstance(current, list) or step >= len(current):
                return MISSING
            current = current[step]
        else:
            if not isinstance(current, dict) or step not in current:
                return MISSING
            current = current[step]
    return current


def check_path(path: str) -> str:
    """Pydantic validator helper: accept the path unchanged if it compiles."""
    compile_path(path)
    return path
