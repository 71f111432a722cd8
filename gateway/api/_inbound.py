"""Inbound pushes: body → items → one ingest transaction → per-item receipts, shared by REST and SOAP.

Which systems may push is decided by configuration alone: an enabled source whose
adapter is named ``push``.  The core never imports the plugin; it reads the
plugin's validated options (``accept``, ``max_items``, ``auth``, ``kinds``) off the
built components.  Who may push as a system is checked by ``_push_auth``.
"""

from __future__ import annotations

import asyncio
import codecs
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lxml import etree
from pydantic import BaseModel

from gateway.adapters import IngestOutcome, RawRecord
from gateway.api._limits import DEFAULT_LIMITS, ItemLimits, check_item, item_bytes, limits_from_input
from gateway.formats import FileRefused, element_to_dict, parse_xml_bytes
from gateway.formats._charset import CharsetRefused, decode_body, xml_body_bytes
from gateway.formats._json import read_json_text
from gateway.security.counterparts import CounterpartAuth, push_auth_options

if TYPE_CHECKING:
    from gateway.app import Gateway

PUSH_ADAPTER = "push"
FORMS = ("json", "xml", "soap")
DEFAULT_MAX_ITEMS = 5000
_OFFLOAD_BYTES = 256 * 1024  # parse bodies larger than this off the event loop
_OFFLOAD_ITEMS = 64  # pre-map batches larger than this off the event loop (as the ingestor does)


class ApiError(Exception):
    """An answer the client must act on; ``detail`` joins the JSON error body."""

    def __init__(self, status: int, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail
        self.headers: dict[str, str] = {}  # e.g. WWW-Authenticate on a 401
        self.refusal: Any = None  # the counterpart Refusal behind a 401/403


@dataclass(frozen=True, slots=True)
class PushTarget:
    """A configured source that accepts pushes, with its compiled inbound mapping."""

    system: str
    mapping: Any  # gateway.mapping InboundMapping
    accept: tuple[str, ...]
    max_items: int
    auth: CounterpartAuth | None = None  # None: pushes are refused until credentials are configured
    permitted_kinds: tuple[str, ...] | None = None  # None: every kind its mapping produces
    limits: ItemLimits = DEFAULT_LIMITS  # per XML item (JSON items: the strict reader's input limits)

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
    """The push source named ``system``, or a 404 that says which systems do accept pushes.

    Worked out once per system and kept on the gateway (its configuration does not change while it
    runs): reading the source's options per request cost about 90 µs, a tenth of a one-record push.
    """
    known: dict[str, PushTarget] | None = getattr(gw, "_push_targets", None)
    if known is None:
        known = {}
        gw._push_targets = known  # type: ignore[attr-defined]
    found = known.get(system)
    if found is None:
        found = known[system] = _push_target(gw, system)
    return found


def keep_push_targets(gw: Gateway, targets: Mapping[str, PushTarget]) -> None:
    """Targets worked out elsewhere (a push worker gets its gateway's): what ``push_target`` answers from."""
    gw._push_targets = dict(targets)  # type: ignore[attr-defined]


def _push_target(gw: Gateway, system: str) -> PushTarget:
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
    auth, kinds = push_auth_options(options or {})
    if isinstance(options, BaseModel):
        options = options.model_dump()
    options = options if isinstance(options, Mapping) else {}
    accept = tuple(options.get("accept") or FORMS)
    max_items = int(options.get("max_items") or DEFAULT_MAX_ITEMS)
    return PushTarget(system, comp.inbound[system], accept, max_items, auth, kinds,
                      limits_from_input(comp.inbound[system].input or {}))


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
    rule: str | None = None  # the reading rule an item breaks (json_duplicate_key, json_depth, xml_depth …)
    field: str | None = None


def judged(payload: Mapping[str, Any], raw: bytes | None, limits: ItemLimits) -> Item:
    """An item, or its refusal naming the limit it breaks (the payload is then not kept, its bytes are)."""
    violation = check_item(payload, limits)
    if violation is None:
        return Item(payload, raw)
    return Item(None, raw if raw is not None else item_bytes(payload), violation.message, violation.rule,
                violation.field)


_BODY_BREAK = re.compile(r"^line (\d+) column (\d+)$")


def _json_items_sync(body: bytes, charset: str | None, record_key: str | None,
                     options: Mapping[str, Any] | None = None) -> list[Item]:
    """Items of a JSON body, each read strictly on its own (gateway.formats: limits, duplicate keys …).

    The charset rule and a body that is not JSON at all refuse the request; an item
    that breaks a reading rule becomes an item with that error, and its neighbours land.
    """
    try:
        text = decode_body(body, charset, "JSON")
    except CharsetRefused as exc:
        raise ApiError(exc.status, exc.message, rule=exc.rule, **exc.detail) from None
    items = []
    try:
        for read in read_json_text(text, {**(options or {}), "record": record_key}):
            broken = _BODY_BREAK.match(read.ref)
            if broken is not None:  # the body itself stops being JSON: nothing of it is taken
                message = (read.error or "").split(": ", 1)[-1].removeprefix("not valid JSON: ")
                line, column = int(broken.group(1)), int(broken.group(2))
                raise ApiError(400, f"the body is not valid JSON: {message} at line {line}, column {column}",
                               line=line, column=column, rule=read.rule)
            error = read.error
            if error is not None and error.startswith(read.ref + ": "):
                error = error[len(read.ref) + 2 :]  # the API numbers items itself
            items.append(Item(read.payload, read.raw, error, read.rule))
    except FileRefused as exc:
        raise ApiError(400, f"the body must be a JSON object or an array of objects: {exc.reason}") from None
    return items


def _parse_xml(body: bytes, charset: str | None) -> etree._Element:
    try:
        body = xml_body_bytes(body, charset)
    except CharsetRefused as exc:
        raise ApiError(exc.status, exc.message, rule=exc.rule, **exc.detail) from None
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
                     options: Mapping[str, Any] | None = None) -> list[Item]:
    """``options``: the source's input block, for its reading limits (input.max_depth …)."""
    if len(body) > _OFFLOAD_BYTES:
        return await asyncio.to_thread(_json_items_sync, body, charset, record_key, options)
    return _json_items_sync(body, charset, record_key, options)


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


