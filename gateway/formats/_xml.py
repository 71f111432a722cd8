"""Hostile-input-safe XML: a parser that resolves nothing, a streaming record reader, element → dict.

Counterpart files and HTTP bodies are untrusted.  Every parse here uses a parser that
never resolves entities, never loads a DTD, never touches the network and keeps
libxml2's size limits (``huge_tree`` off).  On top of that, a document whose DOCTYPE
declares any entity (external entities for XXE, nested ones for "billion laughs") is
refused as a whole before its body is parsed: such declarations have no business in
an exchange file, and refusing is safer than parsing around them.
"""

from __future__ import annotations

import codecs
import io
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from lxml import etree

from gateway.formats._items import FileRefused, RawItem, normalise_encoding

_SAFE_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
    "dtd_validation": False,
    "attribute_defaults": False,
}

PROLOG_LIMIT = 1024 * 1024
"""Bytes allowed before the root element starts; a legitimate prolog is a few hundred."""

_PROLOG_CHUNK = 1024
_BODY_CHUNK = 64 * 1024

# "<!ENTITY" as it appears in the encodings libxml2 detects on its own, for the case
# where the parser gives up inside the DTD before it can show us the declarations.
_ENTITY_MARKERS = tuple(
    "<!ENTITY".encode(codec) for codec in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
)

_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)

_TRAILING_POSITION = re.compile(r",? line \d+, column \d+$")

_REFUSAL = "DTD/entity declarations are refused (protection against external entities and entity expansion)"


def safe_parser(**overrides: Any) -> etree.XMLParser:
    """An lxml parser that resolves no entities, loads no DTD, uses no network and keeps size limits."""
    return etree.XMLParser(**{**_SAFE_OPTIONS, **overrides})


def _local(tag: str) -> str:
    return tag[tag.index("}") + 1 :] if tag[:1] == "{" else tag


def _convert(elem: etree._Element) -> Any:
    """A leaf without attributes becomes its text ("" when empty); anything else a dict."""
    out: dict[str, Any] = {}
    for name, value in elem.attrib.items():
        out["@" + _local(name)] = value
    text = elem.text or ""
    for child in elem:
        tag = child.tag
        if not isinstance(tag, str):
            # A comment or processing instruction: skip it but keep the text that follows it.
            text += child.tail or ""
            continue
        name = _local(tag)
        value = _convert(child) if (len(child) or child.attrib) else (child.text or "")
        if name in out:
            existing = out[name]
            # Values are otherwise str or dict, so a list here always means "repeated tag".
            if isinstance(existing, list):
                existing.append(value)
            else:
                out[name] = [existing, value]
        else:
            out[name] = value
    if not out:
        return text
    if text.strip():
        out["#text"] = text
    return out


def _convert_plain(elem: etree._Element) -> Any:
    """_convert for a subtree known to carry no attributes: the same result, without the per-child checks.

    The hot loop of every XML file drop (about 0.4 µs per element, half of it lxml making the
    element's proxy): keep it free of calls that are not needed.
    """
    out: dict[str, Any] = {}
    text = elem.text
    for child in elem:
        tag = child.tag
        if tag.__class__ is not str:
            text = (text or "") + (child.tail or "")
            continue
        if tag[0] == "{":
            tag = tag[tag.index("}") + 1 :]
        value = _convert_plain(child) if len(child) else (child.text or "")
        if tag in out:
            existing = out[tag]
            if existing.__class__ is list:
                existing.append(value)
            else:
                out[tag] = [existing, value]
        else:
            out[tag] = value
    if not out:
        return text or ""
    if text and not text.isspace():
        out["#text"] = text
    return out


# One C-level question per record instead of one attribute check per element. lxml objects that
# wrap libxml2 state must not be shared between threads, so each thread compiles its own.
_xpath_local = threading.local()


def _has_attributes(elem: etree._Element) -> bool:
    xpath = getattr(_xpath_local, "has_attributes", None)
    if xpath is None:
        xpath = _xpath_local.has_attributes = etree.XPath("boolean(descendant-or-self::*/@*)")
    return bool(xpath(elem))


