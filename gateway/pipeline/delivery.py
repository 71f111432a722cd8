"""Delivery workers: claim due outbox rows, render, send, settle; durable backoff and dead letters.

One worker per destination. The store hands out at most one open delivery per
case at a time (the oldest), so order per case holds for each destination while
every other case keeps moving. Retries that must survive a restart live in the
outbox row (attempts, next attempt time); the worker itself holds nothing that a
crash could lose — at worst a send whose settlement was not committed is sent
again with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.adapters import Delivery, DeliveryError, DeliveryResult, PermanentError, RetryableError, Sink
from gateway.pipeline._waiting import sleep_or
from gateway.store import ClaimedDelivery, Settlement, Store

log = logging.getLogger("gateway.delivery")
_WAVES = 4


class SealedFields(Exception):
    """A stored record holds personal fields encrypted at rest that this gateway cannot open."""


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 12
    max_age: float = 2 * 86400.0
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    lease_seconds: float = 60.0
    concurrency: int = 8
    poll_interval: float = 1.0

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential with full jitter (half to whole of the step), never shorter than Retry-After."""
        step = min(self.backoff_max, self.backoff_initial * (2 ** max(0, attempt - 1)))
        delay = random.uniform(step / 2, step)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay


class DestinationWorker:
    """Delivers the outbox of one destination through its sink."""

    def __init__(
        self,
        destination: str,
        sink: Sink,
        renderer: Any,  # OutboundMapping
        store: Store,
        policy: DeliveryPolicy,
        *,
        cipher: Any = None,
    ) -> None:
        self.destination = destination
        self.sink = sink
        self.renderer = renderer
        self.store = store
        self.policy = policy
        self.cipher = cipher  # opens personal fields sealed at rest (gateway.security.fieldcrypt)
        self.wake = asyncio.Event()
        self.sent = 0
        self.failed = 0
        self.dead = 0

    async def run(self, stopping: asyncio.Event) -> None:
        batch = max(1, getattr(self.sink, "batch_size", 1))
        # Several waves per claim: a claim and a settle are one fsync each, shared by all of them.
        limit = self.policy.concurrency * batch * _WAVES
        while not stopping.is_set():
            try:
                claimed = await self.store.claim(self.destination, limit, self.policy.lease_seconds, time.time())
            except Exception:
                log.exception("claim failed for %s", self.destination)
                await sleep_or(stopping, self.wake, self.policy.poll_interval)
                continue
            if not claimed:
                await self._idle(stopping)
                continue
            await self._deliver(claimed, batch)

    async def _idle(self, stopping: asyncio.Event) -> None:
        wait = self.policy.poll_interval
        try:
            due = await self.store.next_due(self.destination)
        except Exception:
            due = None
        if due is not None:
            wait = min(wait, max(0.01, due - time.time()))
        await sleep_or(stopping, self.wake, wait)

    async def _deliver(self, claimed: Sequence[ClaimedDelivery], batch: int) -> None:
        settlements: list[Settlement] = []
        ready: list[tuple[ClaimedDelivery, Delivery]] = []
        for c in claimed:
            try:
                record = self._opened(json.loads(c.body))
            except SealedFields as exc:  # a key missing from the keyring: retry once the operator restores it
                settlements.append(self._settlement(c, RetryableError(f"cannot open the stored record: {exc}")))
                continue
            except ValueError as exc:  # not JSON: no retry will change that
                settlements.append(self._settlement(c, PermanentError(f"the stored record is unreadable: {exc}")))
                continue
            try:
                body = self.renderer.render(record)
            except Exception as exc:  # a record the outbound mapping cannot render will not render on retry
                settlements.append(self._settlement(c, PermanentError(f"outbound mapping failed: {exc}")))
                continue
            ready.append((c, Delivery(
                delivery_id=c.delivery_id, destination=c.destination, idempotency_key=c.idempotency_key,
                kind=c.kind, record_key=c.record_key, case_no=c.case_no, body=body, attempt=c.attempts + 1)))
        chunks = [ready[i:i + batch] for i in range(0, len(ready), batch)]
        sem = asyncio.Semaphore(self.policy.concurrency)

        async def send(chunk: list[tuple[ClaimedDelivery, Delivery]]) -> list[Settlement]:
            async with sem:
                try:
                    results = await asyncio.wait_for(
                        self.sink.deliver([d for _, d in chunk]), timeout=self.policy.lease_seconds * 0.9
                    )
                except DeliveryError as exc:
                    return [self._settlement(c, exc) for c, _ in chunk]
                except TimeoutError:
                    err = RetryableError(f"sink {self.destination} did not answer within the lease")
                    return [self._settlement(c, err) for c, _ in chunk]
                except Exception as exc:  # a sink bug: retry, keep the text for the operator
                    log.exception("sink %s raised", self.destination)
                    err = RetryableError(f"sink raised {type(exc).__name__}: {exc}")
                    return [self._settlement(c, err) for c, _ in chunk]
                by_id = {r.delivery_id: r for r in results}
                out = []
                for c, _ in chunk:
                    r = by_id.get(c.delivery_id)
                    if r is None:
                        out.append(self._settlement(c, RetryableError("sink returned no result for this delivery")))
                    else:
                        out.append(self._settlement(c, r.error, r))
                return out

        for group in await asyncio.gather(*(send(ch) for ch in chunks)):
            settlements.extend(group)
        await self.store.settle(settlements)

    def _opened(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with personal fields encrypted at rest opened; never sends a sealed value on."""
        if self.cipher is not None:
            try:
                return self.cipher.open_record(record)
            except Exception as exc:  # FieldCryptError, or a body changed under us
                raise SealedFields(str(exc)) from exc
        data = record.get("data")
        if isinstance(data, dict) and any(isinstance(v, dict) and "$enc" in v for v in data.values()):
            raise SealedFields("it holds fields encrypted at rest and this gateway has no [encryption] keyring "
                               "configured")
        return record

    def _settlement(self, c: ClaimedDelivery, error: DeliveryError | None,
                    result: DeliveryResult | None = None) -> Settlement:
        attempt = c.attempts + 1
        common = dict(delivery_id=c.delivery_id, destination=c.destination, idempotency_key=c.idempotency_key,
                      kind=c.kind, record_key=c.record_key, case_no=c.case_no, attempt=attempt)
        if error is None:
            self.sent += 1
            remote = result.receipt.remote_id if result is not None and result.receipt is not None else None
            return Settlement(outcome="delivered", remote_id=remote, **common)
        text = f"{type(error).__name__}: {error}"
        if getattr(error, "status", None):
            text = f"{text} (HTTP {error.status})"
        age = time.time() - c.created_at
        if not error.retryable:
            self.dead += 1
            return Settlement(outcome="dead", error=text, **common)
        if attempt >= self.policy.max_attempts or age >= self.policy.max_age:
            self.dead += 1
            why = "attempts" if attempt >= self.policy.max_attempts else "age"
            return Settlement(outcome="dead", error=f"{text}; gave up after {attempt} attempts ({why} limit)",
                              **common)
        self.failed += 1
        delay = self.policy.backoff(attempt, getattr(error, "retry_after", None))
        return Settlement(outcome="retry", error=text, next_attempt_at=time.time() + delay, **common)
