"""The pipeline's log lines and metric updates: an ingest batch committed, deliveries settled, alerts raised.

One structured line per ingest batch and per settled group of deliveries (not per record: at
thousands of records a second a line each would cost more than the record's own work), each
naming the correlation ids it carries, so that ``grep <correlation id>`` finds the request's
line, its ingest and its delivery. Retries and dead letters have a line each from the delivery
worker; one line per delivery comes at DEBUG (``[logging] levels = {"gateway.delivery" = "DEBUG"}``).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.adapters import IngestOutcome
    from gateway.observability.metrics import GatewayMetrics
    from gateway.store import AcceptItem, QuarantineItem, Settlement

ingest_log = logging.getLogger("gateway.ingest")
delivery_log = logging.getLogger("gateway.delivery")
alert_log = logging.getLogger("gateway.alerts")

__all__ = ["alerts_committed", "correlation_fields", "deliveries_settled", "ingest_committed"]


def correlation_fields(ids: Iterable[str | None]) -> dict[str, Any]:
    """``correlation_id`` when the lines' items share one, ``correlation_ids`` (distinct, in order) when not."""
    distinct = list(dict.fromkeys(i for i in ids if i))
    if not distinct:
        return {}
    if len(distinct) == 1:
        return {"correlation_id": distinct[0]}
    return {"correlation_ids": distinct}


def ingest_committed(accepted: Sequence[AcceptItem], quarantined: Sequence[QuarantineItem],
                     outcomes: Sequence[IngestOutcome], seconds: float, metrics: GatewayMetrics | None) -> None:
    """Count and log one committed ingest batch (one system's push, page or part of a file)."""
    first = accepted[0] if accepted else quarantined[0] if quarantined else None
    if first is None:
        return
    system = first.system
    tally = Tally(o.status for o in outcomes)
    if metrics is not None:
        for status, n in tally.items():
            metrics.ingest_records.labels(system, status).inc(n)
        metrics.ingest_seconds.labels(system).observe(seconds)
        metrics.contact("received", system, time.time())
    # INFO even with quarantined items: they are the counterpart's data, counted and kept in the workbench;
    # `gateway ingest` shows them in its summary and would only get noise between its progress lines.
    if not ingest_log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {"system": system, "items": len(outcomes),
                              **{status: tally.get(status, 0) for status in ("accepted", "duplicate", "superseded",
                                                                              "quarantined")},
                              "ms": round(seconds * 1000, 1)}
    fields.update(correlation_fields([*(a.correlation_id for a in accepted), *(q.correlation_id for q in quarantined)]))
    if tally.get("quarantined"):
        fields["quarantine_ids"] = sorted({o.quarantine_id for o in outcomes if o.quarantine_id is not None})[:50]
    ingest_log.info("ingest committed", extra=fields)


def deliveries_settled(destination: str, settlements: Sequence[Settlement], seconds: float,
                       metrics: GatewayMetrics | None) -> None:
    """Log one settled group of deliveries to ``destination`` (and each one at DEBUG); note the last success.

    Each retry and dead letter has its own line from the delivery worker (gateway.pipeline.delivery),
    with its correlation id; this line says what the group came to and which ids it carried.
    """
    if not settlements:
        return
    tally = Tally(s.outcome for s in settlements)
    if metrics is not None and tally.get("delivered"):
        metrics.contact("delivered", destination, time.time())
    if delivery_log.isEnabledFor(logging.DEBUG):
        for s in settlements:
            delivery_log.debug("delivery settled", extra={
                "destination": destination, "delivery_id": s.delivery_id, "outcome": s.outcome,
                "attempt": s.attempt, "idempotency_key": s.idempotency_key, "kind": s.kind,
                "record_key": s.record_key, "case_no": s.case_no, "correlation_id": s.correlation_id,
                "remote_id": s.remote_id, "error": s.error})
    if not delivery_log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {"destination": destination, "deliveries": len(settlements),
                              **{outcome: tally.get(outcome, 0) for outcome in ("delivered", "retry", "dead",
                                                                                "released")},
                              "ms": round(seconds * 1000, 1)}
    fields.update(correlation_fields(s.correlation_id for s in settlements))
    delivery_log.info("deliveries settled", extra=fields)


def alerts_committed(items: Sequence[AcceptItem], outcomes: Sequence[IngestOutcome],
                     metrics: GatewayMetrics | None) -> None:
    """Count the alert records that were new (an alert raised again is a duplicate of its deterministic id)."""
    new = {(o.kind, o.record_key) for o in outcomes if o.status == "accepted" and o.kind == "supervision_alert"}
    for it in items:
        if (it.kind, it.record_key) not in new:
            continue
        try:
            data = json.loads(it.body).get("data") or {}
        except (ValueError, AttributeError):
            data = {}
        alert_type, severity = str(data.get("alert_type") or "unknown"), str(data.get("severity") or "unknown")
        if metrics is not None:
            metrics.alerts_raised.labels(alert_type, severity).inc()
        level = logging.WARNING if severity == "red" else logging.INFO
        alert_log.log(level, "alert raised", extra={
            "alert_type": alert_type, "severity": severity, "case_no": data.get("case_no"), "rule": data.get("rule"),
            "alert_id": it.record_key, "description": data.get("description"), "routed_to": list(it.destinations)})
