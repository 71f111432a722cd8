"""Deliveries claimed at birth: from the ingest commit to the delivery worker without a second trip.

Without this, every new delivery costs the store twice before it is sent: the ingest commit
writes it pending, then a worker's claim finds it again (a query and an update) and parses
and renders the stored body. On the happy path neither is needed:

1. Before each ingest commit the ingestor asks ``claims()``: the destinations whose worker
   runs, is neither paused nor cut off by its circuit breaker, and has room in memory, each
   with a lease.
2. The store's commit claims at birth each new delivery to one of them whose case has no
   other open delivery there (``Store.commit_ingest``): it is stored in flight, with that
   lease, in the same transaction as the record — durability is exactly as before.
3. After the commit, ``hand_over`` gives those deliveries to their workers in memory, with
   the body the preparer already rendered (in a helper process, for a file).

Everything else still goes through the store: a restart finds the leases of deliveries
that were in memory and returns them to pending (``Store.release_leases``); a paused or
failing destination releases what it holds at once; a worker that falls behind leaves a
delivery whose lease is half gone to the store's claim.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol

from gateway.records import IngestOutcome
from gateway.store import ClaimedDelivery, Claims


class _Worker(Protocol):
    destination: str
    policy: Any

    def fresh_room(self) -> bool: ...

    def offer(self, claimed: Iterable[ClaimedDelivery]) -> None: ...


class Handoff:
    """The workers of this process that take deliveries claimed at birth, by destination."""

    def __init__(self) -> None:
        self._workers: dict[str, _Worker] = {}
        self.handed = 0  # deliveries handed over in memory since start

    def add(self, worker: _Worker) -> None:
        self._workers[worker.destination] = worker

    def claims(self) -> Claims | None:
        """Destination → lease end, for every worker that takes deliveries claimed at birth now."""
        now = time.time()
        found = {name: now + w.policy.lease_seconds for name, w in self._workers.items() if w.fresh_room()}
        return found or None

    def hand_over(self, outcomes: Iterable[IngestOutcome]) -> None:
        """Give each worker the deliveries a commit claimed for it."""
        by_destination: dict[str, list[ClaimedDelivery]] = {}
        for outcome in outcomes:
            for delivery in outcome.deliveries:
                by_destination.setdefault(delivery.destination, []).append(delivery)
        for name, claimed in by_destination.items():
            worker = self._workers.get(name)
            if worker is not None:  # (always: only its destinations were claimed for)
                worker.offer(claimed)
                self.handed += len(claimed)
