"""The exchange follower: links, case resolution, licence effects and 并联审批 over committed records.

It reads stored records in arrival order behind a persisted watermark (and new quarantine
entries behind another), decides in Python what changes, and commits the changes, the records
it makes (notices, alerts, combined results) and both watermarks in one transaction
(``Store.apply_exchange``). A crash repeats at most the last batch: links and states are upserts,
deliveries are added only where missing, and the records it makes have deterministic keys.
Ingest never waits for it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.exchange import parallel as par
from gateway.exchange.config import Counterpart, ParallelScheme, counterparts
from gateway.exchange.correlate import Facts, facts_of, resolve
from gateway.pipeline.alerts import alert_item, gateway_record
from gateway.pipeline.ingest import idempotency_key
from gateway.pipeline.router import Router
from gateway.records import load_json
from gateway.store.exchange import AuditEvent, ExchangeBatch, ExtraDelivery, Resolution
from gateway.supervision.alerts import make_alert
from gateway.supervision.calendar import WorkCalendar

log = logging.getLogger("gateway.exchange")

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
RECORDS_CURSOR = "exchange:records"
QUARANTINE_CURSOR = "exchange:quarantine"
HISTORY_CURSOR = "exchange:history"  # records up to this id were stored before the exchange existed
BATCH = 500
_EFFECT_ALERT = {"suspend": "licence_suspended", "revoke": "licence_revoked"}
_EFFECT_WORDS = {"suspend": "暂扣", "revoke": "撤销/吊销"}
_LINKED_KINDS_SKIPPED = ("audit_seal",)


class ExchangeFollower:
    """Applies correlation, licence effects and 并联审批 to what the store committed."""

    def __init__(self, store: Any, config: Any, router: Router, calendar: WorkCalendar, *,
                 outbound: Mapping[str, Any], now: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.config = config
        self.router = router
        self.calendar = calendar
        self.outbound = dict(outbound)
        self.now = now or (lambda: datetime.now(CHINA))
        ex = config.exchange
        self.schemes: tuple[ParallelScheme, ...] = tuple(ex.parallel)
        self.counterparts: dict[str, Counterpart] = counterparts(config)
        self.counterpart_of_source = {s: cp for cp in self.counterparts.values() for s in cp.sources}
        self.supervision_destinations = tuple(config.supervision.destinations)
        self.notify = tuple(ex.effects.notify if ex.effects.notify is not None else config.supervision.destinations)
        self.to_approver = ex.effects.to_approver
        self.records_made = 0
        self.history: int | None = None

    # ------------------------------------------------------------------ one step

    async def step(self) -> tuple[bool, list[Any]]:
        """Fold the next batch of records and quarantine entries; (progressed, outcomes of records made)."""
        if self.history is None:
            await self._history()
        after = int(await self.store.get_cursor(RECORDS_CURSOR) or 0)
        rows = await self.store.exchange_records_after(after, BATCH)
        q_after = int(await self.store.get_cursor(QUARANTINE_CURSOR) or 0)
        entries = await self.store.exchange_quarantine_after(q_after, BATCH)
        if not rows and not entries:
            return False, []
        now = self.now()
        batch = ExchangeBatch()
        if rows:
            await self._records(rows, batch, now)
            batch.cursors.append((RECORDS_CURSOR, str(rows[-1]["id"])))
        if entries:
            self._conflicts(entries, batch, now)
            batch.cursors.append((QUARANTINE_CURSOR, str(entries[-1]["id"])))
        outcomes = await self.store.apply_exchange(batch)
        made = [o for o in outcomes if o.status == "accepted"]
        self.records_made += len(made)
        return True, outcomes

    async def _history(self) -> None:
        """Where history ends: records a store held before the exchange existed (migration 0030 notes the last
        one) are linked and their licence states kept, but nobody is told again of what happened before, and
        nothing is dispatched or routed again."""
        self.history = int(await self.store.get_cursor(HISTORY_CURSOR) or 0)

    # ------------------------------------------------------------------ records

    async def _records(self, rows: Sequence[dict[str, Any]], batch: ExchangeBatch, now: datetime) -> None:
        items: list[tuple[dict[str, Any], dict[str, Any], Facts]] = []
        for row in rows:
            if row["kind"] in _LINKED_KINDS_SKIPPED:
                continue
            try:
                data = load_json(row["body"]).get("data") or {}
            except (ValueError, AttributeError):
                log.warning("exchange: record %s is not readable JSON; not linked", row["id"])
                continue
            items.append((row, data, facts_of(row["kind"], data)))
        await _Correlation(self, batch, now).run(items)
        if self.schemes:
            await _Parallel(self, batch, now).run([i for i in items if not self.historic(i[0]["id"])])

    def historic(self, record_id: int) -> bool:
        """Stored before the exchange existed: linked, but nobody is told of it again."""
        return self.history is not None and record_id <= self.history

    # ------------------------------------------------------------------ version conflicts

    def _conflicts(self, entries: Sequence[dict[str, Any]], batch: ExchangeBatch, now: datetime) -> None:
        for entry in entries:
            conflicts = [e for e in entry["errors"] if e.get("rule") == "version_conflict"]
            if not conflicts or entry.get("state") != "open":
                continue
            error = conflicts[0]
            case_no = error.get("case_no") or ""
            alert = make_alert(
                "version_conflict", case_no=case_no, raised_at=now,
                description=f"{entry['system']} 发来的 {error.get('kind')} {error.get('record_key') or ''} 第 "
                            f"{error.get('value')} 版与已存的同一版本内容不同，已隔离（隔离编号 {entry['id']}）；"
                            "请对方以新版本重发，或在隔离区处理",
                subject_kind=error.get("kind"), subject_key=f"quarantine:{entry['id']}", distinct_subject=True)
            if not case_no:
                alert["case_no"] = None
            item = alert_item(alert, now, self.router, self.supervision_destinations)
            if item is not None:
                batch.records.append(item)

    # ------------------------------------------------------------------ helpers

    def delivery(self, row: Mapping[str, Any], destination: str, case_no: str, reason: str,
                 mode: str = "route") -> ExtraDelivery:
        return ExtraDelivery(
            record_id=int(row["id"]), destination=destination, case_no=case_no,
            idempotency_key=idempotency_key(row["system"], row["kind"], row["record_key"], int(row["version"]),
                                            destination),
            reason=reason, kind=row["kind"], record_key=row["record_key"], mode=mode)

    def sinks_rendering(self, counterpart: Counterpart | None, kind: str) -> list[str]:
        if counterpart is None:
            return []
        return [s for s in counterpart.sinks if s in self.outbound and kind in self.outbound[s].kinds]


class _Correlation:
    """One batch of correlation: links, licences, case resolution (now or late) and licence effects."""

    def __init__(self, follower: ExchangeFollower, batch: ExchangeBatch, now: datetime) -> None:
        self.f = follower
        self.store = follower.store
        self.batch = batch
        self.now = now
        self.at = now.isoformat(timespec="milliseconds")
        self.known: dict[str, dict[str, Any]] = {}  # licences: stored, then as this batch changes them
        self.changed: dict[str, dict[str, Any]] = {}
        self.by_credit: dict[str, list[dict[str, Any]]] = {}
        self.cases_by_credit: dict[str, set[str]] = {}
        self.newly_cased_licences: set[str] = set()
        self.newly_cased_credits: set[str] = set()
        self.links: dict[int, dict[str, Any]] = {}
        self.effects: list[tuple[dict[str, Any], Facts, str, str]] = []  # (link, facts, case, licence)
        self.resolved_results: list[tuple[dict[str, Any], str]] = []  # supervision results tied to a licence

    async def run(self, items: Sequence[tuple[dict[str, Any], dict[str, Any], Facts]]) -> None:
        if not items:
            return
        numbers = {f.licence_no for _, _, f in items if f.licence_no}
        credits = {f.credit_code for row, _, f in items if f.credit_code and row["kind"] == "supervision_result"
                   and not f.case_no}
        if numbers:
            self.known.update(await self.store.exchange_licences(sorted(numbers)))
        if credits:
            self.by_credit.update(await self.store.exchange_licences_of_credit_codes(sorted(credits)))
            self.cases_by_credit.update(await self.store.exchange_cases_of_credit_codes(sorted(credits)))
        for row, data, facts in items:
            self._one(row, data, facts)
        await self._late()
        for link, facts, case_no, licence_no in self.effects:
            self._effect(link, facts, case_no, licence_no)
        await self._to_approvers()
        self.batch.links.extend(self.links.values())
        self.batch.licences.extend(self.changed.values())

    def _licence(self, number: str) -> dict[str, Any]:
        lic = self.changed.get(number) or self.known.get(number)
        if lic is None:
            lic = {"licence_no": number, "case_no": None, "credit_code": None, "licence_name": None,
                   "decision_no": None, "approved_by": None, "record_id": None, "valid_until": None,
                   "state": "valid", "state_since": None, "state_by": None}
        lic = {**lic, "updated_at": self.at}
        self.changed[number] = lic
        self.known[number] = lic
        return lic

    def _register(self, row: dict[str, Any], data: dict[str, Any], facts: Facts) -> None:
        """Approval results and completions name licences: keep each licence's case, holder and approver."""
        assert facts.licence_no is not None
        lic = self._licence(facts.licence_no)
        had_case = lic.get("case_no")
        if row["kind"] == "approval_result":
            lic.update(approved_by=row["system"], record_id=row["id"], decision_no=facts.decision_no,
                       licence_name=data.get("license_name") or lic.get("licence_name"),
                       valid_until=data.get("valid_until") or lic.get("valid_until"))
            if facts.credit_code:
                lic["credit_code"] = facts.credit_code
        if facts.case_no and not had_case:
            lic["case_no"] = facts.case_no
        if lic.get("case_no") and not had_case:
            self.newly_cased_licences.add(facts.licence_no)
        if lic.get("credit_code"):
            listed = [x for x in self.by_credit.get(lic["credit_code"], []) if x["licence_no"] != facts.licence_no]
            self.by_credit[lic["credit_code"]] = [*listed, lic]
            if lic.get("case_no"):
                self.newly_cased_credits.add(lic["credit_code"])

    def _one(self, row: dict[str, Any], data: dict[str, Any], facts: Facts) -> None:
        kind = row["kind"]
        current = row["status"] == "current"
        if kind in ("approval_result", "completion") and facts.licence_no and current:
            self._register(row, data, facts)
        if facts.credit_code and facts.case_no and kind in ("case", "approval_result", "completion"):
            self.cases_by_credit.setdefault(facts.credit_code, set()).add(facts.case_no)
            self.newly_cased_credits.add(facts.credit_code)
        case_no, licence_no, by, note = facts.case_no, facts.licence_no, "record" if facts.case_no else None, None
        if case_no is None and kind == "supervision_result":
            r = resolve(facts, self.known, self.by_credit.get(facts.credit_code or "", []),
                        self.cases_by_credit.get(facts.credit_code or "", set()))
            if r.case_no is not None:
                case_no, licence_no, by = r.case_no, r.licence_no, r.by
                self.batch.resolutions.append(Resolution(row["id"], case_no, row["system"], kind, row["record_key"],
                                                         r.by or "licence", licence_no, row["case_no"]))
            else:
                note = r.note
        link = {"record_id": row["id"], "system": row["system"], "kind": kind, "record_key": row["record_key"],
                "version": row["version"], "case_no": case_no, "licence_no": licence_no,
                "credit_code": facts.credit_code, "decision_no": facts.decision_no, "resolved_by": by,
                "facts": json.dumps(facts.detail(), ensure_ascii=False) if facts.detail() else None,
                "note": note, "linked_at": self.at}
        self.links[row["id"]] = link
        if kind == "supervision_result" and case_no and current:
            self._resolved_result(link, facts, case_no, licence_no)

    def _resolved_result(self, link: dict[str, Any], facts: Facts, case_no: str, licence_no: str | None) -> None:
        if licence_no is None:
            if facts.effect is not None:
                link["note"] = (f"{_EFFECT_WORDS[facts.effect]} of a licence, but which licence of case {case_no} "
                                "is not said: no licence marked")
            return
        self.effects.append((link, facts, case_no, licence_no))
        self.resolved_results.append((link, licence_no))

    async def _late(self) -> None:
        """Links that waited for their case (stored, or earlier in this batch) and can be resolved now."""
        waiting = [link for link in self.links.values() if link["case_no"] is None and link["kind"] == "supervision_result"]
        if self.newly_cased_licences or self.newly_cased_credits:
            stored = await self.store.exchange_unresolved_links(sorted(self.newly_cased_licences),
                                                                sorted(self.newly_cased_credits))
            waiting.extend(link for link in stored if link["record_id"] not in self.links)
        if not waiting:
            return
        missing = {lk["credit_code"] for lk in waiting if lk["credit_code"] and lk["credit_code"] not in self.by_credit}
        if missing:
            for code, rows in (await self.store.exchange_licences_of_credit_codes(sorted(missing))).items():
                self.by_credit.setdefault(code, rows)
            for code, cases in (await self.store.exchange_cases_of_credit_codes(sorted(missing))).items():
                self.cases_by_credit.setdefault(code, set()).update(cases)
        numbers = {lk["licence_no"] for lk in waiting if lk["licence_no"] and lk["licence_no"] not in self.known}
        if numbers:
            self.known.update(await self.store.exchange_licences(sorted(numbers)))
        for link in waiting:
            detail = link["facts"] if isinstance(link["facts"], dict) else json.loads(link["facts"] or "{}")
            facts = Facts(case_no=None, licence_no=link["licence_no"], credit_code=link["credit_code"],
                          decision_no=link["decision_no"], effect=detail.get("effect"),
                          result_type=detail.get("result_type"), decided_on=detail.get("decided_on"),
                          authority=detail.get("authority"), affected_licence=detail.get("affected_licence"))
            r = resolve(facts, self.known, self.by_credit.get(facts.credit_code or "", []),
                        self.cases_by_credit.get(facts.credit_code or "", set()))
            if r.case_no is None:
                continue
            stored_link = link["record_id"] not in self.links
            link = {**link, "case_no": r.case_no, "licence_no": r.licence_no, "resolved_by": r.by, "note": None,
                    "facts": json.dumps(detail, ensure_ascii=False) if detail else None}
            if not stored_link:
                self.links[link["record_id"]] = link
            self.batch.resolutions.append(Resolution(link["record_id"], r.case_no, link["system"], link["kind"],
                                                     link["record_key"], r.by or "licence", r.licence_no,
                                                     None))
            self._resolved_result(link, facts, r.case_no, r.licence_no)

    def _effect(self, link: dict[str, Any], facts: Facts, case_no: str, licence_no: str) -> None:
        lic = self._licence(licence_no)
        if not lic.get("case_no"):
            lic["case_no"] = case_no
        effect = facts.effect or "none"
        decision = facts.decision_no or link["record_key"]
        notice = None
        if facts.effect is not None and not self.f.historic(link["record_id"]):
            words = _EFFECT_WORDS[facts.effect]
            alert = make_alert(
                _EFFECT_ALERT[facts.effect], case_no=case_no, raised_at=self.now,
                description=f"许可 {licence_no}（办件 {case_no}）已被{facts.authority or '监管部门'}"
                            f"{words}：决定书 {decision}，决定日期 {facts.decided_on or '未说明'}，经 {link['system']} 送达",
                department=facts.authority, subject_kind="supervision_result", subject_key=decision,
                distinct_subject=True)
            item = alert_item(alert, self.now, self.f.router, self.f.notify)
            if item is not None:
                self.batch.records.append(item)
                notice = alert["alert_id"]
            self.batch.audit.append(AuditEvent("licence_affected", system=link["system"], kind="supervision_result",
                                               record=link["record_key"], case=case_no, detail={
                                                   "licence": licence_no, "effect": facts.effect, "decision": decision,
                                                   "decided_on": facts.decided_on, "authority": facts.authority,
                                                   "record_id": link["record_id"], "notice": notice}))
        self.batch.effects.append({
            "decision_no": decision, "licence_no": licence_no, "case_no": case_no, "effect": effect,
            "record_id": link["record_id"], "system": link["system"], "decided_on": facts.decided_on,
            "authority": facts.authority, "applied_at": self.at, "notice": notice})

    async def _to_approvers(self) -> None:
        """Supervision results also go back to the approving bureau: the system that sent the licence's approval."""
        fresh = [(link, number) for link, number in self.resolved_results if not self.f.historic(link["record_id"])]
        if not self.f.to_approver or not fresh:
            return
        ids = [link["record_id"] for link, _ in fresh]
        have = await self.store.exchange_destinations_of(ids)
        for link, licence_no in fresh:
            approver = (self.known.get(licence_no) or {}).get("approved_by")
            counterpart = self.f.counterpart_of_source.get(approver) if approver else None
            for sink in self.f.sinks_rendering(counterpart, "supervision_result"):
                if sink in have.get(link["record_id"], set()):
                    continue
                row = {"id": link["record_id"], "system": link["system"], "kind": link["kind"],
                       "record_key": link["record_key"], "version": link["version"]}
                self.batch.deliveries.append(self.f.delivery(row, sink, link["case_no"],
                                                             f"back to the approving bureau of licence {licence_no}"))


