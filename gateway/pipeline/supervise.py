"""The supervision follower: runs the electronic-supervision rules over committed records and the clock.

It reads stored records in arrival order behind a persisted watermark, folds each
into its case's state (gateway.supervision), and commits the new states, the
alerts (as ``supervision_alert`` records, routed and delivered like any other)
and the watermark in one transaction. A crash repeats at most the last batch,
and alert ids are deterministic, so a repeat is a recognised duplicate. Ingest
never waits for it; on a clock tick it re-evaluates only cases whose next check
is due.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.console.index import IndexBatch, index_batch
from gateway.observability.events import alerts_committed
from gateway.pipeline._waiting import FOLLOWER_GATHER, sleep_or
from gateway.pipeline.alerts import SUPERVISION, alert_item
from gateway.pipeline.router import Router
from gateway.records import load_json
from gateway.store import AcceptItem, Store
from gateway.store.cases import INDEX_CURSOR
from gateway.supervision import CaseState, SupervisionEngine

log = logging.getLogger("gateway.supervision")
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")

SYSTEM = SUPERVISION  # the source name alerts carry; routes may name it in `sources`
CURSOR = "supervision:records"
_BATCH = 500


class SupervisionFollower:
    def __init__(self, store: Store, engine: SupervisionEngine, router: Router,
                 extra_destinations: Sequence[str] = (), tick_interval: float = 300.0, *, metrics: Any = None) -> None:
        self.store = store
        self.metrics = metrics  # gateway.observability.GatewayMetrics: alerts raised by type
        self.engine = engine
        self.router = router
        self.extra = tuple(extra_destinations)
        self.tick_interval = tick_interval
        self.wake = asyncio.Event()
        self.alerts_raised = 0
        self.findings_counted = 0  # data-quality findings on the records folded (accepted under on_invalid)

    async def run(self, stopping: asyncio.Event) -> None:
        next_tick = 0.0
        try:
            await self.catch_up_index()
        except Exception:
            log.exception("the console's case index could not catch up; case search may miss older cases")
        while not stopping.is_set():
            try:
                progressed = await self.step()
                if time.time() >= next_tick:
                    await self.tick(datetime.now(CHINA))
                    next_tick = time.time() + self.tick_interval
            except Exception:
                log.exception("supervision step failed; retrying")
                progressed = False
            if not progressed:
                await sleep_or(stopping, self.wake, 1.0, FOLLOWER_GATHER)

    async def step(self) -> bool:
        """Fold the next batch of stored records; False when there was none."""
        after = int(await self.store.get_cursor(CURSOR) or 0)
        rows = await self.store.records_since(after, _BATCH)
        if not rows:
            return False
        records = []
        indexed: list[tuple[int, str, dict[str, Any], str | None]] = []
        for rid, receipt_time, body in rows:
            rec = load_json(body)
            if rec.get("kind") == "supervision_alert":
                indexed.append((rid, receipt_time, rec, None))  # the console indexes alerts of every origin
                continue
            key = self.engine.case_key(rec)
            indexed.append((rid, receipt_time, rec, key))
            if key is not None:
                records.append((key, rec, datetime.fromisoformat(receipt_time)))
        stored = await self.store.case_states([k for k, _, _ in records])
        states: dict[str, CaseState] = {k: CaseState.from_dict(load_json(v)) for k, v in stored.items()}
        alerts: list[dict[str, Any]] = []
        now = datetime.now(CHINA)
        # records of one case committed together (one report, one page) are judged together, after the last
        last_of = {(key, received_at): n for n, (key, _, received_at) in enumerate(records)}
        for n, (key, rec, received_at) in enumerate(records):
            try:
                state, raised = self.engine.on_record(states.get(key), rec, received_at,
                                                      judge_time=last_of[key, received_at] == n)
            except Exception as exc:  # one odd record must not stop supervision of all the others
                log.warning("supervision skipped record %s of case %s: %s",
                            rec.get("provenance", {}).get("ref"), key, exc)
                continue
            states[key] = state
            alerts.extend(raised)
            findings = rec.get("findings")
            if isinstance(findings, list):
                self.findings_counted += len(findings)
        index = index_batch(indexed, states, self.engine.clock, now) if self._indexing else None
        await self._commit(states, alerts, now, (CURSOR, str(rows[-1][0])), index)
        return True

    @property
    def _indexing(self) -> bool:
        return hasattr(self.store, "commit_supervision_indexed")

    async def catch_up_index(self) -> int:
        """Index records folded before the console's case index existed (a store upgraded to it).

        The stored case states are final for those records, so no rule runs again; returns how
        many records were indexed.
        """
        if not self._indexing:
            return 0
        store: Any = self.store
        folded = int(await store.get_cursor(CURSOR) or 0)
        done = int(await store.get_cursor(INDEX_CURSOR) or 0)
        total = 0
        while done < folded:
            rows = [r for r in await store.records_since(done, _BATCH) if r[0] <= folded]
            if not rows:
                break
            indexed = []
            for rid, receipt_time, body in rows:
                rec = load_json(body)
                key = None if rec.get("kind") == "supervision_alert" else self.engine.case_key(rec)
                indexed.append((rid, receipt_time, rec, key))
            stored = await store.case_states([k for _, _, _, k in indexed if k is not None])
            states = {k: CaseState.from_dict(load_json(v)) for k, v in stored.items()}
            await store.commit_index(index_batch(indexed, states, self.engine.clock, datetime.now(CHINA)),
                                     str(rows[-1][0]))
            done = rows[-1][0]
            total += len(rows)
        if total:
            log.info("console case index: caught up on %d records folded before it existed", total)
        return total

    async def tick(self, now: datetime) -> int:
        """Re-evaluate the cases whose clock could raise something by ``now``; returns alerts raised."""
        total = 0
        while True:
            due = await self.store.due_case_states(now.timestamp(), _BATCH)
            if not due:
                return total
            states: dict[str, CaseState] = {}
            alerts: list[dict[str, Any]] = []
            for key, raw in due:
                state, raised = self.engine.tick(CaseState.from_dict(load_json(raw)), now)
                states[key] = state
                alerts.extend(raised)
            await self._commit(states, alerts, now, None)
            total += len(alerts)

    async def _commit(self, states: dict[str, CaseState], alerts: list[dict[str, Any]], now: datetime,
                      cursor: tuple[str, str] | None, index: IndexBatch | None = None) -> None:
        rows = {}
        for key, state in states.items():
            nxt = self.engine.next_check_at(state, now)
            # a check that is already due is pushed one interval out, so a tick cannot spin on it
            ts = None if nxt is None else max(nxt.timestamp(), now.timestamp() + 1.0)
            rows[key] = (json.dumps(state.to_dict(), ensure_ascii=False), ts)
        items = [self._alert_item(a, now) for a in alerts]
        valid = [i for i in items if i is not None]
        if index is not None:
            outcomes = await self.store.commit_supervision_indexed(rows, valid, cursor, index)  # type: ignore[attr-defined]
        else:
            outcomes = await self.store.commit_supervision(rows, valid, cursor)
        self.alerts_raised += len(valid)
        alerts_committed(valid, outcomes, self.metrics)

    def _alert_item(self, alert: dict[str, Any], now: datetime) -> AcceptItem | None:
        return alert_item(alert, now, self.router, self.extra)
