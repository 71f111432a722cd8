"""What ``/metrics`` shows Prometheus: this process's pipeline counters and the store's figures, cheaply.

Three kinds of figures, each from where it is true:

- events this process saw (records ingested per source and outcome, ingest latency, alerts
  raised, the last contact with each counterpart): counters and gauges of ``GatewayMetrics``,
  updated as they happen (``gateway.observability.events``);
- state the store holds (outbox backlog and its oldest delivery per destination, dead letters,
  open quarantine, audit seal lag): read from indexes at scrape time (``gateway.store.observability``)
  at most once per ``[metrics] cache``, however many scrapers ask;
- the gateway's own state (started, stopping, the sealer refusing a broken trail).

Other modules' registries are rendered beside these (``_module_registries``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.store.observability import ScrapeFigures

log = logging.getLogger("gateway.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
INGEST_OUTCOMES = ("accepted", "duplicate", "superseded", "quarantined")


def gateway_version() -> str:
    try:
        return version("exchange-gateway")
    except PackageNotFoundError:
        return "unknown"


class GatewayMetrics:
    """Counters and gauges of one gateway (two gateways in one process, as in tests, do not share them)."""

    def __init__(self, name: str) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.ingest_records = Counter(
            "gateway_ingest_records", "Records from each source system by ingest outcome (accepted, duplicate, "
            "superseded, quarantined).", ["system", "outcome"], registry=r)
        self.ingest_seconds = Histogram(
            "gateway_ingest_batch_seconds", "Time to map, validate and commit one batch from a source system "
            "(a push, a page, a part of a file).", ["system"], buckets=LATENCY_BUCKETS, registry=r)
        self.alerts_raised = Counter(
            "gateway_alerts_raised", "Supervision alert records raised by this process, by alert type and "
            "severity (gateway/schema/codetables/supervision_alert_type.yaml).", ["type", "severity"], registry=r)
        self.last_received = Gauge(
            "gateway_counterpart_last_received_timestamp_seconds",
            "When an item last arrived from each source system (Unix time; read from the store at start).",
            ["system"], registry=r)
        self.last_delivered = Gauge(
            "gateway_counterpart_last_delivered_timestamp_seconds",
            "When a delivery to each destination last succeeded (Unix time; read from the store at start).",
            ["destination"], registry=r)
        self.source_restarts = Counter(
            "gateway_source_restarts", "Times a source's run loop crashed and was started again.", ["system"],
            registry=r)
        info = Gauge("gateway_info", "The gateway's name and version (the value is always 1).",
                     ["name", "version"], registry=r)
        info.labels(name, gateway_version()).set(1)
        Gauge("gateway_start_time_seconds", "When this gateway process started (Unix time).",
              registry=r).set_to_current_time()
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, open fds …
        self._contacts: dict[tuple[str, str], float] = {}  # (direction, counterpart) -> Unix time

    def contact(self, direction: str, counterpart: str, at: float) -> None:
        """Note a contact (``received`` from a source, ``delivered`` to a destination) unless a later one is known."""
        if self._contacts.get((direction, counterpart), 0.0) >= at:
            return
        self._contacts[(direction, counterpart)] = at
        gauge = self.last_received if direction == "received" else self.last_delivered
        gauge.labels(counterpart).set(at)

    def contact_seeded(self, received: dict[str, float], delivered: dict[str, float]) -> None:
        """Last contacts read from the store at start; what this process saw since then is newer and stays."""
        for system, at in received.items():
            self.contact("received", system, at)
        for dest, at in delivered.items():
            self.contact("delivered", dest, at)


# --------------------------------------------------------------------------- store figures, cached


class StoreFigures:
    """The store's part of a scrape, read at most once per ``cache`` seconds and shared by concurrent scrapes."""

    def __init__(self, cache: float, timeout: float) -> None:
        self.cache = cache
        self.timeout = timeout
        self._figures: ScrapeFigures | None = None
        self._read_at = float("-inf")
        self._seconds = 0.0
        self._pending: asyncio.Future[ScrapeFigures | None] | None = None

    async def get(self, store: Any, destinations: list[str]) -> tuple[ScrapeFigures | None, float]:
        """(figures or None when the store did not answer, seconds the read took)."""
        if self._figures is not None and time.monotonic() - self._read_at < self.cache:
            return self._figures, self._seconds
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._read(store, destinations))
        pending = self._pending
        try:
            figures = await asyncio.shield(pending)
        finally:
            if pending.done() and self._pending is pending:
                self._pending = None
        return figures, self._seconds

    async def _read(self, store: Any, destinations: list[str]) -> ScrapeFigures | None:
        started = time.perf_counter()
        try:
            if store is None:
                raise RuntimeError("the store is not open")
            figures = await asyncio.wait_for(store.scrape_figures(destinations), timeout=self.timeout)
        except Exception as exc:  # a scrape still answers, with gateway_store_up 0
            log.warning("metrics: the store did not answer: %s", exc,
                        extra={"error": f"{type(exc).__name__}: {exc}"})
            self._figures, self._read_at = None, float("-inf")
            return None
        self._seconds = time.perf_counter() - started
        self._figures, self._read_at = figures, time.monotonic()
        return figures


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class _StoreCollector(Collector):
    """One scrape's store figures as metric families (``gateway_store_up 0`` when the store did not answer)."""

    def __init__(self, figures: ScrapeFigures | None, seconds: float, destinations: list[str],
                 systems: list[str], now: float) -> None:
        self.f = figures
        self.seconds = seconds
        self.destinations = destinations
        self.systems = systems
        self.now = now

    def collect(self) -> Iterator[Metric]:
        up = _gauge("gateway_store_up", "1 when the store answered the scrape (within [metrics] store_timeout).")
        up.add_metric([], 0 if self.f is None else 1)
        yield up
        f = self.f
        if f is None:
            return
        took = _gauge("gateway_store_scrape_seconds", "How long the store took to answer the last uncached scrape.")
        took.add_metric([], self.seconds)
        yield took
        destinations = sorted({*self.destinations, *f.waiting, *f.dead})
        depth = _gauge("gateway_deliveries", "Deliveries waiting in the outbox by destination and state "
                       "(pending, inflight, dead); delivered ones are counted by the delivery metrics.",
                       ["destination", "state"])
        oldest = _gauge("gateway_outbox_oldest_age_seconds", "Age of the oldest delivery waiting (pending or in "
                        "flight) for each destination; 0 when none waits.", ["destination"])
        for dest in destinations:
            waiting, inflight = f.waiting.get(dest, 0), f.inflight.get(dest, 0)
            depth.add_metric([dest, "pending"], max(0, waiting - inflight))
            depth.add_metric([dest, "inflight"], inflight)
            depth.add_metric([dest, "dead"], f.dead.get(dest, 0))
            created = f.oldest_waiting.get(dest)
            oldest.add_metric([dest], max(0.0, self.now - created) if created is not None else 0.0)
        yield depth
        yield oldest
        quarantine = _gauge("gateway_quarantine_open", "Open quarantine entries (items waiting to be reprocessed "
                            "or discarded) by source system.", ["system"])
        for system in sorted({*self.systems, *f.quarantine_open}):
            quarantine.add_metric([system], f.quarantine_open.get(system, 0))
        yield quarantine
        outcomes = CounterMetricFamily(
            "gateway_store_ingest_outcomes",
            "Ingest outcomes over the store's life (every source and process): records stored, duplicates, "
            "quarantine entries.", labels=["status"])
        outcomes.add_metric(["stored"], f.records)
        outcomes.add_metric(["duplicate"], f.duplicates)
        outcomes.add_metric(["quarantined"], f.quarantine_entries)
        yield outcomes
        alerts = CounterMetricFamily("gateway_store_alerts", "Supervision alert records in the store (every "
                                     "process, over the store's life).")
        alerts.add_metric([], f.alerts)
        yield alerts
        yield from self._audit(f)

    def _audit(self, f: ScrapeFigures) -> Iterator[Metric]:
        entries = CounterMetricFamily("gateway_audit_entries", "Entries in the audit hash chain.")
        entries.add_metric([], f.audit_head)
        yield entries
        unsigned = _gauge("gateway_audit_unsigned_entries", "Audit entries after the last signed seal "
                          "(not yet under a signature).")
        unsigned.add_metric([], f.unsigned_entries)
        yield unsigned
        lag = _gauge("gateway_audit_seal_lag_seconds", "How long the oldest audit entry not under a signed seal "
                     "has waited; 0 when every entry is.")
        lag.add_metric([], max(0.0, self.now - f.oldest_unsigned_at)
                       if f.unsigned_entries and f.oldest_unsigned_at is not None else 0.0)
        yield lag
        pending = _gauge("gateway_audit_pending_seals", "Seals made and waiting for their signature (the signer "
                         "is failing or slow).")
        pending.add_metric([], f.pending_seals)
        yield pending
        last = _gauge("gateway_audit_last_signed_seal", "Number of the newest signed seal (0: none yet).")
        last.add_metric([], f.last_signed_seal)
        yield last
        when = _gauge("gateway_audit_last_signed_seal_timestamp_seconds", "When the newest signed seal was made "
                      "(Unix time; no sample before the first).")
        if f.last_signed_sealed_at is not None:
            when.add_metric([], f.last_signed_sealed_at)
        yield when


