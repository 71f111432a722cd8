"""The one narrow Store interface the pipeline talks to, and the values that cross it.

Backends (SQLite now) implement these semantics exactly; the pipeline never knows
which one runs under it. Every method that changes state writes its audit entries
in the same transaction as the change.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.records import IngestOutcome


@dataclass(slots=True)
class AcceptItem:
    """A mapped, valid record ready to persist (the store decides: new, duplicate or stale)."""

    system: str
    kind: str
    record_key: str
    version: int
    case_no: str
    business_time: str | None
    receipt_time: str
    payload_hash: str
    body: str  # the common record as JSON
    ref: str
    receipt_id: str
    destinations: tuple[str, ...]
    idempotency_keys: tuple[str, ...]  # one per destination, same order
    mapping: str
    findings: tuple[dict[str, Any], ...] = ()  # accepted data-quality findings (also in ``body``)
    # Destination → its counterpart body, rendered at ingest (in a helper process, for a file) for the
    # deliveries a commit may claim at birth (``Claims``); a delivery read back from the store renders again.
    rendered: dict[str, Any] | None = None
    correlation_id: str | None = None  # the request, file or pull it arrived with (gateway.observability)
    # Its ``received`` entry's fields as canonical bytes, made where it was prepared (a file's helper), so
    # the store's single writer only adds seq, time and hash (gateway.audit.chain.made_fields). None: the
    # writer makes the entry whole. Whoever changes a field the entry names after that must clear it.
    audit_made: tuple[bytes, bytes] | None = None
    # What to do when the same key and version is stored with a different payload: "quarantine" (rule
    # version_conflict) or "keep_first" (kept, audited as version_conflict); None: the kind's default.
    on_conflict: str | None = None
    # An older version arriving late: "keep" (stored stale, audited, never delivered) or "quarantine".
    on_older: str | None = None
    raw: bytes | None = None  # the item as received, kept only if it has to be quarantined after all
    payload: Any = None  # the parsed item (a mapping), likewise


@dataclass(slots=True)
class QuarantineItem:
    """A record that could not be read, mapped or validated, with every reason."""

    system: str
    ref: str
    kind: str | None
    errors: list[dict[str, Any]]
    payload: str | None  # JSON of the parsed payload, when there was one
    raw: bytes | None
    receipt_time: str
    mapping: str | None = None  # name@version of the mapping that judged it, when one did
    item_hash: str | None = None  # identity of the source item across re-reads; the store derives it when None
    correlation_id: str | None = None  # the request, file or pull it arrived with


@dataclass(slots=True)
class Reprocessed:
    """One quarantine entry run again through its system's current mapping, as the pipeline judged it."""

    entry_id: int
    mapping: str  # name@version
    accepted: list[AcceptItem] = field(default_factory=list)  # records that may land now
    errors: list[dict[str, Any]] = field(default_factory=list)  # reasons still standing (none: it all lands)


@dataclass(slots=True)
class ClaimedDelivery:
    delivery_id: int
    destination: str
    idempotency_key: str
    attempts: int  # attempts made before this one
    created_at: float
    record_id: int
    kind: str
    record_key: str
    case_no: str
    system: str
    body: str  # the stored common record JSON
    rendered: Any = None  # the counterpart body rendered at ingest, for a delivery claimed at birth
    correlation_id: str | None = None  # of the record (None for records stored before correlation ids)


# Destination → lease end (epoch seconds): the destinations whose new deliveries a commit may claim at
# birth (see ``Store.commit_ingest``).
Claims = dict[str, float]


@dataclass(slots=True)
class Settlement:
    """The outcome of one delivery attempt, as the delivery worker decided it."""

    delivery_id: int
    outcome: str  # delivered | retry | dead | released (claimed, not sent: back to pending, no attempt)
    destination: str
    idempotency_key: str
    kind: str
    record_key: str
    case_no: str
    attempt: int
    error: str | None = None
    next_attempt_at: float | None = None
    remote_id: str | None = None
    correlation_id: str | None = None  # of the record, for its audit entry