def element_to_dict(elem: etree._Element) -> dict[str, Any]:
    """An element's content as a dict: child tag → text, nested elements → dicts, repeated tags → lists.

    Attributes appear as ``"@name"``; namespaces are stripped from tags and attribute
    names; an empty leaf is ``""``; text beside child elements or attributes appears
    as ``"#text"`` when it is not just whitespace.  The element's own tag is not part
    of the result.
    """
    value = _convert(elem) if _has_attributes(elem) else _convert_plain(elem)
    return value if isinstance(value, dict) else {"#text": value}


def _refuse_declared_entities(path: Path | None, elem: etree._Element) -> None:
    dtd = elem.getroottree().docinfo.internalDTD
    if dtd is None:
        return
    names = [entity.name for entity in dtd.iterentities()]
    if names:
        shown = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
        raise FileRefused(path, f"the DOCTYPE declares entities ({shown}); {_REFUSAL}")


def _refuse_entity_bytes(path: Path | None, prolog: bytes) -> None:
    if any(marker in prolog for marker in _ENTITY_MARKERS):
        raise FileRefused(path, f"the DOCTYPE declares entities; {_REFUSAL}")


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while True:
        size = _PROLOG_CHUNK if stream.tell() < PROLOG_LIMIT else _BODY_CHUNK
        data = stream.read(size)
        if not data:
            return
        yield data


def _inspect(path: Path | None, chunks: Iterable[bytes], record: str | None, encoding: str | None) -> None:
    """Read the start of a document with a throw-away parser and refuse it if it is hostile or misread.

    Refuses entity declarations as soon as the root element starts (before any content
    that could reference them is parsed), and, when ``record`` is given, a document
    that has child elements but no ``record`` element anywhere: left to the tag-filtered
    main pass, such a document would be held in memory whole.  Stops at the first
    ``record`` start.  A well-formedness error ends the inspection quietly; the main
    pass reports it as an error item with its position.
    """
    parser = etree.XMLPullParser(events=("start", "end"), encoding=encoding, **_SAFE_OPTIONS)
    prolog = bytearray()
    root_seen = False
    depth = 0
    first_child: str | None = None

    def events() -> bool:
        """Handle queued events; True when the inspection has seen enough."""
        nonlocal root_seen, depth, first_child
        for event, elem in parser.read_events():
            if event == "start":
                if not root_seen:
                    root_seen = True
                    _refuse_declared_entities(path, elem)
                    if record is None:
                        return True
                depth += 1
                if depth == 2 and first_child is None:
                    first_child = _local(elem.tag)
                if _local(elem.tag) == record:
                    return True
            else:
                depth -= 1
                # Keep the throw-away tree small: drop each finished element.
                if depth >= 1:
                    elem.clear(keep_tail=False)
                    parent = elem.getparent()
                    while elem.getprevious() is not None and parent is not None:
                        del parent[0]
        return False

    try:
        for chunk in chunks:
            if not root_seen:
                prolog += chunk
                if len(prolog) > PROLOG_LIMIT:
                    _refuse_entity_bytes(path, bytes(prolog))
                    raise FileRefused(path, f"no root element in the first {PROLOG_LIMIT} bytes")
            parser.feed(chunk)
            if events():
                return
        parser.close()
        if events():
            return
    except etree.XMLSyntaxError:
        if not root_seen:
            _refuse_entity_bytes(path, bytes(prolog))
        return
    if root_seen and first_child is not None:
        raise FileRefused(
            path,
            f"no <{record}> element in the document (its root holds <{first_child}> …); "
            "check input.record in the mapping",
        )


def parse_xml_bytes(data: bytes) -> etree._Element:
    """Parse an XML document held in memory (an HTTP body) with the same refusals as files.

    Raises :class:`FileRefused` for entity declarations and ``lxml.etree.XMLSyntaxError``
    for a document that is not well-formed.
    """
    _inspect(
        None,
        (data[i : i + _PROLOG_CHUNK] for i in range(0, min(len(data), PROLOG_LIMIT + 1), _PROLOG_CHUNK)),
        None,
        None,
    )
    root = etree.fromstring(data, safe_parser())
    _refuse_declared_entities(None, root)
    return root