def _raw_records(target: PushTarget, kind: str | None, items: Sequence[Item], ref_prefix: str,
                 correlation_id: str | None = None) -> list[RawRecord]:
    """One RawRecord per item; the preparer quarantines one that maps to another kind than the endpoint's."""
    # Only a mapping that can produce several kinds can produce the wrong one.
    expect = kind if kind is not None and len(target.kinds) > 1 else None
    return [RawRecord(target.system, item.payload or {}, f"{ref_prefix} item {i}", raw=item.raw, error=item.error,
                      field=item.field, rule=item.rule, correlation_id=correlation_id, expect_kind=expect)
            for i, item in enumerate(items)]


def _item_status(outcomes: Sequence[IngestOutcome]) -> str:
    statuses = {o.status for o in outcomes}
    for status in ("quarantined", "accepted", "superseded"):
        if status in statuses:
            return status
    return "duplicate" if statuses else "quarantined"


async def ingest_items(gw: Gateway, target: PushTarget, kind: str | None, items: Sequence[Item],
                       ref_prefix: str, *, correlation_id: str | None = None) -> BatchResult:
    """One transaction for the batch; returns only after it committed (or raises, and nothing did).

    Every record of the request carries ``correlation_id`` (the request's X-Correlation-Id).
    """
    if not items:
        raise ApiError(400, "the request carries no items")
    if len(items) > target.max_items:
        raise ApiError(413, f"the request carries {len(items)} items; system {target.system!r} accepts at most "
                            f"{target.max_items} per request (push config max_items); split the batch",
                       items=len(items), max_items=target.max_items)
    if len(items) > _OFFLOAD_ITEMS:
        raws = await asyncio.to_thread(_raw_records, target, kind, items, ref_prefix, correlation_id)
    else:
        raws = _raw_records(target, kind, items, ref_prefix, correlation_id)
    assert gw.ingestor is not None
    outcomes = await gw.ingestor.ingest(target.system, raws)
    by_ref: dict[str, list[IngestOutcome]] = {}
    for outcome in outcomes:
        by_ref.setdefault(outcome.ref, []).append(outcome)
    results = []
    for i, raw in enumerate(raws):
        mine = by_ref.get(raw.ref, [])
        records = [{"kind": o.kind, "record_key": o.record_key, "status": o.status, "receipt_id": o.receipt_id,
                    **({"findings": o.findings} if o.findings else {})}
                   for o in mine if o.status != "quarantined"]
        quarantine_ids = sorted({o.quarantine_id for o in mine if o.quarantine_id is not None})
        errors = [dict(e) for o in mine if o.status == "quarantined" for e in o.errors]
        if not mine:
            errors.append({"field": None, "rule": "ingest", "value": None,
                           "message": "the ingestor reported no outcome for this item"})
        results.append(ItemResult(i, raw.ref, _item_status(mine), records, errors, quarantine_ids))
    return BatchResult(target.system, kind, results)
