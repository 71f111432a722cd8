"""Gateway records the gateway itself originates: supervision alerts and audit seals, routed like any record.

The supervision follower raises case alerts; the sealer raises an alert when the audit trail does
not hold and hands every signed seal to the supervisors' systems as an ``audit_seal`` record. They
all become ``AcceptItem``s here, deduplicated by their deterministic keys and delivered through the
outbox like records that came from a counterpart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.adapters import IngestOutcome
from gateway.observability.events import alerts_committed
from gateway.pipeline.ingest import idempotency_key, receipt_id
from gateway.pipeline.router import Router
from gateway.schema import KINDS, SCHEMA_VERSION
from gateway.store import AcceptItem, Store
from gateway.supervision.alerts import make_alert

log = logging.getLogger("gateway.alerts")

SUPERVISION = "supervision"  # the source name alerts carry; routes may name it in `sources`
AUDIT = "audit"  # the source name audit seals carry
_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")


def gateway_record(
    system: str,
    kind: str,
    data: Mapping[str, Any],
    now: datetime,
    destinations: Sequence[str],
    *,
    ref: str,
    mapping: str,
) -> AcceptItem | None:
    """An AcceptItem for a record the gateway made itself, or None (logged) when it does not validate."""
    spec = KINDS[kind]
    errors = spec.validator(data)
    if errors:
        log.error("the gateway made an invalid %s record (%s): %s", kind, ref, "; ".join(e.message for e in errors))
        return None
    key = spec.record_key(data)
    version = spec.version(data)
    at = now.isoformat(timespec="milliseconds")
    canonical_data = json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)
    phash = "sha256:" + hashlib.sha256(canonical_data.encode("utf-8")).hexdigest()
    rid = receipt_id(system, kind, key, version)
    business_time = spec.business_time(data)
    body = json.dumps({
        "kind": kind, "schema_version": SCHEMA_VERSION, "data": dict(data),
        "provenance": {"source_system": system, "source_id": key, "source_version": version,
                       "business_time": business_time, "receipt_time": at, "payload_hash": phash,
                       "original": {}, "ref": ref, "mapping": mapping, "receipt": rid},
    }, ensure_ascii=False, default=str)
    dests = tuple(dict.fromkeys(destinations))
    return AcceptItem(
        system=system, kind=kind, record_key=key, version=version, case_no=spec.case_no(data),
        business_time=business_time, receipt_time=at, payload_hash=phash, body=body, ref=ref, receipt_id=rid,
        destinations=dests, idempotency_keys=tuple(idempotency_key(system, kind, key, version, d) for d in dests),
        mapping=mapping)


def alert_item(alert: Mapping[str, Any], now: datetime, router: Router, extra: Sequence[str] = ()) -> AcceptItem | None:
    """A ``supervision_alert`` record (data from ``make_alert``), routed by the routes and ``extra``."""
    dests = [*router("supervision_alert", SUPERVISION, alert), *extra]
    where = f"on case {alert.get('case_no')}" if alert.get("case_no") else "on the gateway"
    return gateway_record(SUPERVISION, "supervision_alert", alert, now, dests,
                          ref=f"rule {alert.get('rule')} {where}", mapping="supervision@1")


def seal_item(chain: str, seal: Any, now: datetime, destinations: Sequence[str]) -> AcceptItem | None:
    """An ``audit_seal`` record: a signed seal, for the supervisors to keep as a witness."""
    data = {
        "chain": chain, "seal": seal.seal, "from_seq": seal.from_seq, "to_seq": seal.to_seq,
        "statement_hash": seal.statement_hash, "statement": seal.statement.decode("utf-8"),
        "signature": base64.b64encode(seal.signature).decode("ascii"), "key_id": seal.key_id,
        "signature_algorithm": seal.signature_algorithm, "signed_at": now.isoformat(timespec="seconds"),
    }
    return gateway_record(AUDIT, "audit_seal", data, now, destinations, ref=f"audit seal {seal.seal}",
                          mapping="audit@1")


class GatewayAlerts:
    """Raise gateway-level alerts (not tied to one record's arrival) and hand out audit seals."""

    def __init__(self, store: Store, router: Router, supervision_destinations: Sequence[str] = (),
                 witness_destinations: Sequence[str] = (), chain: str = "gateway",
                 on_commit: Callable[[], None] | None = None, metrics: Any = None) -> None:
        self.store = store
        self.metrics = metrics  # gateway.observability.GatewayMetrics: alerts raised by type
        self.router = router
        self.supervision_destinations = tuple(supervision_destinations)
        self.witness_destinations = tuple(witness_destinations)
        self.chain = chain
        self.on_commit = on_commit

    async def _commit(self, item: AcceptItem | None) -> IngestOutcome | None:
        if item is None:
            return None
        outcome = (await self.store.commit_ingest([item], []))[0]
        alerts_committed([item], [outcome], self.metrics)
        if self.on_commit is not None and outcome.status == "accepted":
            self.on_commit()
        return outcome

    async def raise_alert(self, alert_type: str, description: str, *, case_no: str | None = None,
                          subject_key: str | None = None, department: str | None = None,
                          also_to: Sequence[str] = ()) -> IngestOutcome | None:
        """Commit one alert record, routed by the routes, [supervision] destinations and ``also_to``."""
        now = datetime.now(_CHINA)
        alert = make_alert(alert_type, case_no=case_no or "", raised_at=now, description=description,
                           department=department, subject_key=subject_key, distinct_subject=subject_key is not None)
        if not case_no:
            alert["case_no"] = None
        return await self._commit(alert_item(alert, now, self.router, (*self.supervision_destinations, *also_to)))

    async def raise_alerts(self, alerts: Sequence[dict[str, Any]], *, exclude: Sequence[str] = ()) -> list[IngestOutcome]:
        """Commit several alerts (data from ``make_alert``) in one transaction, routed like ``raise_alert``.

        ``exclude`` names destinations an alert must not go to — a dead letter's own destination,
        so that an alert about a destination that refuses records is not queued behind them.
        """
        now = datetime.now(_CHINA)
        items = []
        for alert in alerts:
            if not alert.get("case_no"):
                alert["case_no"] = None
            log.warning("alert %s raised: %s", alert.get("alert_type"), alert.get("description"))
            item = alert_item(alert, now, self.router, self.supervision_destinations)
            if item is not None and exclude:
                keep = [i for i, d in enumerate(item.destinations) if d not in exclude]
                item.destinations = tuple(item.destinations[i] for i in keep)
                item.idempotency_keys = tuple(item.idempotency_keys[i] for i in keep)
                item.audit_made = None  # its entry names the destinations: the writer makes it whole
            if item is not None:
                items.append(item)
        if not items:
            return []
        outcomes = await self.store.commit_ingest(items, [])
        if self.on_commit is not None and any(o.status == "accepted" for o in outcomes):
            self.on_commit()
        return outcomes

    async def audit_alarm(self, problem: str) -> None:
        """The sealer's alarm: the trail does not hold, signing stopped. One alert per distinct problem.

        It also goes to the witness destinations: whoever keeps the seals must learn that no more come.
        """
        await self.raise_alert("audit_integrity", f"审计链校验失败，封印已停止签名：{problem}",
                               subject_key=hashlib.sha256(problem.encode("utf-8")).hexdigest()[:16],
                               also_to=self.witness_destinations)

    async def seal_signed(self, seal: Any) -> None:
        """Deliver a freshly signed seal to the witness destinations (when any are configured)."""
        if self.witness_destinations:
            await self._commit(seal_item(self.chain, seal, datetime.now(_CHINA), self.witness_destinations))
