"""Inbound pushes: body → items → one ingest transaction → per-item receipts, shared by REST and SOAP.

Which systems may push is decided by configuration alone: an enabled source whose
adapter is named ``push``.  The core never imports the plugin; it reads the
plugin's validated options (``accept``, ``max_items``) off the built components.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lxml import etree
from pydantic import BaseModel

from gateway.adapters import IngestOutcome, RawRecord
from gateway.api._limits import DEFAULT_LIMITS, ItemLimits, check_item, item_bytes, split_items
from gateway.formats import FileRefused, element_to_dict, parse_xml_bytes

if TYPE_CHECKING:
    from gateway.app import Gateway

PUSH_ADAPTER = "push"
FORMS = ("json", "xml", "soap")
DEFAULT_MAX_ITEMS = 5000
_OFFLOAD_BYTES = 256 * 1024  # parse bodies larger than this off the event loop
_OFFLOAD_ITEMS = 64  # pre-map batches larger than this off the event loop (as the ingestor does)
_XML_DECL_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=", re.IGNORECASE)


class ApiError(Exception):
    """An answer the client must act on; ``detail`` joins the JSON error body."""

    def __init__(self, status: int, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PushTarget:
    """A configured source that accepts pushes, with its compiled inbound mapping."""

    system: str
    mapping: Any  # gateway.mapping InboundMapping
    accept: tuple[str, ...]
    max_items: int
    limits: ItemLimits = DEFAULT_LIMITS

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.mapping.kinds)

    def _record(self, fmt: str) -> str | None:
        options = self.mapping.input or {}
        record = options.get("record")
        if not record or options.get("format") != fmt:
            return None
        record = str(record)
        return record[record.index("}") + 1 :] if record.startswith("{") else record

    @property
    def record_element(self) -> str | None:
        """The XML element that is one item (input.record of an XML mapping); None: the root's children."""
        return self._record("xml")

    @property
    def record_key(self) -> str | None:
        """The key of the array of items in a JSON envelope (input.record of a JSON mapping)."""
        return self._record("json")


def push_systems(gw: Gateway) -> list[str]:
    assert gw.components is not None
    return sorted(name for name, src in gw.config.sources.items()
                  if src.enabled and src.adapter == PUSH_ADAPTER and name in gw.components.inbound)


def push_target(gw: Gateway, system: str) -> PushTarget:
    """The push source named ``system``, or a 404 that says which systems do accept pushes."""
    comp = gw.components
    assert comp is not None
    section = gw.config.sources.get(system)
    if section is None or not section.enabled or section.adapter != PUSH_ADAPTER or system not in comp.inbound:
        pushing = push_systems(gw)
        if section is not None and section.enabled and section.adapter != PUSH_ADAPTER:
            why = (f"system {system!r} is configured with adapter {section.adapter!r}, "
                   f"not {PUSH_ADAPTER!r}, so it does not accept pushes")
        else:
            why = f"no enabled source named {system!r} accepts pushes"
        raise ApiError(404, f"{why}; systems that accept pushes: {', '.join(pushing) or 'none'}",
                       system=system, push_systems=pushing)
    options = comp.source_configs.get(system)
    if isinstance(options, BaseModel):
        options = options.model_dump()
    options = options if isinstance(options, Mapping) else {}
    accept = tuple(options.get("accept") or FORMS)
    max_items = int(options.get("max_items") or DEFAULT_MAX_ITEMS)
    limits = ItemLimits(**{k: int(options[k]) for k in ItemLimits.__dataclass_fields__ if options.get(k)})
    return PushTarget(system, comp.inbound[system], accept, max_items, limits)


def check_kind(target: PushTarget, kind: str) -> None:
    if kind not in target.kinds:
        raise ApiError(
            400,
            f"system {target.system!r}: its mapping {target.mapping.name}@{target.mapping.version} does not produce "
            f"{kind!r} records; it produces {', '.join(target.kinds)} "
            f"(POST to /api/v1/inbound/{target.system}/{{kind}} with one of those)",
            system=target.system, kind=kind, kinds=list(target.kinds),
        )


