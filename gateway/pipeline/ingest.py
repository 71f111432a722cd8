"""Ingest: raw counterpart items → mapped, validated, routed records committed in one transaction.

For each raw item: map with the system's compiled inbound mapping (validation is
fused into it), hash the original payload, derive the business key and version,
route, and hand the batch to the store, which dedupes, persists, writes the outbox
and the audit entries atomically. A bad item becomes a quarantine row with every
reason; its neighbours go on. Nothing is dropped without a trace.

Every item is judged alone: whatever goes wrong with one (reading, mapping,
validation, a value the store could not hold) quarantines that item with a rule, and
the store isolates any item it still cannot take (``Store.commit_ingest_isolated``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from gateway.adapters import IngestOutcome, RawRecord
from gateway.pipeline.router import Router
from gateway.schema import KINDS, SCHEMA_VERSION
from gateway.security.fieldcrypt import Place
from gateway.security.masking import mask_error
from gateway.store import AcceptItem, QuarantineItem, Store
from gateway.store.quarantine import item_hash, payload_json, storable_text
from gateway.store.sqlite import CHINA

log = logging.getLogger("gateway.ingest")

_OFFLOAD_THRESHOLD = 64  # batches larger than this are prepared off the event loop
_INT64 = range(-(2**63), 2**63)  # what the store's INTEGER columns hold


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


def payload_hash(raw: RawRecord) -> str:
    data = raw.raw if raw.raw is not None else json.dumps(
        raw.payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str
    ).encode("utf-8")
    return "sha256:" + hashlib.sha256(data).hexdigest()


def receipt_id(system: str, kind: str, key: str, version: int) -> str:
    return "R" + hashlib.sha256(f"{system}\x1f{kind}\x1f{key}\x1f{version}".encode()).hexdigest()[:24]


def idempotency_key(system: str, kind: str, key: str, version: int, destination: str) -> str:
    """Stable across restarts and replays, so a receiver can dedupe every delivery we make."""
    return hashlib.sha256(f"{system}\x1f{kind}\x1f{key}\x1f{version}\x1f{destination}".encode()).hexdigest()[:32]


class Ingestor:
    """Turns RawRecords of a configured system into one store transaction per batch."""

    def __init__(
        self,
        store: Store,
        router: Router,
        mappings: Mapping[str, Any],
        *,
        on_commit: Callable[[], None] | None = None,
        cipher: Any = None,
    ) -> None:
        self.store = store
        self.router = router
        self.mappings = dict(mappings)  # system -> InboundMapping
        self.on_commit = on_commit
        self.cipher = cipher  # gateway.security.fieldcrypt.FieldCipher: personal fields sealed in stored bodies

    async def ingest(
        self, system: str, raws: Sequence[RawRecord], cursor: tuple[str, str] | None = None
    ) -> list[IngestOutcome]:
        if len(raws) > _OFFLOAD_THRESHOLD:
            accepted, quarantined = await asyncio.to_thread(self.prepare, system, raws)
        else:
            accepted, quarantined = self.prepare(system, raws)
        return await self.commit(accepted, quarantined, cursor)

    async def commit(
        self, accepted: list[AcceptItem], quarantined: list[QuarantineItem], cursor: tuple[str, str] | None = None
    ) -> list[IngestOutcome]:
        """Commit a prepared batch (see ``prepare``) and wake whoever waits for new records."""
        outcomes = await self.store.commit_ingest_isolated(accepted, quarantined, cursor)
        findings = {(it.ref, it.kind, it.record_key): it.findings for it in accepted if it.findings}
        if findings:  # say which records were accepted with findings (on_invalid = accept_with_finding)
            for outcome in outcomes:
                found = findings.get((outcome.ref, outcome.kind, outcome.record_key))
                if found and outcome.status != "quarantined":
                    outcome.findings = list(found)
        if self.on_commit is not None and accepted:
            self.on_commit()
        return outcomes

    def prepare(self, system: str, raws: Sequence[RawRecord]) -> tuple[list[AcceptItem], list[QuarantineItem]]:
        mapping = self.mappings.get(system)
        receipt_time = datetime.now(CHINA).isoformat(timespec="milliseconds")
        accepted: list[AcceptItem] = []
        quarantined: list[QuarantineItem] = []
        if mapping is None:
            for raw in raws:
                quarantined.append(_quarantine(system, raw, None, [{
                    "field": None, "rule": "known_system", "value": system,
                    "message": f"no inbound mapping is configured for system {system!r}"}], receipt_time))
            return accepted, quarantined
        mapping_id = f"{mapping.name}@{mapping.version}"
        for raw in raws:
            try:
                self._prepare_one(system, raw, mapping, mapping_id, receipt_time, accepted, quarantined)
            except Exception as exc:  # whatever this item's data does here, it is this item's entry alone
                log.debug("item %s of %s could not be prepared", raw.ref, system, exc_info=True)
                quarantined.append(_quarantine(system, raw, None, [_fault(exc)], receipt_time, mapping_id))
        return accepted, quarantined

    def _prepare_one(self, system: str, raw: RawRecord, mapping: Any, mapping_id: str, receipt_time: str,
                     accepted: list[AcceptItem], quarantined: list[QuarantineItem]) -> None:
        raw.ref = storable_text(raw.ref)  # a file name that is not UTF-8 must not make every entry unstorable
        if raw.error is not None:
            quarantined.append(_quarantine(system, raw, None, [{
                "field": raw.field, "rule": raw.rule or "readable", "value": None, "message": raw.error}],
                receipt_time, mapping_id))
            return
        try:
            mapped = mapping.map(raw.payload)
        except RecursionError:
            raise
        except Exception as exc:  # a mapping must not crash ingest; the record is kept for a re-run
            log.exception("mapping %s crashed on %s", mapping_id, raw.ref)
            quarantined.append(_quarantine(system, raw, None, [{
                "field": None, "rule": "mapping", "value": None,
                "message": f"mapping {mapping_id} failed: {type(exc).__name__}: {exc}"}], receipt_time, mapping_id))
            return
        if not mapped:
            quarantined.append(_quarantine(system, raw, None, [{
                "field": None, "rule": "record_kind", "value": None,
                "message": f"mapping {mapping_id} produced no record from this item (no output matched)"}],
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
                quarantined.append(_quarantine(system, raw, m.kind, errors, receipt_time, mapping_id))
                continue
            kind = KINDS[m.kind]
            data = m.data
            key = kind.record_key(data)
            version = kind.version(data)
            if version not in _INT64:
                quarantined.append(_quarantine(system, raw, m.kind, [{
                    "kind": m.kind, "field": "version", "rule": "integer_range", "value": str(version)[:40],
                    "message": "the version is beyond the 64-bit range the store holds (-2^63 … 2^63-1)"}],
                    receipt_time, mapping_id))
                continue
            case_no = kind.case_no(data)
            business_time = kind.business_time(data)
            rid = receipt_id(system, m.kind, key, version)
            stored = data if self.cipher is None else self.cipher.seal_data(Place(system, m.kind, key, version), data)
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
            body = _dumps(record)
            unencodable = _unencodable_field(body, data, m.original)
            if unencodable is not None:
                quarantined.append(_quarantine(system, raw, m.kind, [{
                    "kind": m.kind, "field": unencodable, "rule": "unicode", "value": None,
                    "message": "the text holds a lone surrogate (an unpaired \\uD800–\\uDFFF) that UTF-8 cannot "
                               "encode; the counterpart must send valid Unicode"}], receipt_time, mapping_id))
                continue
            dests = route(m.kind, system, data)
            accepted.append(AcceptItem(
                system=system, kind=m.kind, record_key=key, version=version, case_no=case_no,
                business_time=business_time, receipt_time=receipt_time, payload_hash=phash, body=body,
                ref=raw.ref, receipt_id=rid, destinations=dests,
                idempotency_keys=tuple(idempotency_key(system, m.kind, key, version, d) for d in dests),
                mapping=mapping_id, findings=findings,
            ))


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
                _dumps(value).encode("utf-8")
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


def _quarantine(system: str, raw: RawRecord, kind: str | None, errors: list[dict[str, Any]], at: str,
                mapping: str | None = None) -> QuarantineItem:
    payload = payload_json(raw.payload)
    ref = storable_text(raw.ref)
    # The errors go into the audit trail, which cannot be masked afterwards: no personal data in them.
    # The payload keeps the original values (reprocessing needs them; readers see it masked).
    return QuarantineItem(system=system, ref=ref, kind=kind, errors=[mask_error(e) for e in errors],
                          payload=payload, raw=raw.raw, receipt_time=at, mapping=mapping,
                          item_hash=item_hash(system, raw.raw, payload, ref))
