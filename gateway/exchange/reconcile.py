"""Reconciliation (对账) with one counterpart for one period: counts and a hash manifest, compared; gaps repaired.

Sent: every delivery to the counterpart's sinks that succeeded in the period, named by its
idempotency key, with the digest of the body it carried (the stored record rendered again
through the sink's outbound mapping, which is deterministic), against what the counterpart
says it received. What it lacks is sent again — a new outbox row with the same idempotency
key, so a receiver that did get it after all recognises it. Received: every record stored from
the counterpart's sources in the period, named by kind, business key and version, against
what it says it sent; what the gateway lacks it is asked to send again, where it can.

The counterpart's side comes from an adapter's optional SDK methods (``gateway.adapters.Reconciler``
on one of its sinks). Each run is kept (``exchange_reconciliations``) and is one audit entry,
with one ``resent`` entry per delivery sent again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from gateway.adapters import (
    CounterpartManifest,
    DeliveryError,
    ManifestEntry,
    ManifestUnavailable,
    ReconcilePeriod,
    Reconciler,
    manifest_digest,
)
from gateway.exchange.config import Counterpart
from gateway.store.exchange import ExtraDelivery

log = logging.getLogger("gateway.exchange.reconcile")

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
GAPS_KEPT = 500  # entries of each kind of gap kept with the result (the counts are always whole)
MANIFEST_TIMEOUT = 120.0


class ReconcileError(Exception):
    """The reconciliation cannot be run as asked (an unknown counterpart, a bad period)."""


def day_period(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), CHINA)
    return start, start + timedelta(days=1)


def iso(moment: datetime) -> str:
    return moment.astimezone(CHINA).isoformat(timespec="milliseconds")


@dataclass
class Reconciliation:
    """Everything one run needs from the gateway: the store, the counterpart, how its sinks render."""

    store: Any
    counterpart: Counterpart
    sinks: Mapping[str, Any]  # started Sink objects by name
    outbound: Mapping[str, Any]  # OutboundMapping by sink
    cipher: Any = None
    gaps: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def reconciler(self) -> tuple[str, Reconciler] | None:
        cp = self.counterpart
        names = [cp.reconcile.via] if cp.reconcile.via else list(cp.sinks)
        for name in names:
            sink = self.sinks.get(name)
            if sink is not None and isinstance(sink, Reconciler):
                return name, sink
        return None

    async def run(self, start: datetime, end: datetime, *, triggered_by: str, dry_run: bool = False) -> dict[str, Any]:
        if end <= start:
            raise ReconcileError(f"the period ends ({iso(end)}) before it starts ({iso(start)})")
        cp = self.counterpart
        started = iso(datetime.now(CHINA))
        result: dict[str, Any] = {"counterpart": cp.name, "period_start": iso(start), "period_end": iso(end),
                                  "triggered_by": triggered_by, "started_at": started, "dry_run": dry_run}
        found = self.reconciler()
        if found is None:
            return await self._finish(result, "unavailable", {}, [], [], error=(
                f"no sink of counterpart {cp.name} ({', '.join(cp.sinks) or 'none'}) can reconcile: its adapter "
                "offers no reconciliation or none is configured (see docs/exchange.md, \"Reconciliation\")"),
                dry_run=dry_run)
        via, reconciler = found
        slack = timedelta(seconds=cp.reconcile.slack)
        period = ReconcilePeriod(cp.name, start, end, cp.reconcile.slack)
        try:
            theirs = await asyncio.wait_for(reconciler.reconcile_manifest(period), timeout=MANIFEST_TIMEOUT)
        except (ManifestUnavailable, DeliveryError, TimeoutError, OSError) as exc:
            why = str(exc) or type(exc).__name__
            return await self._finish(result, "unavailable", {"via": via}, [], [],
                                      error=f"{via}: the counterpart's manifest is unavailable: {why}", dry_run=dry_run)
        summary: dict[str, Any] = {"via": via}
        resends = await self._sent(theirs, start, end, slack, summary)
        wanted = await self._received(theirs, start, end, slack, summary)
        backlog = await self.store.open_deliveries_count(cp.sinks)
        summary["backlog"] = backlog
        requested: list[dict[str, Any]] = []
        if dry_run or not cp.reconcile.resend:
            resends = []
        if wanted and not dry_run and cp.reconcile.request and theirs.can_resend:
            entries = [ManifestEntry(key=w["key"], kind=w["kind"], version=w["version"], at=w.get("at")) for w in wanted]
            try:
                agreed = await reconciler.request_resend(period, entries)
            except (ManifestUnavailable, DeliveryError, TimeoutError, OSError) as exc:
                summary["request_error"] = str(exc) or type(exc).__name__
            else:
                requested = wanted
                summary["agreed"] = agreed
                for gap in self.gaps.get("received_missing", []):
                    gap["requested"] = True
        for gap in self.gaps.get("sent_missing", []):
            gap["resent"] = any(r.idempotency_key == gap["key"] for r in resends)
        gap_count = sum(summary[d][k] for d in ("sent", "received") for k in ("missing", "differing", "unexpected")
                        if k in summary[d])
        if gap_count == 0:
            outcome = "clean"
        else:
            repaired = (len(resends) == summary["sent"]["resendable"]
                        and len(requested) == summary["received"]["missing"]
                        and not summary["sent"]["differing"] and not summary["sent"]["unexpected"]
                        and not summary["received"]["unexpected"])
            outcome = "repaired" if repaired and not dry_run else "gaps"
        return await self._finish(result, outcome, summary, resends, requested, dry_run=dry_run)

    async def _finish(self, result: dict[str, Any], outcome: str, summary: dict[str, Any],
                      resends: Sequence[ExtraDelivery], requested: Sequence[dict[str, Any]], *,
                      error: str | None = None, dry_run: bool) -> dict[str, Any]:
        result.update(outcome=outcome, summary=summary, gaps={k: v[:GAPS_KEPT] for k, v in self.gaps.items()})
        if error:
            result["error"] = error
            result["summary"] = {**summary, "error": error}
        if dry_run:
            result.update(id=None, finished_at=iso(datetime.now(CHINA)), audit_seq=None)
            return result
        saved = await self.store.save_reconciliation(result, resends, requested)
        return {**saved, "dry_run": False}

    # ------------------------------------------------------------------ what we sent

    def _digest(self, row: Mapping[str, Any]) -> str | None:
        renderer = self.outbound.get(row["destination"])
        if renderer is None:
            return None
        try:
            record = json.loads(row["body"])
            if self.cipher is not None:
                record = self.cipher.open_record(record)
            return manifest_digest(renderer.render(record))
        except Exception as exc:  # a record that no longer renders: compared by key alone
            log.debug("reconcile: delivery %s cannot be rendered again: %s", row["delivery_id"], exc)
            return None

    async def _sent(self, theirs: CounterpartManifest, start: datetime, end: datetime, slack: timedelta,
                    summary: dict[str, Any]) -> list[ExtraDelivery]:
        cp = self.counterpart
        rows = await self.store.delivered_between(cp.sinks, (start - slack).timestamp(), (end + slack).timestamp())
        lo, hi = start.timestamp(), end.timestamp()
        ours = [r for r in rows if lo <= r["settled_at"] < hi]
        window_keys = {r["idempotency_key"] for r in rows}
        if theirs.received is None:
            summary["sent"] = {"ours": len(ours), "theirs": None, "missing": 0, "differing": 0, "unexpected": 0,
                               "resendable": 0, "note": "the counterpart does not say what it received"}
            return []
        got = {e.key: e for e in theirs.received}
        missing, differing, resends = [], [], []
        for r in ours:
            entry = got.get(r["idempotency_key"])
            if entry is None:
                missing.append(r)
                continue
            if entry.digest:
                mine = self._digest(r)
                if mine is not None and mine != entry.digest:
                    differing.append({"key": r["idempotency_key"], "kind": r["kind"], "record_key": r["record_key"],
                                      "version": r["version"], "case_no": r["case_no"], "ours": mine,
                                      "theirs": entry.digest})
        theirs_in = [e for e in theirs.received if _in(e.at, start, end)]
        strangers = [e for e in theirs_in if e.key not in window_keys]
        known = await self.store.deliveries_with_keys([e.key for e in strangers]) if strangers else {}
        unexpected = [{"key": e.key, "at": e.at, "digest": e.digest} for e in strangers if e.key not in known]
        superseded = []
        for r in missing:
            if r["status"] == "superseded":
                superseded.append(r)  # a newer version went out since: sending this one again changes nothing
                continue
            resends.append(ExtraDelivery(record_id=r["record_id"], destination=r["destination"], case_no=r["case_no"],
                                         idempotency_key=r["idempotency_key"], kind=r["kind"],
                                         record_key=r["record_key"],
                                         reason=f"reconciliation: {cp.name} has no record of receiving it", mode="resend"))
        self.gaps["sent_missing"] = [{"key": r["idempotency_key"], "destination": r["destination"], "kind": r["kind"],
                                      "record_key": r["record_key"], "version": r["version"], "case_no": r["case_no"],
                                      "delivered_at": iso(datetime.fromtimestamp(r["settled_at"], CHINA)),
                                      "superseded": r["status"] == "superseded"} for r in missing]
        self.gaps["sent_differing"] = differing
        self.gaps["sent_unexpected"] = unexpected
        summary["sent"] = {"ours": len(ours), "theirs": len(theirs_in), "missing": len(missing),
                           "differing": len(differing), "unexpected": len(unexpected), "resendable": len(resends),
                           "superseded": len(superseded)}
        return resends

    # ------------------------------------------------------------------ what we received

    async def _received(self, theirs: CounterpartManifest, start: datetime, end: datetime, slack: timedelta,
                        summary: dict[str, Any]) -> list[dict[str, Any]]:
        cp = self.counterpart
        rows = await self.store.received_between(cp.sources, iso(start - slack), iso(end + slack))
        ours = [r for r in rows if iso(start) <= r["receipt_time"] < iso(end)]
        have = {(r["kind"], r["record_key"], int(r["version"])) for r in rows}
        if theirs.sent is None:
            summary["received"] = {"ours": len(ours), "theirs": None, "missing": 0, "unexpected": 0,
                                   "note": "the counterpart does not say what it sent"}
            return []
        theirs_in = [e for e in theirs.sent if _in(e.at, start, end) and e.kind]
        claimed = {(e.kind or "", e.key, int(e.version or 1)) for e in theirs.sent}
        absent = [e for e in theirs_in if (e.kind or "", e.key, int(e.version or 1)) not in have]
        stored = await self.store.records_with_keys(cp.sources, [(e.kind or "", e.key) for e in absent]) if absent else []
        versions: dict[tuple[str, str], set[int]] = {}
        for r in stored:
            versions.setdefault((r["kind"], r["record_key"]), set()).add(int(r["version"]))
        missing, superseded = [], []
        for e in absent:
            seen = versions.get((e.kind or "", e.key), set())
            version = int(e.version or 1)
            if version in seen:
                continue  # received outside the window: not a gap
            gap = {"kind": e.kind, "key": e.key, "version": version, "at": e.at}
            if seen and max(seen) > version:
                superseded.append(gap)  # a newer version is here already: nothing to ask for
            else:
                missing.append(gap)
        unexpected = [{"kind": r["kind"], "key": r["record_key"], "version": r["version"],
                       "received_at": r["receipt_time"]} for r in ours
                      if (r["kind"], r["record_key"], int(r["version"])) not in claimed]
        self.gaps["received_missing"] = [{**g, "requested": False} for g in missing]
        self.gaps["received_superseded"] = superseded
        self.gaps["received_unexpected"] = unexpected
        summary["received"] = {"ours": len(ours), "theirs": len(theirs_in), "missing": len(missing),
                               "superseded": len(superseded), "unexpected": len(unexpected),
                               "can_resend": theirs.can_resend}
        return missing


def _in(at: str | None, start: datetime, end: datetime) -> bool:
    """Whether a counterpart's timestamp falls in [start, end); one it did not give counts as inside."""
    if not at:
        return True
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        return True
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA)
    return start <= moment < end


def gap_alert_text(result: Mapping[str, Any]) -> str:
    s = result.get("summary") or {}
    sent, received = s.get("sent") or {}, s.get("received") or {}
    if result.get("outcome") == "unavailable":
        return f"与 {result['counterpart']} 对账（{result['period_start'][:10]}）未能进行：{result.get('error')}"
    return (f"与 {result['counterpart']} 对账（{result['period_start'][:16]} 至 {result['period_end'][:16]}）发现差异："
            f"我方送出 {sent.get('ours')}，对方收到 {sent.get('theirs')}，对方缺 {sent.get('missing', 0)}，"
            f"内容不同 {sent.get('differing', 0)}，对方多出 {sent.get('unexpected', 0)}；对方送出 {received.get('theirs')}，"
            f"我方收到 {received.get('ours')}，我方缺 {received.get('missing', 0)}，"
            f"我方多出 {received.get('unexpected', 0)}（结果编号 {result.get('id')}）")
