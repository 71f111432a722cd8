"""Request templates, response paths and the XML-in-a-string bodies of exchange envelopes.

Everything here is data, not code: placeholders are ``{name}`` substitutions into
string values, paths are dotted keys, and XML is parsed with a parser that loads
no DTD, resolves no entity and touches no network.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from lxml import etree

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_WHOLE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class TemplateError(ValueError):
    """A template or path problem; the message names the field and the rule."""


# --------------------------------------------------------------------------- placeholders


def placeholders_in(template: Any, where: str = "") -> list[tuple[str, str]]:
    """Every ``(field path, placeholder name)`` in a template, for validation at load time."""
    found: list[tuple[str, str]] = []
    if isinstance(template, str):
        for match in _PLACEHOLDER.finditer(template):
            if match.group(1):
                found.append((where or "(value)", match.group(1)))
    elif isinstance(template, Mapping):
        for key, value in template.items():
            found.extend(placeholders_in(value, f"{where}.{key}" if where else str(key)))
    elif isinstance(template, Sequence) and not isinstance(template, bytes | bytearray):
        for index, value in enumerate(template):
            found.extend(placeholders_in(value, f"{where}[{index}]"))
    return found


def render(template: Any, values: Mapping[str, Any]) -> Any:
    """Substitute ``{name}`` placeholders into the string values of ``template``.

    A value that is exactly one placeholder takes the value itself (an int stays an
    int, ``None`` leaves the element out); a placeholder inside a longer string is
    substituted as text. ``{{`` and ``}}`` stand for literal braces. Names not in
    ``values`` were rejected when the configuration was loaded.
    """
    if isinstance(template, str):
        whole = _WHOLE.match(template)
        if whole:
            return values[whole.group(1)]

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "{{":
                return "{"
            if match.group(0) == "}}":
                return "}"
            value = values[match.group(1)]
            return "" if value is None else str(value)

        return _PLACEHOLDER.sub(substitute, template)
    if isinstance(template, Mapping):
        return {key: render(value, values) for key, value in template.items()}
    if isinstance(template, list | tuple):
        return [render(value, values) for value in template]
    return template


# --------------------------------------------------------------------------- paths


def split_path(path: str) -> list[str]:
    """``"RESULT.DATA.items"`` → segments; the empty path is the root itself."""
    if path == "":
        return []
    segments = path.split(".")
    if any(segment == "" for segment in segments):
        raise TemplateError(f"path {path!r} has an empty segment (rule: dotted keys, e.g. 'RESULT.STATUS')")
    return segments


_MISSING = object()


def get_path(data: Any, path: str, default: Any = None) -> Any:
    """The value at a dotted path; integer segments index lists; ``default`` when absent."""
    current = data
    for segment in split_path(path):
        if isinstance(current, Mapping):
            current = current.get(segment, _MISSING)
        elif isinstance(current, list) and segment.lstrip("-").isdigit():
            index = int(segment)
            current = current[index] if -len(current) <= index < len(current) else _MISSING
        else:
            current = _MISSING
        if current is _MISSING:
            return default
    return current


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Place ``value`` at a dotted path, creating the dicts on the way."""
    segments = split_path(path)
    if not segments:
        raise TemplateError("cannot place a value at the root path ''")
    current = data
    for segment in segments[:-1]:
        nxt = current.get(segment)
        if nxt is None:
            nxt = current[segment] = {}
        if not isinstance(nxt, dict):
            raise TemplateError(f"cannot place a value under {path!r}: {segment!r} is not a structure")
        current = nxt
    current[segments[-1]] = value


def as_item_list(value: Any) -> list[Any]:
    """A response list that may arrive as one element, ``None`` or a real list."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def merge_disjoint(base: Mapping[str, Any], extra: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``base`` and ``extra`` combined; a key in both is a configuration error, not a silent override."""
    clash = sorted(set(base) & set(extra))
    if clash:
        raise TemplateError(f"{what}: field(s) {', '.join(clash)} come both from the request template and the body")
    return {**base, **extra}


# --------------------------------------------------------------------------- plain values


def to_plain(value: Any) -> Any:
    """zeep's serialized objects → JSON-safe plain values.

    Dates and times become ISO 8601 text, decimals their exact text, binary base64
    text; the ingestor hashes and stores payloads as JSON.
    """
    if isinstance(value, Mapping):
        return {str(key): to_plain(item) for key, item in value.items() if key != "_raw_elements" or item}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, etree._Element):
        return etree.tostring(value, encoding="unicode")
    return value


# --------------------------------------------------------------------------- XML in a string field


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )


def xml_to_dict(text: str | bytes, what: str) -> dict[str, Any]:
    """Parse an XML document carried in a string field into ``{root: {...}}``.

    Leaves become text, repeated siblings lists, attributes ``@name`` keys (and the
    text of an element with attributes ``#text``). A DOCTYPE is refused outright.
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        root = etree.fromstring(data.strip(), parser=_safe_parser())
    except etree.XMLSyntaxError as exc:
        raise TemplateError(f"{what} is not well-formed XML: {exc}") from exc
    if root.getroottree().docinfo.doctype:
        raise TemplateError(f"{what} carries a DOCTYPE; refused (rule: no DTDs in exchanged XML)")
    return {etree.QName(root).localname: _element_to_value(root)}


def _element_to_value(element: etree._Element) -> Any:
    children = [child for child in element if isinstance(child.tag, str)]
    attributes = {f"@{etree.QName(name).localname}": value for name, value in element.attrib.items()}
    if not children:
        text = element.text or None
        if attributes:
            return {**attributes, "#text": text} if text is not None else attributes
        return text
    result: dict[str, Any] = dict(attributes)
    for child in children:
        name = etree.QName(child).localname
        value = _element_to_value(child)
        if name in result:
            existing = result[name]
            if isinstance(existing, list):
                existing.append(value)
            else:
                result[name] = [existing, value]
        else:
            result[name] = value
    return result


def dict_to_xml(body: Mapping[str, Any], root: str | None, what: str) -> str:
    """Render a rendered outbound body (``{ROOT: {...}}`` or fields under ``root``) as XML text."""
    if root is not None:
        tree_root = body if set(body) == {root} else {root: body}
    else:
        tree_root = body
    if len(tree_root) != 1:
        raise TemplateError(
            f"{what}: an XML body needs exactly one root element, got {sorted(tree_root)} "
            "(set xml_root in the configuration to wrap the fields)"
        )
    (name, value), = tree_root.items()
    element = _build_element(name, value, what)
    return etree.tostring(element, encoding="unicode")


def _build_element(name: str, value: Any, what: str) -> etree._Element:
    if not _XML_NAME.match(name):
        raise TemplateError(f"{what}: {name!r} is not a valid XML element name")
    element = etree.Element(name)
    _fill(element, value, what)
    return element


def _fill(element: etree._Element, value: Any, what: str) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key.startswith("@"):
                element.set(key[1:], "" if item is None else _text(item))
            elif key == "#text":
                element.text = None if item is None else _text(item)
            elif isinstance(item, list):
                for entry in item:
                    child = _build_element(key, None, what)
                    _fill(child, entry, what)
                    element.append(child)
            else:
                element.append(_build_element(key, item, what))
        return
    element.text = _text(value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)
