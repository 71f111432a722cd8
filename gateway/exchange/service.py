"""The exchange as the running gateway runs it: the follower, the clock (并联审批 deadlines, watchdogs,
scheduled reconciliation), and the health of each counterpart for the API and the CLI."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from gateway.exchange.config import Counterpart, counterparts, parse_hhmm
from gateway.exchange.follower import ExchangeFollower, parallel_tick
from gateway.exchange.reconcile import Reconciliation, day_period, gap_alert_text
from gateway.exchange.watchdogs import ContactBook, evaluate
from gateway.pipeline._waiting import FOLLOWER_GATHER, sleep_or
from gateway.pipeline.alerts import alert_item
from gateway.supervision.alerts import make_alert
from gateway.supervision.calendar import WorkCalendar

log = logging.getLogger("gateway.exchange")

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
RECONCILE_CURSOR = "exchange:reconciled:{}"  # the last day reconciled on schedule, per counterpart


def calendar_for(config: Any) -> WorkCalendar:
    override = config.resolve(config.supervision.calendar_override) if config.supervision.calendar_override else None
    return WorkCalendar.default(override_path=override)


class ExchangeService:
    """Runs the exchange follower and the exchange clock inside ``gateway run``."""

    def __init__(self, store: Any, config: Any, router: Any, *, outbound: Mapping[str, Any], sinks: Mapping[str, Any],
                 cipher: Any = None, contacts: ContactBook | None = None, calendar: WorkCalendar | None = None,
                 on_commit: Callable[[], None] | None = None, now: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.config = config
        self.router = router
        self.outbound = dict(outbound)
        self.sinks = sinks
        self.cipher = cipher
        self.contacts = contacts or ContactBook()
        # (counterpart, watch) -> "ok" | "firing" as last judged, for /metrics (gateway_watchdog_firing)
        self.watchdog_states: dict[tuple[str, str], str] = {}
        self.calendar = calendar or calendar_for(config)
        self.on_commit = on_commit
        self.now = now or (lambda: datetime.now(CHINA))
        self.follower = ExchangeFollower(store, config, router, self.calendar, outbound=outbound, now=self.now)
        self.counterparts: dict[str, Counterpart] = counterparts(config)
        self.tick_interval = config.exchange.tick_interval
        self.watching_since = time.time()
        self.wake = asyncio.Event()
        # One step at a time: the loop and a caller (drain, the API) must not fold the same batch twice.
        self._lock = asyncio.Lock()
        self._schedule_lock = asyncio.Lock()
        self.ticks = 0  # clock ticks done (tests wait for the loop's first one)

    # ------------------------------------------------------------------ the loop

    async def run(self, stopping: asyncio.Event) -> None:
        next_tick = 0.0
        while not stopping.is_set():
            progressed = False
            try:
                progressed = await self.step()
                if time.time() >= next_tick:
                    next_tick = time.time() + self.tick_interval
                    await self.tick(self.now())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("exchange step failed; retrying")
            if not progressed:
                await sleep_or(stopping, self.wake, min(1.0, self.tick_interval), FOLLOWER_GATHER)

    async def step(self) -> bool:
        async with self._lock:
            progressed, outcomes = await self.follower.step()
        if any(o.status == "accepted" for o in outcomes) and self.on_commit is not None:
            self.on_commit()
        return progressed

    async def drain(self) -> int:
        """Fold everything committed so far (tests and the CLI); returns the steps taken."""
        steps = 0
        while await self.step():
            steps += 1
        return steps

    async def tick(self, now: datetime) -> None:
        async with self._lock:
            raised = await parallel_tick(self.follower, now)
            await self.watch(now)
        await self.scheduled_reconciliations(now)
        self.ticks += 1
        if raised and self.on_commit is not None:
            self.on_commit()

    # ------------------------------------------------------------------ watchdogs and last contact

    async def watch(self, now: datetime) -> list[dict[str, Any]]:
        """Record last contact and judge every watchdog; returns the watchdogs whose state changed."""
        cps = list(self.counterparts.values())
        sinks = sorted({s for cp in cps for s in cp.sinks})
        delivered = await self.store.last_delivered(sinks)
        stored = await self.store.contacts()
        heard = self.contacts.received()
        contact_rows = [(s, "received", t) for s, t in heard.items()] + [(d, "delivered", t) for d, t in delivered.items()]
        previous = await self.store.watchdogs()
        rows: list[dict[str, Any]] = []
        alerts = []
        changed = []
        for cp in cps:
            if cp.watch.silence is None and cp.watch.expect_by is None:
                continue
            last_received = max([t for s in cp.sources for t in (heard.get(s), stored.get((s, "received")))
                                 if t is not None], default=None)
            last_delivered = max([t for s in cp.sinks for t in (delivered.get(s), stored.get((s, "delivered")))
                                  if t is not None], default=None)
            before = {w: row for (name, w), row in previous.items() if name == cp.name}
            for v in evaluate(cp, now, last_received=last_received, last_delivered=last_delivered,
                              watching_since=self.watching_since, previous=before, calendar=self.calendar):
                rows.append({"counterpart": cp.name, "watch": v.watch, "state": v.state, "since": v.since,
                             "detail": v.detail, "alert_id": (before.get(v.watch) or {}).get("alert_id")})
                if v.alert is None:
                    continue
                alert_type, description = v.alert
                alert = make_alert(alert_type, case_no="", raised_at=now, description=description,
                                   department=cp.name, subject_kind="counterpart",
                                   subject_key=f"{cp.name}:{v.watch}:{v.subject}", distinct_subject=True)
                alert["case_no"] = None
                item = alert_item(alert, now, self.router,
                                  (*self.config.supervision.destinations, *cp.notify))
                if item is not None:
                    alerts.append(item)
                    rows[-1]["alert_id"] = alert["alert_id"]
                changed.append({"counterpart": cp.name, "watch": v.watch, "state": v.state, "alert": alert_type})
                log.warning("watchdog %s of %s: %s — %s", v.watch, cp.name, v.state, description)
        if rows or contact_rows or alerts:
            outcomes = await self.store.set_watchdogs(rows, contact_rows, alerts)
            if any(o.status == "accepted" for o in outcomes) and self.on_commit is not None:
                self.on_commit()
        self.watchdog_states = {(r["counterpart"], r["watch"]): r["state"] for r in rows}
        return changed

    # ------------------------------------------------------------------ reconciliation

    def reconciliation(self, name: str) -> Reconciliation:
        cp = self.counterparts.get(name)
        if cp is None:
            from gateway.exchange.reconcile import ReconcileError

            raise ReconcileError(f"no counterpart {name!r} (counterparts: {', '.join(self.counterparts)})")
        return Reconciliation(self.store, cp, self.sinks, self.outbound, self.cipher)

    async def reconcile(self, name: str, start: datetime, end: datetime, *, triggered_by: str,
                        dry_run: bool = False) -> dict[str, Any]:
        result = await self.reconciliation(name).run(start, end, triggered_by=triggered_by, dry_run=dry_run)
        if self.on_commit is not None and result.get("summary", {}).get("resent"):
            self.on_commit()
        return result

    async def scheduled_reconciliations(self, now: datetime) -> list[dict[str, Any]]:
        """At each counterpart's ``reconcile.at``, reconcile the day before (once; a missed day is caught up)."""
        async with self._schedule_lock:
            return await self._scheduled(now)

    async def _scheduled(self, now: datetime) -> list[dict[str, Any]]:
        done = []
        for cp in self.counterparts.values():
            if cp.reconcile.at is None or now.time() < parse_hhmm(cp.reconcile.at):
                continue
            cursor = RECONCILE_CURSOR.format(cp.name)
            last = await self.store.get_cursor(cursor)
            day = now.date() - timedelta(days=1)
            if last is not None and date.fromisoformat(last) >= day:
                continue
            start, end = day_period(day)
            try:
                result = await self.reconcile(cp.name, start, end, triggered_by="schedule")
            except Exception as exc:
                log.exception("scheduled reconciliation with %s failed", cp.name)
                result = {"counterpart": cp.name, "outcome": "failed", "error": str(exc),
                          "period_start": start.isoformat(), "period_end": end.isoformat()}
            await self.store.commit_ingest([], [], (cursor, day.isoformat()))
            if result.get("outcome") in ("gaps", "unavailable", "failed"):
                await self._gap_alert(cp, result, now)
            done.append(result)
        return done

    async def _gap_alert(self, cp: Counterpart, result: Mapping[str, Any], now: datetime) -> None:
        alert = make_alert("reconciliation_gap", case_no="", raised_at=now, description=gap_alert_text(result),
                           department=cp.name, subject_kind="reconciliation",
                           subject_key=f"{cp.name}:{result.get('period_start')}", distinct_subject=True)
        alert["case_no"] = None
        item = alert_item(alert, now, self.router, (*self.config.supervision.destinations, *cp.notify))
        if item is not None:
            await self.store.commit_ingest([item], [])
            if self.on_commit is not None:
                self.on_commit()