class _Parallel:
    """One batch of 并联审批: start and dispatch on acceptance, take each department's opinion, combine."""

    def __init__(self, follower: ExchangeFollower, batch: ExchangeBatch, now: datetime) -> None:
        self.f = follower
        self.store = follower.store
        self.batch = batch
        self.now = now
        self.dept_systems = {d.system for s in follower.schemes for d in s.departments}

    async def run(self, items: Sequence[tuple[dict[str, Any], dict[str, Any], Facts]]) -> None:
        relevant = [(row, data) for row, data, facts in items if facts.case_no and row["status"] == "current"
                    and row["kind"] in ("case", "acceptance", "process_step", *self._dispatch_kinds())]
        if not relevant:
            return
        case_nos = sorted({str(data["case_no"]) for _, data in relevant})
        states = await self.store.exchange_parallel_cases(case_nos)
        candidates = sorted({str(data["case_no"]) for row, data in relevant
                             if str(data["case_no"]) not in states and row["kind"] in ("case", "acceptance")})
        if candidates:
            await self._start(candidates, states)
        for row, data in relevant:
            state = states.get(str(data["case_no"]))
            if state is None or state["state"] != "open":
                continue
            self._follow(state, row, data)

    def _dispatch_kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k for s in self.f.schemes for k in s.dispatch_kinds))

    async def _start(self, candidates: Sequence[str], states: dict[str, dict[str, Any]]) -> None:
        records = await self.store.exchange_current_records(candidates, ("case", "acceptance", "process_step",
                                                                         *self._dispatch_kinds()))
        by_case: dict[str, list[dict[str, Any]]] = {}
        for rec in records:
            by_case.setdefault(rec["case_no"], []).append(rec)
        for case_no in candidates:
            recs = by_case.get(case_no, [])
            data = {r["id"]: load_json(r["body"]).get("data") or {} for r in recs}
            case = next((r for r in reversed(recs) if r["kind"] == "case"), None)
            item_code = (data[case["id"]].get("item_code") if case else None) or next(
                (data[r["id"]].get("item_code") for r in recs if data[r["id"]].get("item_code")), None)
            scheme = par.scheme_for(self.f.schemes, item_code)
            if scheme is None:
                continue
            acceptance = next((r for r in reversed(recs) if r["kind"] == "acceptance"
                               and str(data[r["id"]].get("status")) == "1"
                               and (scheme.lead is None or r["system"] == scheme.lead)), None)
            if acceptance is None:
                continue
            accepted_at = data[acceptance["id"]].get("accepted_at")
            try:
                accepted = datetime.fromisoformat(str(accepted_at))
            except ValueError:
                log.warning("exchange: case %s: acceptance time %r unreadable; 并联审批 not started", case_no,
                            accepted_at)
                continue
            row, departments = par.start(scheme, case_no, accepted, acceptance["system"], self.f.calendar, self.now)
            self.batch.parallel.append(row)
            self.batch.departments.extend(departments)
            states[case_no] = {**row, "departments": departments, "_new": True}
            for dept in scheme.departments:
                for rec in recs:
                    if rec["kind"] in scheme.dispatch_kinds:
                        self.batch.deliveries.append(self.f.delivery(
                            rec, dept.out, case_no, f"并联审批 {scheme.name}: dispatched to {dept.name}"))
            self.batch.audit.append(AuditEvent("parallel_started", system=acceptance["system"], kind="acceptance",
                                               record=acceptance["record_key"], case=case_no, detail={
                                                   "scheme": scheme.name, "accepted_at": row["accepted_at"],
                                                   "departments": [{"department": d["department"],
                                                                    "system": d["system"], "sink": d["sink"],
                                                                    "due_at": d["due_at"]} for d in departments]}))
            for rec in recs:  # an opinion that came before the acceptance counts too
                if rec["kind"] == "process_step" and rec["system"] in self.dept_systems:
                    self._follow(states[case_no], rec, data[rec["id"]])

    def _scheme(self, name: str) -> ParallelScheme | None:
        return next((s for s in self.f.schemes if s.name == name), None)

    def _follow(self, state: dict[str, Any], row: dict[str, Any], data: dict[str, Any]) -> None:
        scheme = self._scheme(state["scheme"])
        if scheme is None:
            return
        case_no = state["case_no"]
        if row["kind"] in scheme.dispatch_kinds and row["system"] not in self.dept_systems and not state.get("_new"):
            # The case changed while the departments work on it: they get the new version too.
            for dept in scheme.departments:
                self.batch.deliveries.append(self.f.delivery(
                    row, dept.out, case_no, f"并联审批 {scheme.name}: update for {dept.name}"))
        if row["kind"] != "process_step" or data.get("action") not in par.ANSWERS:
            return
        dept = next((d for d in state["departments"] if d["system"] == row["system"]), None)
        if dept is None or dept.get("answered_at"):
            return
        answered = str(data.get("handled_at"))
        dept.update(answered_at=answered, action=data.get("action"), opinion=(data.get("opinion") or None),
                    record_id=row["id"])
        if isinstance(dept["opinion"], str):
            dept["opinion"] = dept["opinion"][:500]
        late = datetime.fromisoformat(answered) > datetime.fromisoformat(dept["due_at"])
        self._put(state)
        self.batch.audit.append(AuditEvent("parallel_answered", system=row["system"], kind="process_step",
                                           record=row["record_key"], case=case_no, detail={
                                               "scheme": scheme.name, "department": dept["department"],
                                               "action": dept["action"], "answered_at": answered,
                                               "due_at": dept["due_at"], "late": late}))
        if all(d.get("answered_at") for d in state["departments"]):
            self._complete(scheme, state, data.get("item_code"))

    def _complete(self, scheme: ParallelScheme, state: dict[str, Any], item_code: str | None) -> None:
        case_no = state["case_no"]
        data = par.combined(scheme, case_no, item_code, state["departments"])
        dests = [*self.f.router("process_step", par.SYSTEM, data), *scheme.to]
        item = gateway_record(par.SYSTEM, "process_step", data, self.now, dests,
                              ref=f"并联审批 {scheme.name} combined result of case {case_no}", mapping="exchange@1")
        if item is None:
            return
        self.batch.records.append(item)
        state.update(state="completed", completed_at=self.now.isoformat(timespec="milliseconds"),
                     result=data["action"], result_key=item.record_key, next_check=None)
        self._put(state)
        self.batch.audit.append(AuditEvent("parallel_completed", system=par.SYSTEM, kind="process_step",
                                           record=item.record_key, case=case_no, detail={
                                               "scheme": scheme.name, "result": data["action"],
                                               "to": list(item.destinations),
                                               "departments": [{"department": d["department"], "action": d["action"],
                                                                "answered_at": d["answered_at"],
                                                                "due_at": d["due_at"]}
                                                               for d in state["departments"]]}))

    def _put(self, state: dict[str, Any]) -> None:
        """Queue the case's and its departments' rows (the last queued wins: upserts in order)."""
        state["next_check"] = par.next_check(state["departments"]) if state["state"] == "open" else None
        row = {k: state.get(k) for k in ("case_no", "scheme", "lead", "accepted_at", "dispatched_at", "state",
                                         "completed_at", "result", "result_key", "next_check")}
        self.batch.parallel = [r for r in self.batch.parallel if r["case_no"] != row["case_no"]] + [row]
        keep = [d for d in self.batch.departments if d["case_no"] != row["case_no"]]
        self.batch.departments = keep + [{k: d.get(k) for k in ("case_no", "department", "system", "sink", "due_at",
                                                               "answered_at", "action", "opinion", "record_id",
                                                               "late_alert")} for d in state["departments"]]