def read_xml(path: Path, options: Mapping[str, Any], *, keep_raw: bool = True) -> Iterator[RawItem]:
    """Each ``options["record"]`` element (any namespace) as one item, in constant memory.

    Without ``record``, each child element of the root is an item.  ``ref`` is
    ``"record N (line L)"`` with N counting items from 1 and L the line where the
    element starts.  ``raw`` is the element serialised again as UTF-8 (namespace
    declarations included): measured at about 3 µs for a 25-field record, half of
    what hashing the payload dict as JSON costs, so callers can hash ``raw``.  A
    document that breaks part-way yields the items before the break, then one error
    item naming the line and column.
    """
    record = options.get("record")
    record = str(record) if record else None
    if record and record.startswith("{"):
        record = _local(record)
    encoding = normalise_encoding(path, options.get("encoding", "auto"))
    # A file declares its own encoding; an explicit setting overrides a missing or wrong declaration.
    override = None if encoding == "auto" else ("utf-8" if encoding == "utf-8-sig" else encoding)
    with open(path, "rb") as stream:
        if stream.read(4).startswith(_BOMS):
            override = None  # a byte-order mark wins over the mapping's encoding; the parser reads it
        stream.seek(0)
        _inspect(path, _chunks(stream), record, override)
        stream.seek(0)
        yield from _records(path, stream, record, override, keep_raw=keep_raw)


def read_xml_part(path: Path, options: Mapping[str, Any], part: Any, *, keep_raw: bool = True) -> Iterator[RawItem]:
    """The items of one part of ``path`` (``gateway.formats._split.Part``): its bytes between the
    root's start tag (``part.head``) and end tag, numbered and located as in the whole file.

    The file's prolog was inspected when the parts were planned; a part that does not parse on its
    own ends in an error item with rule ``xml_part`` (its caller then reads the rest whole).
    """
    record = str(options.get("record") or "")
    if record.startswith("{"):
        record = _local(record)
    encoding = normalise_encoding(path, options.get("encoding", "auto"))
    override = None if encoding == "auto" else ("utf-8" if encoding == "utf-8-sig" else encoding)
    if b"encoding" in part.head[:100]:
        override = None  # the declaration in the head says it
    with open(path, "rb") as stream:
        stream.seek(part.start)
        data = stream.read(part.end - part.start)
    document = io.BytesIO(part.head + data + part.tail)
    yield from _records(path, document, record, override, first=part.first_item, first_line=part.first_line,
                        keep_raw=keep_raw, part=True)


def _records(path: Path, stream: BinaryIO, record: str | None, encoding: str | None, *, first: int = 0,
             first_line: int = 1, keep_raw: bool = True, part: bool = False) -> Iterator[RawItem]:
    if record:
        context = etree.iterparse(
            stream, events=("end",), tag=f"{{*}}{record}", encoding=encoding, **_SAFE_OPTIONS
        )
    else:
        context = etree.iterparse(stream, events=("end",), encoding=encoding, **_SAFE_OPTIONS)
    count = first
    line_offset = first_line - 1
    try:
        for _, elem in context:
            if record is None:
                parent = elem.getparent()
                if parent is None or parent.getparent() is not None:
                    continue  # the root itself, or part of a root child still being read
            if count == first and not part:
                _refuse_declared_entities(path, elem)
            count += 1
            item = RawItem(
                element_to_dict(elem),
                f"record {count} (line {elem.sourceline + line_offset})",
                etree.tostring(elem, encoding="UTF-8", with_tail=False) if keep_raw else None,
            )
            _release(elem)
            yield item
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        line += line_offset
        if part:
            yield RawItem(None, f"line {line} column {column}", error=f"part starting at line {first_line} does not "
                          f"parse on its own: {exc.msg}", rule="xml_part")
            return
        # libxml2 often repeats the position at the end of its message; say it once.
        message = _TRAILING_POSITION.sub("", exc.msg or "syntax error")
        yield RawItem(
            None,
            f"line {line} column {column}",
            error=f"XML is not well-formed at line {line}, column {column}: {message}; "
            f"the {count} records before it were read",
            rule="xml_syntax",
        )


def _release(elem: etree._Element) -> None:
    """Free a finished record and everything before it, so memory stays flat over any file size."""
    elem.clear(keep_tail=False)
    node: etree._Element | None = elem
    while node is not None:
        parent = node.getparent()
        if parent is None:
            break
        while node.getprevious() is not None:
            del parent[0]
        node = parent
