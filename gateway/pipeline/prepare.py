"""Preparing raw items for the store: map, validate, key, hash, route — as plain tuples.

This is the per-record work of ingest, kept apart from the store and from asyncio so the
helper processes that read large files import it and little else (gateway.records, the
mapping, the router, the schema): every module a helper imports is memory it holds.
Results are tuples in the field order of ``AcceptItem`` and ``QuarantineItem``: they
cross a process boundary at a third of the cost of the dataclasses, and the ingestor
wraps them once they are home.

For each raw item: map with the system's compiled inbound mapping (validation is fused
into it), hash the original payload, derive the business key and version, route. A bad
item becomes a quarantine tuple with every reason; its neighbours go on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from gateway.audit.chain import made_fields, received_detail
from gateway.pipeline.router import Router
from gateway.records import RawRecord, item_hash, payload_json, storable_text
from gateway.schema import KINDS, SCHEMA_VERSION
from gateway.security.masking import mask_error

log = logging.getLogger("gateway.ingest")

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
_INT64 = range(-(2**63), 2**63)  # what the store's INTEGER columns hold

Accepted = tuple[Any, ...]  # AcceptItem's fields, in order
Quarantined = tuple[Any, ...]  # QuarantineItem's fields, in order


def _dumps(obj: Any) -> tuple[str, bool]:
    """(compact UTF-8 JSON, whether UTF-8 can hold it): orjson on the hot path, json for what orjson refuses."""
    try:
        return orjson.dumps(obj, default=str).decode("utf-8"), True
    except (TypeError, orjson.JSONEncodeError):  # an int beyond 64 bits, a lone surrogate …
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str), False


def payload_hash(raw: RawRecord) -> str:
    """sha256 of the item's own bytes when the source kept them, else of its parsed payload (sorted JSON)."""
    if raw.raw is not None:
        data = raw.raw
    else:
        try:
            data = orjson.dumps(raw.payload, option=orjson.OPT_SORT_KEYS, default=str)
        except (TypeError, orjson.JSONEncodeError):
            data = json.dumps(raw.payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                              default=str).encode("utf-8", "backslashreplace")
    return "sha256:" + hashlib.sha256(data).hexdigest()


def receipt_id(system: str, kind: str, key: str, version: int) -> str:
    return "R" + hashlib.sha256(f"{system}\x1f{kind}\x1f{key}\x1f{version}".encode()).hexdigest()[:24]


def idempotency_key(system: str, kind: str, key: str, version: int, destination: str) -> str:
    """Stable across restarts and replays, so a receiver can dedupe every delivery we make."""
    return hashlib.sha256(f"{system}\x1f{kind}\x1f{key}\x1f{version}\x1f{destination}".encode()).hexdigest()[:32]