async def parallel_tick(follower: ExchangeFollower, now: datetime, limit: int = 200) -> int:
    """Raise ``parallel_late`` for departments past their limit; returns how many alerts were raised."""
    raised = 0
    while True:
        due = await follower.store.exchange_parallel_due(now.timestamp(), limit)
        if not due:
            return raised
        states = await follower.store.exchange_parallel_cases(due)
        batch = ExchangeBatch()
        for case_no in due:
            state = states.get(case_no)
            if state is None:
                continue
            scheme = next((s for s in follower.schemes if s.name == state["scheme"]), None)
            for dept in par.late(state["departments"], now):
                if scheme is None:
                    break
                alert = make_alert("parallel_late", case_no=case_no, raised_at=now,
                                   description=par.describe_late(scheme, case_no, dept), department=dept["department"],
                                   due_at=datetime.fromisoformat(dept["due_at"]), subject_kind="department",
                                   subject_key=dept["system"], distinct_subject=True)
                item = alert_item(alert, now, follower.router, (*follower.supervision_destinations, *scheme.to))
                if item is not None:
                    batch.records.append(item)
                    raised += 1
                dept["late_alert"] = alert["alert_id"]
            state["next_check"] = par.next_check(state["departments"]) if state["state"] == "open" else None
            if state["next_check"] is not None and state["next_check"] <= now.timestamp():
                state["next_check"] = now.timestamp() + 60.0  # never spin on a check that cannot change
            batch.parallel.append({k: state.get(k) for k in ("case_no", "scheme", "lead", "accepted_at",
                                                             "dispatched_at", "state", "completed_at", "result",
                                                             "result_key", "next_check")})
            batch.departments.extend(replace_dept(d) for d in state["departments"])
        await follower.store.apply_exchange(batch)
        if len(due) < limit:
            return raised


def replace_dept(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: d.get(k) for k in ("case_no", "department", "system", "sink", "due_at", "answered_at", "action",
                                  "opinion", "record_id", "late_alert")}


__all__ = ["ExchangeFollower", "parallel_tick"]
