"""Prometheus metrics of delivery, per destination: attempts, latency, retries, dead letters, circuit, backlog.

One :class:`DeliveryMetrics` per running gateway (its own registry, so two gateways in one
process — as in tests — do not share counters). The delivery workers feed it; ``/metrics``
appends ``render()`` to its answer. Every family is labelled ``destination``.

=============================================  =========  ================================================
gateway_delivery_attempts_total                counter    attempts by ``outcome``: delivered, retry, dead
gateway_delivery_seconds                       histogram  time a sink took to answer one send
gateway_delivery_retries_total                 counter    retries scheduled
gateway_delivery_dead_letters_total            counter    dead letters by ``reason``: permanent, age, attempts
gateway_delivery_released_total                counter    claimed deliveries put back unsent (circuit, pause)
gateway_delivery_circuit_state                 gauge      0 closed, 1 half-open, 2 open
gateway_delivery_circuit_transitions_total     counter    circuit changes by ``to`` state
gateway_delivery_probes_total                  counter    probes by ``result``: success, failure
gateway_delivery_paused                        gauge      1 while an operator has paused the destination
gateway_delivery_concurrency                   gauge      concurrent sends allowed now
gateway_delivery_rate_limit                    gauge      sends per second allowed now (0: no limit)
gateway_delivery_backlog                       gauge      deliveries waiting (pending or in flight)
gateway_delivery_oldest_waiting_seconds        gauge      age of the oldest waiting delivery (0: none)
=============================================  =========  ================================================
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.pipeline.circuit import STATE_VALUES

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _BacklogCollector(Collector):
    """Backlog and the oldest waiting delivery's age, computed at scrape time from the last reading."""

    def __init__(self) -> None:
        self.readings: dict[str, tuple[int, float | None]] = {}  # destination -> (waiting, oldest created_at)

    def collect(self) -> Iterator[Metric]:
        backlog = GaugeMetricFamily("gateway_delivery_backlog", "Deliveries waiting (pending or in flight).",
                                    labels=["destination"])
        oldest = GaugeMetricFamily("gateway_delivery_oldest_waiting_seconds",
                                   "Age of the oldest waiting delivery in seconds (0 when none waits).",
                                   labels=["destination"])
        now = time.time()
        for dest, (n, created) in sorted(self.readings.items()):
            backlog.add_metric([dest], n)
            oldest.add_metric([dest], max(0.0, now - created) if created is not None else 0.0)
        yield backlog
        yield oldest


class DeliveryMetrics:
    """The delivery metric families of one gateway."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.attempts = Counter("gateway_delivery_attempts", "Delivery attempts by destination and outcome.",
                                ["destination", "outcome"], registry=r)
        self.latency = Histogram("gateway_delivery_seconds", "Time a sink took to answer one send (a batch "
                                 "counts once).", ["destination"], registry=r, buckets=LATENCY_BUCKETS)
        self.retries = Counter("gateway_delivery_retries", "Retries scheduled after a failed attempt.",
                               ["destination"], registry=r)
        self.dead_letters = Counter("gateway_delivery_dead_letters", "Deliveries given up (dead letters) by "
                                    "reason: permanent, age, attempts.", ["destination", "reason"], registry=r)
        self.released = Counter("gateway_delivery_released", "Claimed deliveries put back unsent because the "
                                "circuit opened or the destination was paused.", ["destination"], registry=r)
        self.circuit_state = Gauge("gateway_delivery_circuit_state", "Circuit breaker: 0 closed, 1 half-open, "
                                   "2 open.", ["destination"], registry=r)
        self.circuit_transitions = Counter("gateway_delivery_circuit_transitions", "Circuit breaker changes by "
                                           "the state entered.", ["destination", "to"], registry=r)
        self.probes = Counter("gateway_delivery_probes", "Probes of a counterpart behind an open circuit, by "
                              "result.", ["destination", "result"], registry=r)
        self.paused = Gauge("gateway_delivery_paused", "1 while an operator has paused the destination.",
                            ["destination"], registry=r)
        self.concurrency = Gauge("gateway_delivery_concurrency", "Concurrent sends allowed now.", ["destination"],
                                 registry=r)
        self.rate_limit = Gauge("gateway_delivery_rate_limit", "Sends per second allowed now (0: no limit).",
                                ["destination"], registry=r)
        self._backlog = _BacklogCollector()
        r.register(self._backlog)

    def destination(self, name: str) -> None:
        """Make a destination's series exist from the start (a dashboard shows 0, not nothing)."""
        self.circuit_state.labels(name).set(0)
        self.paused.labels(name).set(0)
        for outcome in ("delivered", "retry", "dead"):
            self.attempts.labels(name, outcome)
        self.retries.labels(name)
        self.released.labels(name)
        self._backlog.readings.setdefault(name, (0, None))

    def circuit(self, name: str, state: str) -> None:
        self.circuit_state.labels(name).set(STATE_VALUES[state])
        self.circuit_transitions.labels(name, state).inc()

    def controls(self, name: str, *, paused: bool, concurrency: int, rate: float | None) -> None:
        self.paused.labels(name).set(1 if paused else 0)
        self.concurrency.labels(name).set(concurrency)
        self.rate_limit.labels(name).set(rate or 0)

    def backlog(self, name: str, waiting: int, oldest_created_at: float | None) -> None:
        self._backlog.readings[name] = (waiting, oldest_created_at)

    def render(self) -> bytes:
        """The Prometheus text exposition of every delivery family."""
        return generate_latest(self.registry)
