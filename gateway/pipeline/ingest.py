"""Ingest: raw counterpart items → mapped, validated, routed records committed in one transaction.

The per-record work (map, validate, key, hash, route) is ``gateway.pipeline.prepare``;
this module hands prepared batches to the store, which dedupes, persists, writes the
outbox and the audit entries atomically. A bad item becomes a quarantine row with every
reason; its neighbours go on. Nothing is dropped without a trace.

Every item is judged alone: whatever goes wrong with one (reading, mapping,
validation, a value the store could not hold) quarantines that item with a rule, and
the store isolates any item it still cannot take (``Store.commit_ingest_isolated``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.observability.events import ingest_committed
from gateway.pipeline.handoff import Handoff
from gateway.pipeline.prepare import (
    CHINA,
    Accepted,
    Preparer,
    Quarantined,
    idempotency_key,
    payload_hash,
    receipt_id,
)
from gateway.pipeline.router import Router
from gateway.records import IngestOutcome, RawRecord
from gateway.store import AcceptItem, QuarantineItem, Store

__all__ = ["CHINA", "Ingestor", "idempotency_key", "payload_hash", "receipt_id"]

log = logging.getLogger("gateway.ingest")

_OFFLOAD_THRESHOLD = 64  # batches larger than this are prepared off the event loop


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
        handoff: Handoff | None = None,
        renderers: Mapping[str, Any] | None = None,
        versions: Mapping[str, tuple[str | None, str | None]] | None = None,
        on_outcomes: Callable[[str, Sequence[IngestOutcome]], None] | None = None,
        metrics: Any = None,
    ) -> None:
        """``handoff`` and ``renderers`` (destination → outbound mapping): claim new deliveries at birth and
        hand them, rendered, to this process's workers (``gateway.pipeline.handoff``)."""
        self.store = store
        self.on_commit = on_commit
        self.handoff = handoff
        self.preparer = Preparer(router, mappings, cipher, renderers if handoff is not None else None)
        # kind -> (on_conflict, on_older): the version policy of gateway.exchange (None: the store's defaults)
        self.versions = dict(versions or {})
        self.on_outcomes = on_outcomes  # (system, outcomes) after every commit: last contact per counterpart
        self.metrics = metrics  # gateway.observability.GatewayMetrics: records per source and outcome, latency

    @property
    def router(self) -> Router:
        return self.preparer.router

    @property
    def mappings(self) -> dict[str, Any]:
        return self.preparer.mappings

    @property
    def cipher(self) -> Any:
        return self.preparer.cipher

    async def ingest(
        self, system: str, raws: Sequence[RawRecord], cursor: tuple[str, str] | None = None
    ) -> list[IngestOutcome]:
        started = time.perf_counter()
        if len(raws) > _OFFLOAD_THRESHOLD:
            accepted, quarantined = await asyncio.to_thread(self.prepare, system, raws)
        else:
            accepted, quarantined = self.prepare(system, raws)
        if accepted:
            # Kept at hand in case the store finds a version conflict and must quarantine the item after all
            # (prepared in a file helper, an item travels without them: such an entry keeps no copy).
            by_ref = {raw.ref: raw for raw in raws}
            for it in accepted:
                raw = by_ref.get(it.ref)
                if raw is not None:
                    it.raw, it.payload = raw.raw, raw.payload
        return await self.commit(accepted, quarantined, cursor, started=started)

    async def commit(
        self, accepted: list[AcceptItem], quarantined: list[QuarantineItem], cursor: tuple[str, str] | None = None,
        *, started: float | None = None,
    ) -> list[IngestOutcome]:
        """Commit a prepared batch (see ``prepare``) and wake whoever waits for new records.

        ``started`` (``time.perf_counter()``) is when the batch's preparation began, for its latency
        (default: the commit alone, as for a file's batches, prepared beside the commits).
        """
        started = time.perf_counter() if started is None else started
        if self.versions:
            for it in accepted:
                if it.on_conflict is None and it.on_older is None:
                    it.on_conflict, it.on_older = self.versions.get(it.kind, (None, None))
        claims = self.handoff.claims() if self.handoff is not None and accepted else None
        outcomes = await self.store.commit_ingest_isolated(accepted, quarantined, cursor, claims)
        if claims is not None:  # the workers first, then the bookkeeping
            assert self.handoff is not None
            self.handoff.hand_over(outcomes)
        ingest_committed(accepted, quarantined, outcomes, time.perf_counter() - started, self.metrics)
        findings = {(it.ref, it.kind, it.record_key): it.findings for it in accepted if it.findings}
        if findings:  # say which records were accepted with findings (on_invalid = accept_with_finding)
            for outcome in outcomes:
                found = findings.get((outcome.ref, outcome.kind, outcome.record_key))
                if found and outcome.status != "quarantined":
                    outcome.findings = list(found)
        if self.on_commit is not None and accepted:
            self.on_commit()
        if self.on_outcomes is not None and (accepted or quarantined):
            self.on_outcomes((accepted[0] if accepted else quarantined[0]).system, outcomes)
        return outcomes

    def prepare(self, system: str, raws: Sequence[RawRecord]) -> tuple[list[AcceptItem], list[QuarantineItem]]:
        """Map, validate, key and route ``raws``: the store's input, nothing committed yet."""
        return wrap(*self.preparer.prepare(system, raws))


def wrap(accepted: Sequence[Accepted], quarantined: Sequence[Quarantined]
         ) -> tuple[list[AcceptItem], list[QuarantineItem]]:
    """The store's dataclasses from the tuples ``Preparer`` makes (in this or a helper process)."""
    return [AcceptItem(*a) for a in accepted], [QuarantineItem(*q) for q in quarantined]