class Preparer:
    """``prepare(system, raws)`` → (accepted tuples, quarantined tuples) for one batch of one system."""

    def __init__(self, router: Router, mappings: Mapping[str, Any], cipher: Any = None,
                 renderers: Mapping[str, Any] | None = None) -> None:
        self.router = router
        self.mappings = dict(mappings)  # system -> InboundMapping
        self.cipher = cipher  # gateway.security.fieldcrypt.FieldCipher: personal fields sealed in stored bodies
        # destination -> OutboundMapping: bodies rendered here for deliveries that may be claimed at birth
        self.renderers = dict(renderers or {})

    def prepare(self, system: str, raws: Sequence[RawRecord]) -> tuple[list[Accepted], list[Quarantined]]:
        mapping = self.mappings.get(system)
        receipt_time = datetime.now(CHINA).isoformat(timespec="milliseconds")
        accepted: list[Accepted] = []
        quarantined: list[Quarantined] = []
        _with_correlation_ids(raws)
        if mapping is None:
            for raw in raws:
                quarantined.append(quarantine(system, raw, None, [{
                    "field": None, "rule": "known_system", "value": system,
                    "message": f"no inbound mapping is configured for system {system!r}"}], receipt_time))
            return accepted, quarantined
        mapping_id = f"{mapping.name}@{mapping.version}"
        for raw in raws:
            try:
                self._prepare_one(system, raw, mapping, mapping_id, receipt_time, accepted, quarantined)
            except Exception as exc:  # whatever this item's data does here, it is this item's entry alone
                log.debug("item %s of %s could not be prepared", raw.ref, system, exc_info=True)
                quarantined.append(quarantine(system, raw, None, [_fault(exc)], receipt_time, mapping_id))
        return accepted, quarantined

    def _prepare_one(self, system: str, raw: RawRecord, mapping: Any, mapping_id: str, receipt_time: str,
                     accepted: list[Accepted], quarantined: list[Quarantined]) -> None:
        raw.ref = storable_text(raw.ref)  # a file name that is not UTF-8 must not make every entry unstorable
        if raw.error is not None:
            quarantined.append(quarantine(system, raw, None, [{
                "field": raw.field, "rule": raw.rule or "readable", "value": None, "message": raw.error}],
                receipt_time, mapping_id))
            return
        try:
            mapped = mapping.map(raw.payload)
        except RecursionError:
            raise
        except Exception as exc:  # a mapping must not crash ingest; the record is kept for a re-run
            log.exception("mapping %s crashed on %s", mapping_id, raw.ref)
            quarantined.append(quarantine(system, raw, None, [{
                "field": None, "rule": "mapping", "value": None,
                "message": f"mapping {mapping_id} failed: {type(exc).__name__}: {exc}"}], receipt_time, mapping_id))
            return
        if not mapped:
            quarantined.append(quarantine(system, raw, None, [{
                "field": None, "rule": "record_kind", "value": None,
                "message": f"mapping {mapping_id} produced no record from this item (no output matched)"}],
                receipt_time, mapping_id))
            return
        if raw.expect_kind is not None:
            others = sorted({m.kind for m in mapped} - {raw.expect_kind})
            if others:
                quarantined.append(quarantine(system, raw, None, [{
                    "field": None, "rule": "endpoint_kind", "value": others[0],
                    "message": f"this item maps to {', '.join(others)} record(s), but it was posted to the "
                               f"{raw.expect_kind!r} endpoint; post it to /api/v1/inbound/{system}/{others[0]}"}],
                    receipt_time, mapping_id))
                return
        phash = payload_hash(raw)
        route = self.router
        for m in mapped:
            if m.errors:
                errors = []
                for e in m.errors:
                    d = e.as_dict()
                    d.setdefault("kind", m.kind)
                    errors.append(d)
                quarantined.append(quarantine(system, raw, m.kind, errors, receipt_time, mapping_id))
                continue
            kind = KINDS[m.kind]
            data = m.data
            key = kind.record_key(data)
            version = kind.version(data)
            if version not in _INT64:
                quarantined.append(quarantine(system, raw, m.kind, [{
                    "kind": m.kind, "field": "version", "rule": "integer_range", "value": str(version)[:40],
                    "message": "the version is beyond the 64-bit range the store holds (-2^63 … 2^63-1)"}],
                    receipt_time, mapping_id))
                continue
            case_no = kind.case_no(data)
            business_time = kind.business_time(data)
            rid = receipt_id(system, m.kind, key, version)
            if self.cipher is None:
                stored = data
            else:
                from gateway.security.fieldcrypt import Place

                stored = self.cipher.seal_data(Place(system, m.kind, key, version), data)
            findings = tuple(f.as_dict() for f in m.findings)
            record: dict[str, Any] = {
                "kind": m.kind,
                "schema_version": SCHEMA_VERSION,
                "data": stored,
                "provenance": {
                    "source_system": system,
                    "source_id": key,
                    "source_version": version,
                    "business_time": business_time,
                    "receipt_time": receipt_time,
                    "payload_hash": phash,
                    "original": m.original,
                    "ref": raw.ref,
                    "mapping": mapping_id,
                    "receipt": rid,
                },
            }
            if findings:  # accepted under on_invalid: the record says what is wrong with it
                record["findings"] = findings
            body, clean = _dumps(record)
            unencodable = None if clean else _unencodable_field(body, data, m.original)
            if unencodable is not None:
                quarantined.append(quarantine(system, raw, m.kind, [{
                    "kind": m.kind, "field": unencodable, "rule": "unicode", "value": None,
                    "message": "the text holds a lone surrogate (an unpaired \\uD800–\\uDFFF) that UTF-8 cannot "
                               "encode; the counterpart must send valid Unicode"}], receipt_time, mapping_id))
                continue
            dests = route(m.kind, system, data)
            rendered = self._render(body, data, dests) if self.renderers else None
            made = made_fields(system=system, kind=m.kind, record=key, case=case_no, detail=received_detail(
                ref=raw.ref, version=version, receipt=rid, payload_hash=phash, business_time=business_time,
                mapping=mapping_id, routed_to=dests, correlation_id=raw.correlation_id))
            accepted.append((system, m.kind, key, version, case_no, business_time, receipt_time, phash, body, raw.ref,
                             rid, dests, tuple(idempotency_key(system, m.kind, key, version, d) for d in dests),
                             mapping_id, findings, rendered, raw.correlation_id, made))

    def _render(self, body: str, data: Mapping[str, Any], dests: Sequence[str]) -> dict[str, Any] | None:
        """Destination → counterpart body, from exactly what a delivery reads back from the store.

        A record that does not render is left to the delivery, which records why; nothing is lost here.
        """
        out: dict[str, Any] | None = None
        record: dict[str, Any] | None = None
        for dest in dests:
            renderer = self.renderers.get(dest)
            if renderer is None:
                continue
            try:
                if record is None:
                    record = orjson.loads(body)
                    if self.cipher is not None:  # the stored body holds sealed fields; the delivery opens them
                        record["data"] = orjson.loads(_dumps(data)[0])
                rendered = renderer.render(record)
            except Exception:  # noqa: S112 - the delivery renders it again and records why it cannot
                continue
            if out is None:
                out = {}
            out[dest] = rendered
        return out


