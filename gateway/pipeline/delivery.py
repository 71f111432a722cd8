"""Delivery workers: claim due outbox rows, render, send, settle — riding out counterpart outages.

One worker per destination. The store hands out at most one open delivery per case at a
time (the oldest), so order per case holds for each destination while every other case
keeps moving.

On the happy path a new delivery does not go through the database twice: the ingest
commit claims it at birth when its case has no other open delivery there, and hands it
to the worker in memory with its body already rendered (``gateway.pipeline.handoff``).
The worker takes those first and claims from the store for everything else — restarts,
retries, backlogs, later records of a busy case — at least once per poll interval, so
neither path starves the other. Retries that must survive a restart live in the outbox row (attempts, next
attempt time); the worker itself holds nothing that a crash could lose — at worst a send
whose settlement was not committed is sent again with the same idempotency key.

Outages (docs/deliveries.md):

- A retryable failure (timeout, refused connection, 5xx, 429) is retried with backoff until
  the delivery is ``max_age`` old; a permanent one (the counterpart refuses the record as it
  is) after ``permanent_attempts`` attempts (default 1: at once). ``max_attempts``, from
  older configurations, still caps every attempt and is reported as deprecated.
- A circuit breaker per destination (``gateway.pipeline.circuit``) stops sending after
  ``circuit_failures`` failures in a row, probes with one delivery (or the sink's health
  request) at a growing interval, and on the first success makes every waiting delivery due
  and drains at full speed. Other destinations never wait for it.
- Operators pause, resume and tune (concurrency, sends per second) a destination at runtime;
  the controls live in the store (``gateway.store.destinations``) and the worker reads them.
- Every retry, dead letter and circuit change is a log line with structured fields and a
  metric (``gateway.pipeline.delivery_metrics``); a dead letter also raises a
  ``delivery_dead_letter`` alert record routed to the supervision destinations.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.adapters import Delivery, DeliveryError, DeliveryResult, PermanentError, RetryableError, Sink
from gateway.observability import correlation
from gateway.observability.events import deliveries_settled
from gateway.pipeline._waiting import sleep_or
from gateway.pipeline.circuit import CLOSED, OPEN, CircuitBreaker, Transition
from gateway.pipeline.delivery_metrics import DeliveryMetrics
from gateway.records import load_json
from gateway.security.masking import mask_text
from gateway.store import ClaimedDelivery, Settlement, Store
from gateway.store.destinations import DestinationControls

log = logging.getLogger("gateway.delivery")
_WAVES = 4
_GAUGE_EVERY = 5.0  # seconds between backlog readings for the gauges
_TALLY_EVERY = 1.0  # seconds between writes of attempt counts and last success / error
_PRUNE_EVERY = 3600.0


class SealedFields(Exception):
    """A stored record holds personal fields encrypted at rest that this gateway cannot open."""


@dataclass(frozen=True)
class DeliveryPolicy:
    """How one destination is delivered to (``[delivery]`` with the sink's own overrides)."""

    max_age: float = 7 * 86400.0  # retryable failures retry until a delivery is this old
    permanent_attempts: int = 1  # attempts of a delivery the counterpart refuses as it is
    max_attempts: int | None = None  # deprecated: a cap on every attempt, retryable ones too
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    lease_seconds: float = 60.0
    concurrency: int = 8
    poll_interval: float = 1.0
    rate: float | None = None  # sends per second; None: no limit
    circuit_failures: int = 5
    probe_initial: float = 2.0
    probe_max: float = 10.0

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential with full jitter (half to whole of the step), never shorter than Retry-After."""
        step = min(self.backoff_max, self.backoff_initial * (2 ** max(0, attempt - 1)))
        delay = random.uniform(step / 2, step)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay


class Pacer:
    """At most ``rate`` sends per second, evenly spaced: each caller waits for its own slot."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._next = 0.0

    async def wait(self) -> None:
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + 1.0 / self.rate
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass
class _Tally:
    """Attempts since the last write to the store (the error rate, last success, last error)."""

    attempts: int = 0
    failures: int = 0
    last_success_at: float | None = None
    last_error: str | None = None
    written_at: float = field(default_factory=time.monotonic)

    def reset(self) -> None:
        self.attempts = self.failures = 0
        self.last_success_at = self.last_error = None
        self.written_at = time.monotonic()


@dataclass
class _Outcome:
    settlement: Settlement
    claimed: ClaimedDelivery
    sent: bool  # reached the counterpart (not released, not failed before sending)
    unwell: bool = False  # a failure that says the counterpart is unwell (counts for the breaker)
    dead_reason: str | None = None


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
        metrics: DeliveryMetrics | None = None,
        alerts: Any = None,  # gateway.pipeline.alerts.GatewayAlerts: dead letters raise alerts through it
        observer: Any = None,  # gateway.observability.GatewayMetrics: the last successful delivery
    ) -> None:
        self.destination = destination
        self.sink = sink
        self.renderer = renderer
        self.store = store
        self.policy = policy
        self.cipher = cipher  # opens personal fields sealed at rest (gateway.security.fieldcrypt)
        self.metrics = metrics if metrics is not None else DeliveryMetrics()
        self.alerts = alerts
        self.observer = observer
        self.wake = asyncio.Event()
        self.circuit = CircuitBreaker(destination, failure_threshold=policy.circuit_failures,
                                      probe_initial=policy.probe_initial, probe_max=policy.probe_max)
        self.controls = DestinationControls(destination)
        self.sent = 0
        self.failed = 0
        self.dead = 0
        self.released = 0
        self._pacer: Pacer | None = None
        self._controls_read = 0.0
        self._gauges_read = 0.0
        self._pruned = time.monotonic()
        self._tally = _Tally()
        self._fresh: deque[ClaimedDelivery] = deque()  # claimed at birth, handed over in memory
        self._slots: asyncio.Semaphore | None = None
        self._slots_size = 0
        self._running = False
        self._store_drained = False  # the last claim from the store found less than it asked for
        self._store_claimed = 0.0
        self.metrics.destination(destination)
        # Labelled children looked up once: the success path runs per delivery.
        self._m_delivered = self.metrics.attempts.labels(destination, "delivered")
        self._m_latency = self.metrics.latency.labels(destination)
        self._apply_pacing()

    # ------------------------------------------------------------------ controls

    @property
    def concurrency(self) -> int:
        return self.controls.concurrency or self.policy.concurrency

    @property
    def rate(self) -> float | None:
        """Sends per second allowed now (None: no limit); an operator's setting wins over gateway.toml."""
        rate = self.controls.rate if self.controls.rate is not None else self.policy.rate
        return rate or None

    @property
    def state(self) -> str:
        """running, paused, circuit open or circuit half-open: what operators see."""
        if self.controls.paused:
            return "paused"
        return {CLOSED: "running", OPEN: "circuit open"}.get(self.circuit.state, "circuit half-open")

    # ------------------------------------------------------------------ deliveries claimed at birth

    def fresh_room(self) -> bool:
        """Whether the ingest may claim new deliveries for this worker now (``gateway.pipeline.handoff``)."""
        return (self._running and not self.controls.paused and self.circuit.state == CLOSED
                and len(self._fresh) < self._fresh_limit())

    def offer(self, claimed: Iterable[ClaimedDelivery]) -> None:
        """Take deliveries the ingest claimed at birth (already in flight in the store, with a lease)."""
        self._fresh.extend(claimed)
        self.wake.set()

    def _send_slots(self) -> asyncio.Semaphore:
        """The requests that may be in flight at once, shared by both lanes; a new size takes effect for new sends."""
        if self._slots is None or self._slots_size != self.concurrency:
            self._slots, self._slots_size = asyncio.Semaphore(self.concurrency), self.concurrency
        return self._slots

    def _fresh_limit(self) -> int:
        return 2 * self.concurrency * max(1, getattr(self.sink, "batch_size", 1)) * _WAVES

    def _take_fresh(self, limit: int) -> list[ClaimedDelivery]:
        """Up to ``limit`` deliveries claimed at birth; one whose lease is half gone is left to the store."""
        taken: list[ClaimedDelivery] = []
        stale = time.time() - self.policy.lease_seconds / 2
        while self._fresh and len(taken) < limit:
            c = self._fresh.popleft()
            if c.created_at >= stale:
                taken.append(c)
            # else: its lease runs out soon and the store's claim hands it out again
        return taken

    async def _release_fresh(self) -> None:
        """Paused, circuit open or stopping: deliveries held in memory go back to pending at once."""
        if not self._fresh:
            return
        held = list(self._fresh)
        self._fresh.clear()
        try:
            await self.store.settle([self._released(c).settlement for c in held])
        except Exception as exc:  # their leases run out and the store hands them out again
            log.warning("cannot release %d deliveries to %s held in memory: %s", len(held), self.destination, exc)

    async def _next_claims(self, limit: int) -> list[ClaimedDelivery]:
        """Deliveries claimed at birth first; the store for the rest, at least once per poll interval."""
        claimed = self._take_fresh(limit)
        if len(claimed) >= limit:
            return claimed
        if claimed and self._store_drained and time.monotonic() - self._store_claimed < self.policy.poll_interval:
            return claimed
        self._store_claimed = time.monotonic()
        more = await self.store.claim(self.destination, limit - len(claimed), self.policy.lease_seconds, time.time())
        self._store_drained = len(more) < limit - len(claimed)
        return claimed + more

    # ------------------------------------------------------------------ controls

    def apply_controls(self, controls: DestinationControls) -> None:
        """Take the controls an operator just stored (the API calls this; other processes are read by polling)."""
        before = self.controls
        self.controls = controls
        self._controls_read = time.monotonic()
        if before.paused != controls.paused:
            log.warning("destination %s %s", self.destination,
                        f"paused by {controls.paused_by}" if controls.paused else "resumed",
                        extra={"event": "destination_paused" if controls.paused else "destination_resumed",
                               "destination": self.destination, "actor": controls.paused_by,
                               "reason": controls.pause_reason})
        if (before.concurrency, before.rate) != (controls.concurrency, controls.rate):
            log.info("destination %s: concurrency %d, rate %s", self.destination, self.concurrency,
                     f"{self.rate:g}/s" if self.rate else "unlimited",
                     extra={"event": "destination_settings", "destination": self.destination,
                            "concurrency": self.concurrency, "rate": self.rate, "actor": controls.settings_by})
        self._apply_pacing()
        self.wake.set()

    def _apply_pacing(self) -> None:
        rate = self.rate
        if rate is None:
            self._pacer = None
        elif self._pacer is None or self._pacer.rate != rate:
            self._pacer = Pacer(rate)
        self.metrics.controls(self.destination, paused=self.controls.paused, concurrency=self.concurrency,
                              rate=rate)

    async def _refresh(self, *, force: bool = False) -> None:
        """Read the stored controls (at most once per poll interval) and the backlog gauges (every few seconds)."""
        now = time.monotonic()
        if force or now - self._controls_read >= self.policy.poll_interval:
            self._controls_read = now
            try:
                stored = await self.store.destination_controls([self.destination])  # type: ignore[attr-defined]
            except Exception as exc:  # the store is away: keep the controls we have
                log.warning("cannot read the controls of %s: %s", self.destination, exc)
            else:
                found = stored.get(self.destination, DestinationControls(self.destination))
                if (found.paused, found.concurrency, found.rate) != (
                        self.controls.paused, self.controls.concurrency, self.controls.rate):
                    self.apply_controls(found)
                else:
                    self.controls = found
        if force or now - self._gauges_read >= _GAUGE_EVERY:
            self._gauges_read = now
            try:
                waiting, oldest = await self.store.destination_waiting(self.destination)  # type: ignore[attr-defined]
                self.metrics.backlog(self.destination, waiting, oldest)
            except Exception as exc:
                log.debug("cannot read the backlog of %s: %s", self.destination, exc)
        if now - self._pruned >= _PRUNE_EVERY:
            self._pruned = now
            try:
                await self.store.prune_destination_minutes(time.time())  # type: ignore[attr-defined]
            except Exception as exc:
                log.debug("cannot prune attempt counts: %s", exc)

    # ------------------------------------------------------------------ the loop

    async def run(self, stopping: asyncio.Event) -> None:
        batch = max(1, getattr(self.sink, "batch_size", 1))
        try:
            await self.store.reset_circuit(self.destination, time.time())  # type: ignore[attr-defined]
        except Exception as exc:
            log.warning("cannot reset the stored circuit state of %s: %s", self.destination, exc)
        await self._refresh(force=True)
        self._running = True
        try:
            # Two lanes: while one claims or settles (a transaction, an fsync each), the other sends. They share
            # the send slots (``concurrency``); a claim never returns a delivery the other lane holds (it is in
            # flight), nor the next one of a case whose delivery is still unsettled, so per-case order holds.
            async with asyncio.TaskGroup() as lanes:
                lanes.create_task(self._lane(stopping, batch, lead=True))
                lanes.create_task(self._lane(stopping, batch, lead=False))
        finally:
            self._running = False
            await self._release_fresh()
            await self._write_tally(force=True)

    async def _lane(self, stopping: asyncio.Event, batch: int, *, lead: bool) -> None:
        """Claim, send, settle, again. The lead lane also reads the controls, probes and waits when paused."""
        while not stopping.is_set():
            if lead:
                await self._refresh()
            if not lead and (self.controls.paused or not self.circuit.sending):
                await sleep_or(stopping, self.wake, self.policy.poll_interval)
                continue
            if self.controls.paused:
                await self._release_fresh()
                await self._write_tally(force=True)
                await sleep_or(stopping, self.wake, self.policy.poll_interval)
                continue
            if not self.circuit.sending:
                await self._release_fresh()
                await self._probe(stopping, batch)
                continue
            # Several waves per claim: a claim and a settle are one fsync each, shared by all of them.
            limit = self.concurrency * batch * _WAVES
            try:
                claimed = await self._next_claims(limit)
            except Exception:
                log.exception("claim failed for %s", self.destination)
                await sleep_or(stopping, self.wake, self.policy.poll_interval)
                continue
            if not claimed:
                if lead:
                    await self._write_tally(force=True)
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

    async def _probe(self, stopping: asyncio.Event, batch: int) -> None:
        """Open: wait for the probe time. Half-open: send one probe — the sink's health request, or a delivery."""
        if self.circuit.state == OPEN:
            wait = self.circuit.until_probe()
            if wait > 0:
                await sleep_or(stopping, self.wake, min(wait, self.policy.poll_interval))
                return
            await self._transition(self.circuit.begin_probe())
        health = getattr(self.sink, "probe", None)
        if callable(health):
            await self._health_probe(health)
            return
        try:
            claimed = await self.store.claim(self.destination, 1, self.policy.lease_seconds, time.time())
        except Exception:
            log.exception("claim failed for %s", self.destination)
            await sleep_or(stopping, self.wake, self.policy.poll_interval)
            return
        if not claimed:  # nothing to probe with: the next delivery that comes due is the probe
            await self._idle(stopping)
            return
        await self._deliver(claimed, batch, probe=True)

    async def _health_probe(self, health: Callable[[], Any]) -> None:
        started = time.perf_counter()
        error: str | None = None
        try:
            await asyncio.wait_for(health(), timeout=self.policy.lease_seconds * 0.9)
        except DeliveryError as exc:
            if exc.retryable:
                error = f"{type(exc).__name__}: {exc}"
        except TimeoutError:
            error = f"the health request to {self.destination} did not answer within the lease"
        except Exception as exc:  # a sink bug: treat as unwell, keep the text
            error = f"health request raised {type(exc).__name__}: {exc}"
        self.metrics.latency.labels(self.destination).observe(time.perf_counter() - started)
        self.metrics.probes.labels(self.destination, "failure" if error else "success").inc()
        await self._transition(self.circuit.failure(error) if error else self.circuit.success(), error)

    # ------------------------------------------------------------------ one claimed batch

    async def _deliver(self, claimed: Sequence[ClaimedDelivery], batch: int, *, probe: bool = False) -> None:
        began = time.perf_counter()
        outcomes: list[_Outcome] = []
        ready: list[tuple[ClaimedDelivery, Delivery]] = []
        for c in claimed:
            if c.rendered is not None:  # claimed at birth, rendered at ingest from the same record
                ready.append((c, Delivery(
                    delivery_id=c.delivery_id, destination=c.destination, idempotency_key=c.idempotency_key,
                    kind=c.kind, record_key=c.record_key, case_no=c.case_no, body=c.rendered,
                    attempt=c.attempts + 1, correlation_id=c.correlation_id)))
                continue
            try:
                record = self._opened(load_json(c.body), sealed='"$enc"' in c.body)
            except SealedFields as exc:  # a key missing from the keyring: retry once the operator restores it
                outcomes.append(self._outcome(c, RetryableError(f"cannot open the stored record: {exc}"),
                                              sent=False))
                continue
            except ValueError as exc:  # not JSON: no retry will change that
                outcomes.append(self._outcome(c, PermanentError(f"the stored record is unreadable: {exc}"),
                                              sent=False, final=True))
                continue
            try:
                body = self.renderer.render(record)
            except Exception as exc:  # a record the outbound mapping cannot render will not render on retry
                outcomes.append(self._outcome(c, PermanentError(f"outbound mapping failed: {exc}"), sent=False,
                                              final=True))
                continue
            ready.append((c, Delivery(
                delivery_id=c.delivery_id, destination=c.destination, idempotency_key=c.idempotency_key,
                kind=c.kind, record_key=c.record_key, case_no=c.case_no, body=body, attempt=c.attempts + 1,
                correlation_id=c.correlation_id)))
        chunks = [ready[i:i + batch] for i in range(0, len(ready), batch)]
        sem = self._send_slots()
        transitions: list[tuple[Transition, str | None]] = []

        def halted() -> bool:
            return not probe and (not self.circuit.sending or self.controls.paused)

        async def send(chunk: list[tuple[ClaimedDelivery, Delivery]]) -> list[_Outcome]:
            # The sink's own log lines carry the record's correlation id (one record per call, or the first's).
            correlation.bind(chunk[0][1].correlation_id)
            async with sem:
                if halted():
                    return [self._released(c) for c, _ in chunk]
                if self._pacer is not None:
                    await self._pacer.wait()
                    if halted():
                        return [self._released(c) for c, _ in chunk]
                started = time.perf_counter()
                try:
                    results: list[DeliveryResult] | None = await asyncio.wait_for(
                        self.sink.deliver([d for _, d in chunk]), timeout=self.policy.lease_seconds * 0.9)
                    failure: DeliveryError | None = None
                except DeliveryError as exc:
                    results, failure = None, exc
                except TimeoutError:
                    results, failure = None, RetryableError(f"sink {self.destination} did not answer within the lease")
                except Exception as exc:  # a sink bug: retry, keep the text for the operator
                    log.exception("sink %s raised", self.destination)
                    results, failure = None, RetryableError(f"sink raised {type(exc).__name__}: {exc}")
                self._m_latency.observe(time.perf_counter() - started)
                by_id = {r.delivery_id: r for r in results or ()}
                out = []
                for c, _ in chunk:
                    if results is None:
                        out.append(self._outcome(c, failure))
                        continue
                    r = by_id.get(c.delivery_id)
                    if r is None:
                        out.append(self._outcome(c, RetryableError("sink returned no result for this delivery")))
                    else:
                        out.append(self._outcome(c, r.error, r))
                for o in out:  # the breaker learns at once, so sends still queued see it open
                    if not o.sent:
                        continue
                    error = o.settlement.error
                    t = self.circuit.failure(error or "") if o.unwell else self.circuit.success()
                    if probe:
                        self.metrics.probes.labels(self.destination, "failure" if o.unwell else "success").inc()
                    if t is not None:
                        transitions.append((t, error if o.unwell else None))
                return out

        for group in await asyncio.gather(*(send(ch) for ch in chunks)):
            outcomes.extend(group)
        settlements = [o.settlement for o in outcomes]
        await self.store.settle(settlements)
        deliveries_settled(self.destination, settlements, time.perf_counter() - began, self.observer)
        for t, error in transitions:
            await self._transition(t, error)
        await self._after_settle(outcomes)

    # ------------------------------------------------------------------ outcomes

    def _opened(self, record: dict[str, Any], *, sealed: bool = True) -> dict[str, Any]:
        """The record with personal fields encrypted at rest opened; never sends a sealed value on.

        ``sealed=False``: the stored text holds no sealed field (no ``"$enc"`` in it), nothing to open.
        """
        if not sealed:
            return record
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

    def _released(self, c: ClaimedDelivery) -> _Outcome:
        self.released += 1
        self.metrics.released.labels(self.destination).inc()
        return _Outcome(Settlement(delivery_id=c.delivery_id, outcome="released", destination=c.destination,
                                   idempotency_key=c.idempotency_key, kind=c.kind, record_key=c.record_key,
                                   case_no=c.case_no, attempt=c.attempts, next_attempt_at=time.time(),
                                   correlation_id=c.correlation_id),
                        c, sent=False)

    def _outcome(self, c: ClaimedDelivery, error: DeliveryError | None, result: DeliveryResult | None = None, *,
                 sent: bool = True, final: bool = False) -> _Outcome:
        """Decide one attempt: delivered, retry (when), or dead (why); with its log line and metrics.

        ``final``: the gateway itself cannot send this record (unreadable, unrenderable): no attempt helps.
        """
        attempt = c.attempts + 1
        if error is None:
            self.sent += 1
            self._m_delivered.inc()
            remote = result.receipt.remote_id if result is not None and result.receipt is not None else None
            return _Outcome(Settlement(c.delivery_id, "delivered", c.destination, c.idempotency_key, c.kind,
                                       c.record_key, c.case_no, attempt, remote_id=remote,
                                       correlation_id=c.correlation_id), c, sent)
        common = dict(delivery_id=c.delivery_id, destination=c.destination, idempotency_key=c.idempotency_key,
                      kind=c.kind, record_key=c.record_key, case_no=c.case_no, attempt=attempt,
                      correlation_id=c.correlation_id)
        fields = {"destination": c.destination, "delivery_id": c.delivery_id, "case_no": c.case_no,
                  "kind": c.kind, "attempt": attempt, "correlation_id": c.correlation_id}
        text = f"{type(error).__name__}: {error}"
        if getattr(error, "status", None):
            text = f"{text} (HTTP {error.status})"
        age = time.time() - c.created_at
        unwell = sent and error.retryable
        why: str | None = None
        if final:
            why = "permanent"
        elif not error.retryable and attempt >= self.policy.permanent_attempts:
            why = "permanent"
        elif error.retryable and self.policy.max_attempts is not None and attempt >= self.policy.max_attempts:
            why = "attempts"
        elif error.retryable and age >= self.policy.max_age:
            why = "age"
        if why is not None:
            self.dead += 1
            if why == "attempts":
                text = f"{text}; gave up after {attempt} attempts (max_attempts, deprecated)"
            elif why == "age":
                text = f"{text}; gave up after {attempt} attempts over {age / 3600:.1f} h (max_age)"
            elif not final and self.policy.permanent_attempts > 1:
                text = f"{text}; refused {attempt} times (permanent_attempts)"
            self.metrics.attempts.labels(self.destination, "dead").inc()
            self.metrics.dead_letters.labels(self.destination, why).inc()
            log.warning("delivery %d of case %s to %s is a dead letter (%s): %s", c.delivery_id, c.case_no,
                        c.destination, why, mask_text(text),
                        extra={"event": "delivery_dead_letter", **fields, "reason": why, "error": mask_text(text)})
            return _Outcome(Settlement(outcome="dead", error=text, **common), c, sent, unwell, why)
        self.failed += 1
        delay = self.policy.backoff(attempt, getattr(error, "retry_after", None))
        self.metrics.attempts.labels(self.destination, "retry").inc()
        self.metrics.retries.labels(self.destination).inc()
        log.info("delivery %d of case %s to %s failed (attempt %d), retry in %.1fs: %s", c.delivery_id, c.case_no,
                 c.destination, attempt, delay, mask_text(text),
                 extra={"event": "delivery_retry", **fields, "retry_in": round(delay, 3), "error": mask_text(text),
                        "retryable": error.retryable})
        return _Outcome(Settlement(outcome="retry", error=text, next_attempt_at=time.time() + delay, **common), c,
                        sent, unwell)

    async def _transition(self, t: Transition | None, error: str | None = None) -> None:
        """Log, count and store one circuit change; closing it makes every waiting delivery due."""
        if t is None:
            return
        self.metrics.circuit(self.destination, t.after)
        fields: dict[str, Any] = {"event": f"circuit_{t.after}", "destination": t.destination, "before": t.before,
                                  "after": t.after, "reason": mask_text(t.reason), "failures": t.failures}
        if t.next_probe_at is not None:
            fields["probe_in"] = round(max(0.0, t.next_probe_at - time.time()), 3)
        if t.open_for is not None:
            fields.update(open_for=round(t.open_for, 3), probes=t.probes)
        action = ("circuit_opened" if (t.before, t.after) == (CLOSED, OPEN)
                  else "circuit_closed" if t.after == CLOSED else None)
        # The first opening is news; each failed probe after it is routine (one line per probe interval).
        level = logging.WARNING if (t.before, t.after) == (CLOSED, OPEN) else logging.INFO
        log.log(level, "circuit of %s %s -> %s: %s", t.destination, t.before, t.after, mask_text(t.reason),
                extra=fields)
        detail = {k: v for k, v in fields.items() if k in ("failures", "open_for", "probes", "probe_in")}
        try:
            made_due = await self.store.note_circuit(  # type: ignore[attr-defined]
                self.destination, t.after, now=time.time(), failures=t.failures, next_probe_at=t.next_probe_at,
                error=error, audit_action=action, detail=detail)
        except Exception as exc:
            log.warning("cannot store the circuit state of %s: %s", self.destination, exc)
            return
        if made_due:
            log.info("%d deliveries to %s made due now", made_due, self.destination,
                     extra={"event": "deliveries_made_due", "destination": self.destination, "count": made_due})

    async def _after_settle(self, outcomes: Sequence[_Outcome]) -> None:
        for o in outcomes:
            if not o.sent:
                continue
            self._tally.attempts += 1
            if o.settlement.outcome == "delivered":
                self._tally.last_success_at = time.time()
            else:
                self._tally.failures += 1
                self._tally.last_error = o.settlement.error
        dead = [o for o in outcomes if o.settlement.outcome == "dead"]
        if dead:
            await self._alert_dead_letters(dead)
        await self._write_tally()

    async def _write_tally(self, *, force: bool = False) -> None:
        t = self._tally
        if not t.attempts and t.last_success_at is None and t.last_error is None:
            return
        if not force and time.monotonic() - t.written_at < _TALLY_EVERY:
            return
        try:
            await self.store.note_outcomes(  # type: ignore[attr-defined]
                self.destination, now=time.time(), attempts=t.attempts, failures=t.failures,
                last_success_at=t.last_success_at, last_error=t.last_error)
        except Exception as exc:
            log.debug("cannot store the outcomes of %s: %s", self.destination, exc)
            return
        t.reset()

    async def _alert_dead_letters(self, dead: Sequence[_Outcome]) -> None:
        """One ``delivery_dead_letter`` alert per dead letter, never routed back to this destination."""
        if self.alerts is None:
            return
        from gateway.supervision.alerts import make_alert

        now = _china_now()
        alerts = []
        for o in dead:
            c, s = o.claimed, o.settlement
            if c.kind == "supervision_alert" and '"delivery_dead_letter"' in c.body:
                continue  # an alert about a dead letter that died itself: log and metric only, no loop
            why = {"permanent": "对方拒收（永久错误）", "age": "超过最长重试时间 max_age",
                   "attempts": "达到尝试次数上限 max_attempts"}[o.dead_reason or "permanent"]
            description = (f"投递转入死信：{c.kind} {c.record_key} 投递至 {c.destination}，第 {s.attempt} 次尝试后放弃"
                           f"（{why}）：{mask_text(s.error or '')}。该办件此后的投递按办件顺序等待，对方修复后用 "
                           f"`gateway deliveries replay {c.delivery_id}` 重发。")
            alerts.append(make_alert("delivery_dead_letter", case_no=c.case_no, raised_at=now,
                                     description=description, department=c.destination, subject_kind=c.kind,
                                     subject_key=f"{c.destination}/{c.delivery_id}/{int(time.time() * 1000)}",
                                     distinct_subject=True))
        if not alerts:
            return
        try:
            await self.alerts.raise_alerts(alerts, exclude=(self.destination,))
        except Exception:
            log.exception("cannot raise the dead-letter alerts of %s", self.destination)


