"""The values that carry records from sources through the pipeline to the store: plain dataclasses.

The adapter SDK (gateway.adapters) re-exports them. They live apart, with no dependencies,
because the helper processes that read and prepare large files import this and little else:
every module a helper imports is memory it holds for the whole file.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["FileIngestResult", "FileUnreadable", "IngestOutcome", "RawRecord", "StoreUnavailable", "item_hash",
           "payload_json", "storable_text", "storable_tree"]


@dataclass(slots=True)
class RawRecord:
    """One item as a counterpart sent it, before mapping.

    ``payload`` is the parsed item (a CSV row keyed by header, an XML element as a
    dict, a JSON object).  ``ref`` says where it came from in words a user can
    follow ("county/2026-11-01.csv row 17").  A source that could not even parse
    the item (undecodable bytes, wrong column count) sets ``error`` and leaves
    ``payload`` empty: the ingestor quarantines it with that reason, nothing is
    dropped silently.
    """

    system: str
    payload: Mapping[str, Any]
    ref: str
    raw: bytes | None = None
    error: str | None = None
    field: str | None = None  # the field a source-level error concerns, if any
    rule: str | None = None  # the rule a source-level error breaks ("json_depth", "csv_columns" …); "readable" when None
    # The request, file or pull it came with (gateway.adapters.correlation_scope); None: the one bound to the
    # running task, else one the core makes per ingest call. Stored with the record, its audit entries and deliveries.
    correlation_id: str | None = None
    # The one kind this item may map to (a push to /api/v1/inbound/{system}/{kind}): an item whose mapping
    # gives another kind is quarantined (rule endpoint_kind) when it is mapped, not mapped a second time first.
    expect_kind: str | None = None


@dataclass(slots=True)
class IngestOutcome:
    """What happened to one RawRecord (one per mapped record; a raw item may map to several).

    ``findings`` are the data-quality findings a stored record was accepted with (the
    mapping's or the source's ``on_invalid`` allowed them); the stored body carries them too.
    """

    ref: str
    status: str  # accepted | duplicate | superseded | quarantined
    receipt_id: str | None = None  # stable id a pushing counterpart is given
    kind: str | None = None
    record_key: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    quarantine_id: int | None = None  # the quarantine entry a refused item is kept in
    deliveries: tuple[Any, ...] = ()  # gateway.store.ClaimedDelivery: claimed at birth (Store.commit_ingest)


class StoreUnavailable(Exception):
    """The gateway could not store what it was given (the store, not the data): nothing was committed; retry later."""


class FileUnreadable(Exception):
    """A file's own fault (refused as hostile, undecodable as a whole, unknown format): file it under error/."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class FileIngestResult:
    """What ``SourceContext.ingest_file`` did: items consumed (including skipped ones) and their outcomes."""

    consumed: int
    complete: bool  # False when the gateway is stopping: the cursor holds the place
    outcomes: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- items kept for a re-run


def storable_text(text: str) -> str:
    """``text`` unless UTF-8 cannot encode it (lone surrogates): then with those written as
    backslash escapes (``\\udc80``)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def storable_tree(value: Any) -> Any:
    """``value`` with every text (keys too) made storable (see ``storable_text``)."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(k)): storable_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_tree(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
        return str(value)
    return value


class PickledPayload:
    """An item's parsed payload, pickled, until something needs it: the copy a push worker sends with what
    it prepared, which only a late version conflict (the item quarantined after all) ever reads."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def value(self) -> Any:
        return pickle.loads(self.blob)  # noqa: S301 - made by a push worker of this gateway (gateway.api.push_workers)


def payload_json(payload: Any) -> str | None:
    """The parsed payload as JSON text the store can hold, or None when it cannot be serialised at all."""
    if isinstance(payload, PickledPayload):
        payload = payload.value()
    if not payload:
        return None
    try:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    except (ValueError, TypeError, RecursionError):
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: \\u escapes keep every character, losslessly
        text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"), default=str)
    return text


def item_hash(system: str, raw: bytes | None, payload: str | None, ref: str) -> str:
    """Identity of a source item across re-reads: its own bytes, else its parsed payload, else where it was."""
    h = hashlib.sha256(system.encode("utf-8") + b"\x1f")
    if raw:
        h.update(b"raw\x1f" + raw)
    elif payload:
        h.update(b"payload\x1f" + payload.encode("utf-8"))
    else:
        h.update(b"ref\x1f" + storable_text(ref).encode("utf-8"))
    return h.hexdigest()


def load_json(text: str | bytes) -> Any:
    """Stored JSON (a record body, a state) as Python values: orjson on the hot paths, json for what orjson
    refuses (integers beyond 64 bits). Followers parse every stored body once: this is most of their cost."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
