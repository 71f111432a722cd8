"""Prometheus metrics: the API's own counters, plus store counts read at scrape time.

Each API instance keeps its own registry (two gateways in one process, as in tests,
do not share counters).  Store-wide figures (records, duplicates, quarantine,
deliveries by destination and state, audit entries) are read from the store on
every scrape, so they are right for every source and worker, not only for pushes.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.api._inbound import BatchResult
from gateway.store import StoreCounts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DELIVERY_STATES = ("pending", "inflight", "delivered", "dead")


class ApiMetrics:
    """Counters for what passes through this API instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.inbound_items = Counter(
            "gateway_api_inbound_items", "Items pushed to the API, by system, body form and ingest outcome.",
            ["system", "form", "status"], registry=self.registry)
        self.inbound_requests = Counter(
            "gateway_api_inbound_requests", "Push requests by system, body form and HTTP status.",
            ["system", "form", "code"], registry=self.registry)
        self.requests = Counter(
            "gateway_api_requests", "HTTP requests by route, method and status.",
            ["route", "method", "code"], registry=self.registry)
        self.latency = Histogram(
            "gateway_api_request_seconds", "Time to answer an HTTP request, by route (pushes include the commit).",
            ["route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))

    def observe_push(self, system: str, form: str, code: int, batch: BatchResult | None) -> None:
        self.inbound_requests.labels(system, form, str(code)).inc()
        if batch is not None:
            for status, n in batch.counts().items():
                if n:
                    self.inbound_items.labels(system, form, status).inc(n)

    def render(self, counts: StoreCounts | None) -> bytes:
        text = generate_latest(self.registry)
        store = CollectorRegistry(auto_describe=False)
        store.register(_StoreCollector(counts))
        return text + generate_latest(store)


class _StoreCollector(Collector):
    """One scrape's store counts as metric families (``gateway_store_up 0`` when the store did not answer)."""

    def __init__(self, counts: StoreCounts | None) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("gateway_store_up", "1 when the store answered this scrape.")
        up.add_metric([], 0 if self.counts is None else 1)
        yield up
        c = self.counts
        if c is None:
            return
        outcomes = CounterMetricFamily(
            "gateway_store_ingest_outcomes",
            "Ingest outcomes over the store's life (every source): records stored, duplicates, quarantined.",
            labels=["status"])
        outcomes.add_metric(["stored"], c.records)
        outcomes.add_metric(["duplicate"], c.duplicates)
        outcomes.add_metric(["quarantined"], c.quarantined)
        yield outcomes
        deliveries = GaugeMetricFamily(
            "gateway_deliveries", "Deliveries in the outbox by destination and state.",
            labels=["destination", "state"])
        for dest, by_state in sorted(c.by_destination.items()):
            for state in DELIVERY_STATES:
                deliveries.add_metric([dest, state], by_state.get(state, 0))
        yield deliveries
        audit = CounterMetricFamily("gateway_audit_entries", "Entries in the audit hash chain.")
        audit.add_metric([], c.audit_entries)
        yield audit