class _GatewayStateCollector(Collector):
    """The running gateway's own state, read at scrape time."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def collect(self) -> Iterator[Metric]:
        gw = self.gw
        ready = _gauge("gateway_started", "1 once every part started, 0 while starting or stopping.")
        ready.add_metric([], 1 if gw.started and not gw.stopping.is_set() else 0)
        yield ready
        # No samples when this process does not seal ([audit] seal = false, or it does not deliver).
        sealer = gw.sealer
        refusing = _gauge("gateway_audit_sealer_refusing", "1 when the sealer found the audit trail tampered "
                          "with and stopped signing (an audit_integrity alert was raised).")
        signing = _gauge("gateway_audit_signer_up", "0 when the last attempt to sign a seal failed.")
        if sealer is not None:
            refusing.add_metric([], 1 if sealer.refused else 0)
            signing.add_metric([], 0 if sealer.last_error and not sealer.refused else 1)
        yield refusing
        yield signing
        # No samples when the exchange is off or no counterpart has a watchdog ([exchange.counterparts.*] watch).
        firing = _gauge("gateway_watchdog_firing", "1 while a counterpart's watchdog fires (records not arrived by "
                        "expect_by, or no contact for longer than silence), 0 when satisfied; as last judged.",
                        ["counterpart", "watch"])
        exchange = gw.exchange
        if exchange is not None:
            for (counterpart, watch), state in sorted(exchange.watchdog_states.items()):
                firing.add_metric([counterpart, watch], 1 if state == "firing" else 0)
        yield firing
        # No samples without push workers ([api] push_workers = 0).
        running = _gauge("gateway_push_workers_running", "Push worker processes running and connected "
                         "([api] push_workers configures how many should).")
        restarts = CounterMetricFamily("gateway_push_worker_restarts", "Times a push worker was started again after "
                                       "it exited, since the gateway started.")
        workers = getattr(gw, "push_workers", None)
        if workers is not None:
            status = workers.status()
            running.add_metric([], status["running"])
            restarts.add_metric([], status["restarts"])
        yield running
        yield restarts


# --------------------------------------------------------------------------- the scrape


def _module_registries(gw: Gateway) -> list[Any]:
    """Registries other modules keep for themselves, rendered as they are.

    To add one, append it here.
    """
    registries: list[Any] = [gw.delivery_metrics.registry]  # gateway.pipeline.delivery_metrics
    refusals = getattr(gw, "refusals", None)  # counterpart refusals (gateway.security.refusals)
    if refusals is not None:
        registries.append(refusals.registry)
    return registries


def _render(*collectors: Collector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    for c in collectors:
        registry.register(c)
    return generate_latest(registry)


async def scrape(gw: Gateway, api_registry: CollectorRegistry | None = None) -> bytes:
    """The whole ``/metrics`` body for ``gw``."""
    destinations = sorted(gw.config.sinks)
    systems = sorted(gw.config.sources)
    figures, seconds = await gw.store_figures.get(gw.store, destinations)
    parts = [generate_latest(gw.metrics.registry)]
    if api_registry is not None:
        parts.append(generate_latest(api_registry))
    parts.append(_render(_StoreCollector(figures, seconds, destinations, systems, time.time()),
                         _GatewayStateCollector(gw)))
    parts.extend(generate_latest(r) for r in _module_registries(gw))
    return b"".join(parts)