@dataclass(slots=True)
class AuditRow:
    seq: int
    hash: str
    body: bytes  # canonical JSON; see gateway.audit.chain

    def decoded(self) -> dict[str, Any]:
        import json

        return json.loads(self.body)


@dataclass(slots=True)
class StoreCounts:
    records: int = 0  # records received from counterparts (alerts not included)
    alerts: int = 0  # supervision_alert records the gateway raised
    duplicates: int = 0
    quarantined: int = 0
    pending: int = 0
    inflight: int = 0
    delivered: int = 0
    dead: int = 0
    audit_entries: int = 0
    by_destination: dict[str, dict[str, int]] = field(default_factory=dict)


class StoreError(Exception):
    pass


class Store(abc.ABC):
    """Durable state of the gateway. All methods are coroutines safe to call concurrently."""

    url: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    # ---- ingest

    @abc.abstractmethod
    async def commit_ingest(
        self,
        accepted: Sequence[AcceptItem],
        quarantined: Sequence[QuarantineItem],
        cursor: tuple[str, str] | None = None,
        claims: Claims | None = None,
    ) -> list[IngestOutcome]:
        """Persist one batch in one transaction: records, outbox rows, quarantine, audit, cursor.

        Returns one outcome per accepted item (accepted / duplicate / superseded),
        then one per quarantined item, only after the transaction committed.

        ``claims``: a new delivery to one of these destinations is claimed at birth (stored in
        flight with that lease, returned in its outcome's ``deliveries``) when its case has no
        other open delivery there — in the store or earlier in the batch — so per-case order
        holds. Everything else waits as pending, for ``claim``.
        """

    @abc.abstractmethod
    async def get_cursor(self, name: str) -> str | None: ...

    @abc.abstractmethod
    async def commit_ingest_isolated(
        self,
        accepted: Sequence[AcceptItem],
        quarantined: Sequence[QuarantineItem],
        cursor: tuple[str, str] | None = None,
        claims: Claims | None = None,
    ) -> list[IngestOutcome]:
        """``commit_ingest``, except that an item whose data the store cannot take is quarantined, not fatal.

        Still one transaction with the cursor. Only a store failure (not an item's data)
        raises, and then nothing was committed.
        """

    # ---- quarantine workbench

    @abc.abstractmethod
    async def quarantine_entries(
        self, *, ids: Sequence[int] | None = None, system: str | None = None, state: str | None = None,
        limit: int = 100, after_id: int = 0, newest_first: bool = False, systems: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Quarantine entries (without their raw bytes), paged by id in either direction.

        ``systems``, when given, narrows to entries from those systems (an operator's view).
        """

    @abc.abstractmethod
    async def quarantine_count(self, *, system: str | None = None, state: str | None = None) -> int: ...

    @abc.abstractmethod
    async def quarantine_entry(self, entry_id: int) -> dict[str, Any] | None:
        """One entry with its raw bytes, or None."""

    @abc.abstractmethod
    async def discard_quarantined(self, ids: Sequence[int], reason: str, actor: str) -> list[dict[str, Any]]:
        """Close open entries with a reason, each audited; one result per id (discarded, unknown, refused)."""

    @abc.abstractmethod
    async def commit_reprocess(self, items: Sequence[Reprocessed], actor: str) -> list[dict[str, Any]]:
        """Land the records of reprocessed entries and update or resolve each entry, audited, in one transaction."""

    # ---- delivery

    @abc.abstractmethod
    async def claim(self, destination: str, limit: int, lease_seconds: float, now: float) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries, at most one per case, each the oldest open one of its case."""

    @abc.abstractmethod
    async def settle(self, settlements: Sequence[Settlement]) -> None: ...

    @abc.abstractmethod
    async def replay(
        self,
        ids: Sequence[int] | None = None,
        *,
        destination: str | None = None,
        states: Sequence[str] = ("dead",),
        dry_run: bool = False,
        actor: str = "cli",
    ) -> list[int]:
        """Put deliveries back to pending (attempts reset); returns the ids that were (or would be) replayed."""

    @abc.abstractmethod
    async def release_leases(self) -> int:
        """Return every in-flight delivery to pending (start-up of the only delivering process)."""

    @abc.abstractmethod
    async def next_due(self, destination: str) -> float | None:
        """When the earliest pending delivery for ``destination`` becomes due, if any."""

    # ---- queries

    @abc.abstractmethod
    async def list_deliveries(
        self,
        *,
        state: str | None = None,
        destination: str | None = None,
        case_no: str | None = None,
        limit: int = 100,
        after_id: int = 0,
    ) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def deliveries_newest(
        self, *, state: str | None = None, destination: str | None = None, case_no: str | None = None,
        limit: int = 50, before_id: int | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """(a page of deliveries newest first, below ``before_id``; how many match the filters in all)."""

    @abc.abstractmethod
    async def delivery_states(self, ids: Sequence[int]) -> dict[int, str]:
        """The state of each of ``ids`` that exists (absent ids are unknown)."""

    @abc.abstractmethod
    async def list_quarantine(self, *, system: str | None = None, limit: int = 100, after_id: int = 0) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def list_records(
        self, *, case_no: str | None = None, kind: str | None = None, limit: int = 100, after_id: int = 0
    ) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def counts(self) -> StoreCounts: ...

    # ---- supervision

    @abc.abstractmethod
    async def records_since(self, after_id: int, limit: int) -> list[tuple[int, str, str]]:
        """(id, receipt_time, body) of stored records with id > after_id, in arrival order."""

    @abc.abstractmethod
    async def case_states(self, keys: Sequence[str]) -> dict[str, str]:
        """Stored supervision state JSON by case key."""

    @abc.abstractmethod
    async def due_case_states(self, now: float, limit: int) -> list[tuple[str, str]]:
        """(case key, state JSON) of cases whose next clock check is due."""

    @abc.abstractmethod
    async def commit_supervision(
        self,
        states: dict[str, tuple[str, float | None]],
        alerts: Sequence[AcceptItem],
        cursor: tuple[str, str] | None,
    ) -> list[IngestOutcome]:
        """Case states, alert records (deduped and routed like any record) and the cursor, in one transaction."""

    # ---- audit

    @abc.abstractmethod
    async def audit_event(self, action: str, *, cursor: tuple[str, str] | None = None, **fields: Any) -> int:
        """Append one audit entry on its own (configuration changed, a user's action …); returns its seq.

        ``cursor`` (name, value), when given, is stored in the same transaction.
        """

    @abc.abstractmethod
    async def audit_entries(self, *, after_seq: int = 0, limit: int = 1000, case_no: str | None = None) -> list[AuditRow]: ...

    @abc.abstractmethod
    async def audit_head(self) -> tuple[int, str, str]:
        """(seq, hash, algorithm) of the last entry."""

    # ---- encryption at rest (gateway/store/encryption.py holds the backend-neutral operations)

    @abc.abstractmethod
    async def record_bodies(self, after_id: int, limit: int) -> list[tuple[int, str]]:
        """(id, body) of stored records with id > after_id, in id order."""

    @abc.abstractmethod
    async def rewrite_record_bodies(self, updates: Sequence[tuple[int, str, str]], detail: dict[str, Any]) -> int:
        """Replace (id, old body, new body) where the body is still the old one, with one audit entry; count."""

    # ---- several processes on one store (PostgreSQL); the defaults suit a store one process delivers from

    def lock_delivery(self) -> None:
        """Before ``open``: claim the right to deliver from this store, or raise StoreError naming who holds it.

        A store whose in-flight leases are released wholesale at start-up (SQLite) lets only one
        process deliver; a store whose claims lock rows and expire leases (PostgreSQL) lets any number.
        """
        return None

    def unlock_delivery(self) -> None:
        """Give up what ``lock_delivery`` took."""
        return None

    def watch_deliveries(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(destination)`` when another process makes a delivery pending (none do by default)."""
        return None

    async def lead(self, role: str) -> bool:
        """Whether this process leads ``role`` (the sealer, a follower): work that must run in one process at once.

        Asked again on every round; a process that loses the lead (its database session ended)
        gets False and another process takes it. With one process there is nothing to elect.
        """
        return True

    async def resign(self, role: str) -> None:
        """Give up the lead of ``role`` (at stop), so another process takes it at once."""
        return None