# --------------------------------------------------------------------------- health


def _when(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, CHINA).isoformat(timespec="seconds")


async def counterpart_health(store: Any, config: Any, *, systems: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """Per counterpart: last contact each way, watchdogs, backlog, the last reconciliation.

    ``systems`` narrows to counterparts that have one of them (an operator's view); None: all.
    """
    cps = [cp for cp in counterparts(config).values() if systems is None or set(cp.systems) & systems]
    sinks = sorted({s for cp in cps for s in cp.sinks})
    sources = sorted({s for cp in cps for s in cp.sources})
    delivered = await store.last_delivered(sinks)
    received = await store.last_received(sources)
    stored = await store.contacts()
    dogs = await store.watchdogs()
    backlog = await store.open_deliveries_count(sinks)
    last = await store.last_reconciliations()
    out = []
    for cp in cps:
        heard = [stored.get((s, "received")) for s in cp.sources]
        heard += [datetime.fromisoformat(received[s]).timestamp() for s in cp.sources if s in received]
        took = [t for s in cp.sinks for t in (delivered.get(s), stored.get((s, "delivered")))]
        last_received = max([t for t in heard if t is not None], default=None)
        last_delivered = max([t for t in took if t is not None], default=None)
        watch = [{"watch": w, "state": row["state"], "since": row["since"], "detail": row["detail"]}
                 for (name, w), row in sorted(dogs.items()) if name == cp.name]
        queue = {s: backlog.get(s, {}) for s in cp.sinks}
        rec = last.get(cp.name)
        out.append({
            "counterpart": cp.name, "sources": list(cp.sources), "sinks": list(cp.sinks),
            "last_received": _when(last_received), "last_delivered": _when(last_delivered),
            "last_contact": _when(max([t for t in (last_received, last_delivered) if t is not None], default=None)),
            "watch": {"expect_by": cp.watch.expect_by, "silence_seconds": cp.watch.silence},
            "watchdogs": watch, "state": "firing" if any(w["state"] == "firing" for w in watch) else "ok",
            "backlog": queue,
            "reconcile": {"at": cp.reconcile.at},
            "last_reconciliation": None if rec is None else {
                "id": rec["id"], "outcome": rec["outcome"], "period_start": rec["period_start"],
                "period_end": rec["period_end"], "finished_at": rec["finished_at"], "summary": rec["summary"]},
        })
    return out