# --------------------------------------------------------------------------- items out of bodies


@dataclass(slots=True)
class Item:
    """One pushed item before ingest: a payload, or the reason it could not even be read."""

    payload: Mapping[str, Any] | None
    raw: bytes | None = None
    error: str | None = None
    rule: str | None = None  # the rule an unreadable item broke ("max_depth" …)
    field: str | None = None


def judged(payload: Mapping[str, Any], raw: bytes | None, limits: ItemLimits) -> Item:
    """An item, or its refusal naming the limit it breaks (the payload is then not kept, its bytes are)."""
    violation = check_item(payload, limits)
    if violation is None:
        return Item(payload, raw)
    return Item(None, raw if raw is not None else item_bytes(payload), violation.message, violation.rule,
                violation.field)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _decode_json(body: bytes, charset: str | None) -> str:
    encoding = "utf-8"
    if charset:
        try:
            encoding = codecs.lookup(charset).name
        except LookupError:
            raise ApiError(415, f"unknown charset {charset!r} in Content-Type; send UTF-8 JSON") from None
    if encoding == "utf-8" and body.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        shown = body[exc.start : exc.start + 4].hex(" ")
        raise ApiError(
            400,
            f"the body is not valid {encoding.upper().removesuffix('-SIG')}: byte {exc.start} ({shown}) "
            f"{exc.reason}; JSON must be sent as UTF-8 (or name its charset in Content-Type)",
            encoding=encoding, byte_offset=exc.start,
        ) from None


def _json_items_sync(body: bytes, charset: str | None, record_key: str | None,
                     limits: ItemLimits = DEFAULT_LIMITS) -> list[Item]:
    text = _decode_json(body, charset)
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        # Too deep for the parser: find the items without parsing, and judge each alone.
        return _deep_json_items(text, record_key, limits)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                       line=exc.lineno, column=exc.colno) from None
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if isinstance(value, dict):
        # An envelope as the counterpart's JSON files have it: {"<input.record>": [items …]}.
        if record_key is not None and isinstance(value.get(record_key), list):
            value = value[record_key]
        else:
            return [judged(value, None, limits)]
    if not isinstance(value, list):
        raise ApiError(400, f"the body must be a JSON object or an array of objects, not a {type(value).__name__}")
    items = []
    for i, entry in enumerate(value):
        if isinstance(entry, dict):
            items.append(judged(entry, None, limits))
        else:
            items.append(Item(None, item_bytes(entry), f"item {i} is a JSON {type(entry).__name__}, not an object",
                              "item_type"))
    return items


def _deep_json_items(text: str, record_key: str | None, limits: ItemLimits) -> list[Item]:
    pieces = split_items(text, record_key)
    too_deep = f"the item is nested more than {limits.max_depth} levels deep (objects and arrays inside one another)"
    if pieces is None:  # one item, or no array of items to split: the body is that one item
        return [Item(None, text.encode("utf-8", "backslashreplace"), too_deep, "max_depth")]
    items = []
    for piece in pieces:
        raw = piece.encode("utf-8", "backslashreplace")
        try:
            entry = json.loads(piece, parse_constant=_reject_constant)
        except RecursionError:
            items.append(Item(None, raw, too_deep, "max_depth"))
            continue
        except ValueError as exc:
            items.append(Item(None, raw, f"the item is not valid JSON: {exc}", "readable"))
            continue
        if isinstance(entry, dict):
            items.append(judged(entry, raw, limits))
        else:
            items.append(Item(None, raw, f"the item is a JSON {type(entry).__name__}, not an object", "item_type"))
    return items


