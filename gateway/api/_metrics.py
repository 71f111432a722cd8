"""The API's own Prometheus counters: requests by route, pushes by system, form and outcome.

Each API instance keeps its own registry (two gateways in one process, as in tests,
do not share counters). ``/metrics`` renders it beside the gateway's pipeline and store
figures (gateway.observability.metrics).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway.api._inbound import BatchResult
from gateway.observability.metrics import CONTENT_TYPE

__all__ = ["CONTENT_TYPE", "DELIVERY_STATES", "ApiMetrics"]

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