def _china_now() -> Any:
    from datetime import datetime, timedelta, timezone

    return datetime.now(timezone(timedelta(hours=8), "Asia/Shanghai"))


# --------------------------------------------------------------------------- configuration


def policy_for(config: Any, sink: str) -> DeliveryPolicy:
    """The policy of one destination: ``[delivery]`` with the ``[sinks.NAME]`` overrides laid over it."""
    d = config.delivery
    s = config.sinks[sink]
    return DeliveryPolicy(
        max_age=d.max_age, permanent_attempts=s.permanent_attempts or d.permanent_attempts,
        max_attempts=s.max_attempts or d.max_attempts, backoff_initial=d.backoff_initial,
        backoff_max=d.backoff_max, lease_seconds=d.lease_seconds, concurrency=s.concurrency or d.concurrency,
        poll_interval=d.poll_interval, rate=s.rate or d.rate, circuit_failures=d.circuit_failures,
        probe_initial=d.probe_initial, probe_max=d.probe_max)


def _give_up_after(policy: DeliveryPolicy, attempts: int) -> float:
    """Seconds of failures after which ``attempts`` attempts are used up (the mean of the jittered backoff)."""
    return sum(0.75 * min(policy.backoff_max, policy.backoff_initial * 2 ** (n - 1)) for n in range(1, attempts))


def delivery_deprecations(config: Any) -> list[str]:
    """``max_attempts`` set in [delivery] or a sink: it still works, and says what it costs in an outage."""
    out = []
    places = [("delivery", config.delivery.max_attempts, None)]
    places += [(f"sinks.{name}", s.max_attempts, name) for name, s in config.sinks.items()]
    for where, value, sink in places:
        if value is None:
            continue
        policy = policy_for(config, sink) if sink is not None else DeliveryPolicy(
            backoff_initial=config.delivery.backoff_initial, backoff_max=config.delivery.backoff_max)
        minutes = _give_up_after(policy, value) / 60
        out.append(f"{where}.max_attempts = {value} is deprecated: it still gives up on a delivery after {value} "
                   f"attempts even when the counterpart is only away (with these backoff settings an outage of "
                   f"about {minutes:.0f} minutes turns waiting deliveries into dead letters). Remove it: retryable "
                   f"failures now retry until delivery.max_age ({config.delivery.max_age / 86400:g} days) and the "
                   "circuit breaker stops hammering a counterpart that is down; records the counterpart refuses "
                   "are dead letters after permanent_attempts (default 1) (docs/deliveries.md)")
    return out