def _parse_xml(body: bytes, charset: str | None) -> etree._Element:
    if charset and codecs.lookup(charset).name not in ("utf-8", "utf-16", "utf-32") \
            and not _XML_DECL_ENCODING.match(body):
        # The header names the encoding and the document does not: believe the header.
        try:
            body = body.decode(charset).encode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(400, f"the body is not valid {charset}: byte {exc.start} {exc.reason}") from None
    try:
        return parse_xml_bytes(body)
    except FileRefused as exc:
        raise ApiError(400, f"XML refused: {exc.reason}") from None
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        message = re.sub(r",? line \d+, column \d+$", "", exc.msg or "syntax error")
        raise ApiError(400, f"the body is not well-formed XML at line {line}, column {column}: {message}",
                       line=line, column=column) from None


def _xml_items_sync(body: bytes, charset: str | None, record: str | None,
                    limits: ItemLimits = DEFAULT_LIMITS) -> list[Item]:
    root = _parse_xml(body, charset)
    if record is None:
        elements = [child for child in root if isinstance(child.tag, str)]
    else:
        elements = list(root.iter(f"{{*}}{record}"))
    if not elements:
        where = f"no <{record}> element" if record else "no child element under the root"
        raise ApiError(400, f"{where} in the XML body (the mapping's input.record says what one item is)",
                       record=record)
    return [judged(element_to_dict(e), etree.tostring(e, encoding="UTF-8", with_tail=False), limits)
            for e in elements]