def _with_correlation_ids(raws: Sequence[RawRecord]) -> None:
    """Give each item without a correlation id the one bound to the running task, else one for the batch."""
    if all(raw.correlation_id for raw in raws):
        return
    from gateway.observability import correlation  # a file's items carry their id: helpers never get here

    cid = correlation.current() or correlation.new()
    for raw in raws:
        if not raw.correlation_id:
            raw.correlation_id = cid


def _unencodable_field(body: str, data: Mapping[str, Any], original: Any) -> str | None:
    """The field whose text UTF-8 cannot encode (a lone surrogate), or None when the whole body encodes."""
    try:
        body.encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass
    for source in (data, original if isinstance(original, Mapping) else {}):
        for name, value in source.items():
            try:
                _dumps(value)[0].encode("utf-8")
                str(name).encode("utf-8")
            except UnicodeEncodeError:
                return str(name).encode("utf-8", "backslashreplace").decode("utf-8")
    return "(a field name or the reference)"


def _fault(exc: BaseException) -> dict[str, Any]:
    """The quarantine reason for an item that broke the pipeline itself (not a rule of the mapping)."""
    if isinstance(exc, RecursionError):
        return {"field": None, "rule": "max_depth", "value": None,
                "message": "the item is nested too deeply to be processed"}
    if isinstance(exc, UnicodeError):
        return {"field": None, "rule": "unicode", "value": None,
                "message": "the item holds text with a lone surrogate (an unpaired \\uD800–\\uDFFF) that UTF-8 "
                           "cannot encode; the counterpart must send valid Unicode"}
    return {"field": None, "rule": "processable", "value": None,
            "message": f"the item could not be processed ({type(exc).__name__}: {storable_text(str(exc))[:200]})"}


def quarantine(system: str, raw: RawRecord, kind: str | None, errors: list[dict[str, Any]], at: str,
               mapping: str | None = None) -> Quarantined:
    """A QuarantineItem's fields. The errors go into the audit trail, which cannot be masked afterwards: no
    personal data in them. The payload keeps the original values (reprocessing needs them; readers see it masked)."""
    payload = payload_json(raw.payload)
    ref = storable_text(raw.ref)
    return (system, ref, kind, [mask_error(e) for e in errors], payload, raw.raw, at, mapping,
            item_hash(system, raw.raw, payload, ref), raw.correlation_id)
