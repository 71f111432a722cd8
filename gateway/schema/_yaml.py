"""YAML loading that remembers where every value came from, for errors that name a line.

PyYAML's composed node tree carries marks; :func:`load_with_lines` turns it into
plain Python values plus a map from each value's location (a tuple of keys and
indexes from the document root) to its 1-based line number.  Duplicate keys are
refused: silently keeping the last one hides mistakes in mapping files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

Location = tuple[str | int, ...]


class YamlLoadError(Exception):
    """A YAML file could not be parsed; the message names the file and line."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}")


class Document:
    """A loaded YAML document: ``value`` and the line of every nested value."""

    def __init__(self, file: str, value: Any, lines: dict[Location, int]) -> None:
        self.file = file
        self.value = value
        self.lines = lines

    def line(self, loc: Location) -> int | None:
        """The line of ``loc``, or of its nearest enclosing value when it is absent."""
        while loc:
            found = self.lines.get(loc)
            if found is not None:
                return found
            loc = loc[:-1]
        return self.lines.get(())


def load_with_lines(path: str | Path) -> Document:
    """Parse ``path`` as one YAML document (safe tags only)."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlLoadError(file, None, f"cannot read: {exc}") from exc
    return loads_with_lines(text, file)


def loads_with_lines(text: str, file: str = "<string>") -> Document:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Location, int] = {}
        value = _convert(loader, node, (), lines, file) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlLoadError(file, line, f"not valid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise YamlLoadError(file, None, f"not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return Document(file, value, lines)


def _convert(loader: yaml.SafeLoader, node: yaml.Node, loc: Location, lines: dict[Location, int], file: str) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves "<<" merge keys
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                raise YamlLoadError(file, key_node.start_mark.line + 1, "a mapping key must be a scalar")
            if key in out:
                raise YamlLoadError(file, key_node.start_mark.line + 1, f"duplicate key {key!r}")
            child = loc + (key,)
            out[key] = _convert(loader, value_node, child, lines, file)
            lines[child] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, loc + (i,), lines, file) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