def _valid_charset(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        codecs.lookup(charset)
    except LookupError:
        raise ApiError(415, f"unknown charset {charset!r} in Content-Type") from None
    return charset


async def json_items(body: bytes, charset: str | None, record_key: str | None = None,
                     limits: ItemLimits = DEFAULT_LIMITS) -> list[Item]:
    if len(body) > _OFFLOAD_BYTES:
        return await asyncio.to_thread(_json_items_sync, body, charset, record_key, limits)
    return _json_items_sync(body, charset, record_key, limits)


async def xml_items(body: bytes, charset: str | None, record: str | None,
                    limits: ItemLimits = DEFAULT_LIMITS) -> list[Item]:
    charset = _valid_charset(charset)
    if len(body) > _OFFLOAD_BYTES:
        return await asyncio.to_thread(_xml_items_sync, body, charset, record, limits)
    return _xml_items_sync(body, charset, record, limits)


async def parse_xml_document(body: bytes, charset: str | None) -> etree._Element:
    charset = _valid_charset(charset)
    if len(body) > _OFFLOAD_BYTES:
        return await asyncio.to_thread(_parse_xml, body, charset)
    return _parse_xml(body, charset)


# --------------------------------------------------------------------------- ingest and receipts


@dataclass(slots=True)
class ItemResult:
    """What happened to one pushed item: its records' receipts, or every reason it was refused."""

    index: int
    ref: str
    status: str  # accepted | duplicate | superseded | quarantined
    records: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    quarantine_ids: list[int] = field(default_factory=list)  # where a refused item is kept, for reprocessing

    @property
    def receipt_id(self) -> str | None:
        for r in self.records:
            if r.get("receipt_id"):
                return str(r["receipt_id"])
        return None

    def as_dict(self) -> dict[str, Any]:
        out = {"index": self.index, "status": self.status, "receipt_id": self.receipt_id,
               "records": self.records, "errors": self.errors, "ref": self.ref}
        if self.quarantine_ids:
            out["quarantine_ids"] = self.quarantine_ids
        return out


@dataclass(slots=True)
class BatchResult:
    system: str
    kind: str | None
    items: list[ItemResult]

    def counts(self) -> dict[str, int]:
        out = {"accepted": 0, "duplicate": 0, "superseded": 0, "quarantined": 0}
        for it in self.items:
            out[it.status] = out.get(it.status, 0) + 1
        return out

    @property
    def http_status(self) -> int:
        """400 if any item was refused (the rest landed), 202 if anything new landed, 200 if all were known."""
        counts = self.counts()
        if counts["quarantined"]:
            return 400
        if counts["accepted"] or counts["superseded"]:
            return 202
        return 200

    def as_dict(self) -> dict[str, Any]:
        c = self.counts()
        return {"system": self.system, "kind": self.kind, "committed": True, "items_received": len(self.items),
                "accepted": c["accepted"], "duplicates": c["duplicate"], "superseded": c["superseded"],
                "quarantined": c["quarantined"], "items": [it.as_dict() for it in self.items]}


def _kind_mismatch(target: PushTarget, kind: str, payload: Mapping[str, Any]) -> str | None:
    """Why this item may not enter through the {kind} endpoint, when it maps to records of other kinds."""
    try:
        mapped = target.mapping.map(payload)
    except Exception:  # the ingestor maps it again and quarantines the failure with its reason
        return None
    others = sorted({m.kind for m in mapped} - {kind})
    if not others:
        return None
    return (f"this item maps to {', '.join(others)} record(s), but it was posted to the {kind!r} endpoint; "
            f"post it to /api/v1/inbound/{target.system}/{others[0]}")


def _raw_records(target: PushTarget, kind: str | None, items: Sequence[Item], ref_prefix: str) -> list[RawRecord]:
    """One RawRecord per item; an item that maps to another kind than the endpoint's carries that error."""
    # Only a mapping that can produce several kinds can produce the wrong one.
    check_kinds = kind is not None and len(target.kinds) > 1
    raws: list[RawRecord] = []
    for i, item in enumerate(items):
        ref = f"{ref_prefix} item {i}"
        error = item.error
        if error is None and item.payload is not None and check_kinds:
            assert kind is not None
            error = _kind_mismatch(target, kind, item.payload)
        raws.append(RawRecord(target.system, item.payload or {}, ref, raw=item.raw, error=error,
                              field=item.field, rule=item.rule if error is item.error else "endpoint_kind"))
    return raws


def _item_status(outcomes: Sequence[IngestOutcome]) -> str:
    statuses = {o.status for o in outcomes}
    for status in ("quarantined", "accepted", "superseded"):
        if status in statuses:
            return status
    return "duplicate" if statuses else "quarantined"


async def ingest_items(gw: Gateway, target: PushTarget, kind: str | None, items: Sequence[Item],
                       ref_prefix: str) -> BatchResult:
    """One transaction for the batch; returns only after it committed (or raises, and nothing did)."""
    if not items:
        raise ApiError(400, "the request carries no items")
    if len(items) > target.max_items:
        raise ApiError(413, f"the request carries {len(items)} items; system {target.system!r} accepts at most "
                            f"{target.max_items} per request (push config max_items); split the batch",
                       items=len(items), max_items=target.max_items)
    if len(items) > _OFFLOAD_ITEMS:
        raws = await asyncio.to_thread(_raw_records, target, kind, items, ref_prefix)
    else:
        raws = _raw_records(target, kind, items, ref_prefix)
    assert gw.ingestor is not None
    outcomes = await gw.ingestor.ingest(target.system, raws)
    by_ref: dict[str, list[IngestOutcome]] = {}
    for outcome in outcomes:
        by_ref.setdefault(outcome.ref, []).append(outcome)
    results = []
    for i, raw in enumerate(raws):
        mine = by_ref.get(raw.ref, [])
        records = [{"kind": o.kind, "record_key": o.record_key, "status": o.status, "receipt_id": o.receipt_id}
                   for o in mine if o.status != "quarantined"]
        quarantine_ids = sorted({o.quarantine_id for o in mine if o.quarantine_id is not None})
        errors = [dict(e) for o in mine if o.status == "quarantined" for e in o.errors]
        if not mine:
            errors.append({"field": None, "rule": "ingest", "value": None,
                           "message": "the ingestor reported no outcome for this item"})
        results.append(ItemResult(i, raw.ref, _item_status(mine), records, errors, quarantine_ids))
    return BatchResult(target.system, kind, results)
