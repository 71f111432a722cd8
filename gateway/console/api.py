"""The query API behind the console: cases, a case's timeline, alerts with acknowledgement, statistics
(JSON and CSV), counterpart health and a dry-run preview of a delivery.

Every endpoint checks a permission of ``gateway.security.identity``; an operator sees only cases
and deliveries of the systems its account is bound to. Personal data leaves masked
(``gateway.security.masking``) unless an auditor asks with ``unmask=true&reason=…``, which is
audited before the answer is given (``gateway.api._query``). Routes are listed in
:func:`add_routes` and described in ``gateway/api/openapi.json``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from gateway.api._inbound import ApiError
from gateway.api._query import _masker, _opened, _shown, unmask_reason
from gateway.api._web import GATEWAY, choice_param, int_param, json_response
from gateway.console.evidence import case_verification
from gateway.console.index import STATUSES, WARNING_RANK
from gateway.security.identity import AccessDenied, require
from gateway.security.masking import mask_text
from gateway.store.cases import AlertQuery, CaseQuery
from gateway.supervision.alerts import ALERT_TYPES

log = logging.getLogger("gateway.console")
_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
MAX_PAGE = 200
MAX_TIMELINE = 2000  # records, deliveries and audit entries each, per case
MAX_NOTE = 500
MAX_ACK = 200
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
WARNINGS = {"none": 0, **WARNING_RANK}
WARNING_NAMES = {v: k for k, v in WARNINGS.items()}


def _store(request: web.Request) -> Any:
    store = request.app[GATEWAY].store
    assert store is not None
    return store


def _needs_index(store: Any) -> None:
    if not hasattr(store, "search_cases"):
        raise ApiError(501, f"this store ({type(store).__name__}) keeps no case index")


def _text_param(request: web.Request, name: str, max_len: int = 200) -> str | None:
    value = request.query.get(name, "").strip()
    if not value:
        return None
    if len(value) > max_len or any(ord(c) < 32 for c in value):
        raise ApiError(400, f"query parameter {name} is longer than {max_len} characters or holds control "
                            "characters", parameter=name)
    return value


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, _CHINA).isoformat(timespec="milliseconds") if ts else None


def _case_out(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["warning"] = WARNING_NAMES.get(row.get("warning") or 0, "none")
    for flag in ("overdue", "backfilled", "outside_system"):
        out[flag] = bool(row.get(flag))
    out["on_time"] = None if row.get("on_time") is None else bool(row["on_time"])
    return out


# --------------------------------------------------------------------------- cases


async def cases(request: web.Request) -> web.Response:
    """GET /api/v1/cases: search the case index, newest activity first, a page at a time."""
    ident = require(request, "records:read")
    reason = unmask_reason(request, ident)
    store = _store(request)
    _needs_index(store)
    warning = choice_param(request, "warning", tuple(WARNINGS))
    before = None
    raw_before = _text_param(request, "before", 300)
    if raw_before is not None:
        at, sep, case_no = raw_before.partition("|")
        if not sep or not at or not case_no:
            raise ApiError(400, "query parameter before must be the previous page's next.before "
                                "(last_received_at|case_no)", parameter="before")
        before = (at, case_no)
    q = CaseQuery(
        case_no=_text_param(request, "case_no"), applicant=_text_param(request, "applicant"),
        item_code=_text_param(request, "item_code"), region=_text_param(request, "region"),
        department=_text_param(request, "department"), status=choice_param(request, "status", STATUSES),
        warning=WARNINGS[warning] if warning is not None else None,
        systems=ident.visible_systems("records:read"), limit=int_param(request, "limit", 50, 1, MAX_PAGE),
        before=before)
    rows, total, more = await store.search_cases(q)
    shown, masked = await _shown(request, ident, [_case_out(r) for r in rows], "cases", reason)
    last = rows[-1] if rows else None
    return json_response({
        "items": shown, "count": len(shown), "total": total, "total_is_lower_bound": total > 10_000,
        "masked": masked,
        "next": {"before": f"{last['last_received_at']}|{last['case_no']}"} if more and last else None})


def _event_time(value: Any) -> str:
    return value if isinstance(value, str) else _iso(value) or ""


async def case_timeline(request: web.Request) -> web.Response:
    """GET /api/v1/cases/{case_no}: every record, delivery and audit entry of a case in order, with the
    verification status of the audit entries and the case's links (licence, supervision results)."""
    ident = require(request, "records:read")
    reason = unmask_reason(request, ident)
    store = _store(request)
    case_no = request.match_info["case_no"]
    systems = ident.visible_systems("records:read")
    if systems is None:
        records = await store.list_records(case_no=case_no, limit=MAX_TIMELINE)
    else:
        records = await store.list_records_in(sorted(systems), case_no=case_no, limit=MAX_TIMELINE)
    index_row = await store.case_index_row(case_no) if hasattr(store, "case_index_row") else None
    if not records and (index_row is None or systems is not None):
        raise ApiError(404, f"no case {case_no!r}" + (" among the systems you may read" if systems else ""))
    records = _opened(request, records)
    deliveries: list[dict[str, Any]] | None = None
    if ident.can("deliveries:read"):
        dsys = ident.visible_systems("deliveries:read")
        args = {"case_no": case_no, "limit": MAX_TIMELINE}
        deliveries = await (store.list_deliveries(**args) if dsys is None
                            else store.list_deliveries_in(sorted(dsys), **args))
    audit: list[dict[str, Any]] | None = None
    verification: dict[str, Any] | None = None
    if ident.can("audit:read"):
        rows = await store.audit_entries(case_no=case_no, limit=MAX_TIMELINE)
        verification = await case_verification(store, rows)
        audit = []
        for row in rows:
            entry = row.decoded()
            verdict = verification["entries"].get(row.seq, {})
            audit.append({"seq": row.seq, "hash": row.hash, "at": entry.get("at"), "action": entry.get("action"),
                          "entry": entry, "verification": verdict})
        verification = {k: v for k, v in verification.items() if k != "entries"}
    alert_ids = [r["record_key"] for r in records if r["kind"] == "supervision_alert"]
    acks = await store.alert_acks(alert_ids) if alert_ids and hasattr(store, "alert_acks") else {}
    links = _links(case_no, records)
    answer: dict[str, Any] = {
        "case_no": case_no, "case": _case_out(index_row) if index_row else None, "records": records,
        "deliveries": deliveries, "audit": audit, "verification": verification, "acknowledgements": acks,
        "links": links, "timeline": _timeline(records, deliveries, audit),
        "alert_labels": {code: t.label for code, t in ALERT_TYPES.items()},
    }
    (shown,), masked = await _shown(request, ident, [answer], "case timeline", reason)
    shown["masked"] = masked
    return json_response(shown)


def _links(case_no: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The case's licence(s), the approval results that carry them and the supervision results that came back."""
    licences: dict[str, dict[str, Any]] = {}
    results = []
    for r in records:
        data = r["record"].get("data", {}) if isinstance(r.get("record"), dict) else {}
        if r["status"] != "current":
            continue
        if r["kind"] in ("completion", "approval_result") and data.get("license_no"):
            entry = licences.setdefault(str(data["license_no"]), {"license_no": str(data["license_no"]),
                                                                  "license_name": data.get("license_name"),
                                                                  "decisions": []})
            if r["kind"] == "approval_result":
                entry["decisions"].append({"decision_no": data.get("decision_no"), "decided_on": data.get("decided_on"),
                                           "valid_until": data.get("valid_until")})
        elif r["kind"] == "supervision_result":
            results.append({"decision_no": data.get("decision_no"), "result_type": data.get("result_type"),
                            "license_effect": data.get("license_effect"), "decided_on": data.get("decided_on"),
                            "authority": data.get("authority"), "affected_license_no": data.get("affected_license_no"),
                            "record_id": r["id"]})
    return {"case_no": case_no, "licences": list(licences.values()), "supervision_results": results}


def _timeline(records: list[dict[str, Any]], deliveries: list[dict[str, Any]] | None,
              audit: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """One list in time order: records by receipt, deliveries by creation and settlement, audit entries."""
    events: list[tuple[str, int, dict[str, Any]]] = []
    for r in records:
        events.append((r["receipt_time"], 0, {"type": "record", "at": r["receipt_time"], "id": r["id"],
                                               "kind": r["kind"], "system": r["system"], "version": r["version"],
                                               "status": r["status"],
                                               "business_time": r["record"].get("provenance", {}).get("business_time")}))
    for d in deliveries or []:
        at = _event_time(d.get("settled_at") or d.get("created_at"))
        events.append((at, 1, {"type": "delivery", "at": at, "id": d["id"], "destination": d["destination"],
                                "state": d["state"], "attempts": d["attempts"], "kind": d["kind"],
                                "last_error": d.get("last_error")}))
    for a in audit or []:
        events.append((a.get("at") or "", 2, {"type": "audit", "at": a.get("at"), "seq": a["seq"],
                                              "action": a.get("action"),
                                              "verification": a["verification"].get("state")}))
    events.sort(key=lambda e: (_sortable(e[0]), e[1]))
    return [e[2] for e in events]


def _sortable(at: str) -> str:
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        return at
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_CHINA)
    return moment.astimezone(UTC).isoformat()


# --------------------------------------------------------------------------- alerts


async def alert_board(request: web.Request) -> web.Response:
    """GET /api/v1/supervision/alerts: alerts of every type with their acknowledgement, newest first."""
    ident = require(request, "alerts:read")
    reason = unmask_reason(request, ident)
    store = _store(request)
    _needs_index(store)
    acked = choice_param(request, "acked", ("true", "false"))
    q = AlertQuery(alert_type=_text_param(request, "type", 64), severity=choice_param(request, "severity",
                                                                                     ("red", "yellow", "info")),
                   case_no=_text_param(request, "case_no"), department=_text_param(request, "department"),
                   acked=None if acked is None else acked == "true",
                   limit=int_param(request, "limit", 50, 1, MAX_PAGE),
                   before_id=int_param(request, "before_id", 0, 0, 2**62) or None)
    rows, more = await store.list_alert_index(q)
    for row in rows:
        known = ALERT_TYPES.get(row["alert_type"])
        row["label"] = known.label if known is not None else row["alert_type"]
    shown, masked = await _shown(request, ident, rows, "alerts", reason)
    return json_response({"items": shown, "count": len(shown), "masked": masked,
                          "next": {"before_id": rows[-1]["record_id"]} if more and rows else None})


async def alert_types(request: web.Request) -> web.Response:
    """GET /api/v1/supervision/alert-types: every alert type with its label, severity and open / acknowledged counts."""
    require(request, "alerts:read")
    store = _store(request)
    _needs_index(store)
    counts = await store.alert_type_counts()
    types = [{"code": t.code, "label": t.label, "severity": t.severity, "rule": t.rule,
              **counts.get(t.code, {"open": 0, "acknowledged": 0})} for t in ALERT_TYPES.values()]
    # Types raised by parts of the gateway newer than this table still show, by their code.
    types += [{"code": code, "label": code, "severity": None, "rule": None, **n}
              for code, n in sorted(counts.items()) if code not in ALERT_TYPES]
    return json_response({"items": types})


async def acknowledge(request: web.Request) -> web.Response:
    """POST /api/v1/supervision/alerts/acknowledge {"alert_ids": [...], "note": "..."}: who, when, note; audited."""
    ident = require(request, "alerts:acknowledge")
    store = _store(request)
    _needs_index(store)
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    ids = body.get("alert_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and 0 < len(i) <= 100 for i in ids):
        raise ApiError(400, "alert_ids must be a non-empty list of alert ids", field="alert_ids")
    if len(ids) > MAX_ACK:
        raise ApiError(413, f"at most {MAX_ACK} alerts per request", field="alert_ids")
    note = body.get("note")
    if not isinstance(note, str) or not note.strip():
        raise ApiError(400, "note is required: say what was checked or done (it is kept with your name)",
                       field="note")
    note = " ".join(note.split())
    if len(note) > MAX_NOTE or any(ord(c) < 32 for c in note):
        raise ApiError(400, f"note must be at most {MAX_NOTE} characters without control characters", field="note")
    # The note goes into the audit trail, which can never be masked afterwards: mask it on the way in.
    results = await store.acknowledge_alerts(list(dict.fromkeys(ids)), ident.user or "", ident.role or "",
                                             mask_text(note))
    status = 404 if all(r["result"] == "unknown" for r in results) else 200
    return json_response({"results": results,
                          "acknowledged": sum(r["result"] == "acknowledged" for r in results)}, status=status)


# --------------------------------------------------------------------------- statistics

STAT_COLUMNS = (("month", "月份"), ("key", "分组代码"), ("name", "名称"), ("received", "受理（申报）件数"),
                ("completed", "办结件数"), ("on_time", "按时办结件数"), ("timed", "有时限办结件数"),
                ("on_time_rate", "按时办结率"), ("overdue", "超期件数"), ("backfilled", "补录件数"))


def _month_param(request: web.Request, name: str, default: str) -> str:
    value = request.query.get(name) or default
    if not _MONTH.match(value):
        raise ApiError(400, f"query parameter {name}={value!r} must be a month, YYYY-MM", parameter=name)
    return value


async def _statistics(request: web.Request) -> tuple[str, str, str, list[dict[str, Any]], list[dict[str, Any]]]:
    ident = require(request, "records:read")
    store = _store(request)
    _needs_index(store)
    if ident.visible_systems("records:read") is not None:
        # The case index is not kept per system; counts across the hall are not for a bound operator.
        raise AccessDenied(403, f"{ident.user} (operator bound to systems) may not read the hall's statistics",
                           "records:read")
    now = datetime.now(_CHINA)
    by = choice_param(request, "by", ("month", "department", "item")) or "month"
    last = _month_param(request, "to", f"{now.year:04d}-{now.month:02d}")
    first = _month_param(request, "from", f"{now.year - 1:04d}-{now.month:02d}")
    if first > last:
        raise ApiError(400, f"from={first} is after to={last}", parameter="from")
    department, item_code = _text_param(request, "department"), _text_param(request, "item_code")
    rows = await store.case_statistics(by, first, last, department, item_code)
    groups: dict[str, dict[str, Any]] = {}
    months: dict[str, dict[str, Any]] = {}
    for row in rows:
        for target, key in ((groups, row["month"] if by == "month" else row["key"]), (months, row["month"])):
            agg = target.setdefault(key, {"key": key, "name": "", "received": 0, "completed": 0, "on_time": 0,
                                          "timed": 0, "overdue": 0, "backfilled": 0})
            for column in ("received", "completed", "on_time", "timed", "overdue", "backfilled"):
                agg[column] += row[column]
            agg["name"] = agg["name"] or row["name"]
    for month in _months(first, last):  # a month without cases is a zero in the report, not a gap in the chart
        for target in (months, groups) if by == "month" else (months,):
            target.setdefault(month, {"key": month, "name": "", "received": 0, "completed": 0, "on_time": 0,
                                      "timed": 0, "overdue": 0, "backfilled": 0})
    out_groups = sorted(groups.values(), key=lambda g: g["key"] if by == "month" else (-g["received"], g["key"]))
    for agg in (*out_groups, *months.values()):
        agg["on_time_rate"] = round(agg["on_time"] / agg["timed"], 4) if agg["timed"] else None
    return by, first, last, out_groups, [months[m] for m in sorted(months)]


def _months(first: str, last: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:])
    out = []
    while f"{year:04d}-{month:02d}" <= last and len(out) < 1200:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


async def statistics(request: web.Request) -> web.Response:
    """GET /api/v1/statistics: cases received and completed, on-time rate, overdue and back-filled counts."""
    by, first, last, groups, months = await _statistics(request)
    return json_response({"by": by, "from": first, "to": last, "groups": groups, "months": months,
                          "definitions": {
                              "received": "cases whose application (申报时间) falls in the month",
                              "completed": "cases completed (办结时间) in the month",
                              "on_time_rate": "on_time / timed: of the completed cases that had a time limit, "
                                              "the share completed within it",
                              "overdue": "cases applied for in the month that went past their time limit",
                              "backfilled": "cases applied for in the month with a back-fill (补录) finding"}})


async def statistics_csv(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/statistics.csv: the same table as CSV (UTF-8 with BOM, or GB18030), for the hall's reports."""
    encoding = choice_param(request, "encoding", ("utf-8", "gb18030")) or "utf-8"
    by, first, last, groups, _months = await _statistics(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    columns = [c for c in STAT_COLUMNS if by != "month" or c[0] not in ("key", "name")]
    columns = [c for c in columns if c[0] != "month" or by == "month"]
    writer.writerow([label for _, label in columns])
    for group in groups:
        row = {**group, "month": group["key"]} if by == "month" else group
        writer.writerow(["" if row.get(c) is None else row.get(c) for c, _ in columns])
    text = buffer.getvalue()
    data = ("\ufeff" + text).encode("utf-8") if encoding == "utf-8" else text.encode("gb18030")
    name = f"statistics-{by}-{first}-{last}.csv"
    return web.Response(body=data, headers={
        "Content-Type": f"text/csv; charset={encoding}", "Content-Disposition": f'attachment; filename="{name}"'})


# --------------------------------------------------------------------------- counterpart health

async def _last_contact(request: web.Request, store: Any) -> dict[str, Any] | None:
    fn = getattr(store, "counterpart_contacts", None)
    return await fn() if fn is not None else None


async def _deliveries(request: web.Request, store: Any) -> dict[str, Any] | None:
    """Per destination: state, circuit, pause, backlog, oldest waiting, dead and held, error rate (the delivery part's
    ``destination_rows``, with the running workers' live circuit state)."""
    if not hasattr(store, "destination_backlog"):
        return None
    from gateway.pipeline.destinations import destination_rows

    gw = request.app[GATEWAY]
    rows = await destination_rows(gw.config, store, workers=gw.workers)
    return {row["name"]: row for row in rows}


async def _quarantine(request: web.Request, store: Any) -> dict[str, Any] | None:
    fn = getattr(store, "open_quarantine_by_system", None)
    return await fn() if fn is not None else None


async def _reconciliation(request: web.Request, store: Any) -> dict[str, Any] | None:
    """The newest 对账 of each counterpart: period, outcome and counts (its gap lists stay on
    ``GET /api/v1/reconciliations``, where an engineer reads them whole)."""
    fn = getattr(store, "last_reconciliations", None)
    if fn is None:
        return None
    newest = await fn()
    return {system: {k: row.get(k) for k in ("id", "period_start", "period_end", "triggered_by", "finished_at",
                                              "outcome", "summary")}
            for system, row in newest.items()}


HEALTH_ITEMS = (("last_contact", _last_contact), ("deliveries", _deliveries), ("quarantine", _quarantine),
                ("reconciliation", _reconciliation))
"""(item, query): each item of the counterpart health page is one store query answering ``{system: value}``,
or None while this gateway's store cannot answer it yet (listed as unavailable)."""


async def counterpart_health(request: web.Request) -> web.Response:
    """GET /api/v1/counterparts/health: per counterpart system, every health item the store can answer."""
    ident = require(request, "deliveries:read")
    store = _store(request)
    gw = request.app[GATEWAY]
    visible = ident.visible_systems("deliveries:read")
    configured = {**{n: "source" for n in gw.config.sources}, **{n: "sink" for n in gw.config.sinks}}
    for name in gw.config.sinks:
        if name in gw.config.sources:
            configured[name] = "source+sink"
    available, missing = [], []
    values: dict[str, dict[str, Any]] = {}
    for item, query in HEALTH_ITEMS:
        answer = await query(request, store)
        if answer is None:
            missing.append(item)
            continue
        available.append(item)
        for system, value in answer.items():
            values.setdefault(system, {})[item] = value
    systems = []
    for name in sorted(set(configured) | set(values)):
        if name in ("supervision", "audit") or (visible is not None and name not in visible):
            continue
        entry = {"system": name, "role": configured.get(name, "unknown"), **values.get(name, {})}
        deliveries = entry.get("deliveries")
        if isinstance(deliveries, dict) and deliveries.get("last_error"):
            deliveries["last_error"] = mask_text(str(deliveries["last_error"]))  # errors may quote values
        systems.append(entry)
    return json_response({"systems": systems, "items": available, "unavailable": missing,
                          "as_of": datetime.now(_CHINA).isoformat(timespec="seconds")})


# --------------------------------------------------------------------------- delivery preview


async def delivery_preview(request: web.Request) -> web.Response:
    """GET /api/v1/deliveries/{id}/preview: what a replay would send (rendered by the destination's outbound
    mapping), changing nothing; personal data masked unless an auditor unmasks it."""
    ident = require(request, "deliveries:replay")
    store = _store(request)
    try:
        delivery_id = int(request.match_info["id"])
    except ValueError:
        raise ApiError(400, "the delivery id must be a whole number") from None
    found = await store.delivery_with_record(delivery_id)
    if found is None or not (ident.can("deliveries:replay", found["destination"])
                             or ident.can("deliveries:replay", found["system"])):
        raise ApiError(404, f"no delivery {delivery_id}")  # another system's delivery: as if there were none
    reason = unmask_reason(request, ident)
    gw = request.app[GATEWAY]
    comp = gw.components
    renderer = comp.outbound.get(found["destination"]) if comp is not None else None
    if renderer is None:
        raise ApiError(409, f"destination {found['destination']!r} is not a configured sink any more; "
                            "nothing can be rendered for it")
    record = found.pop("record")
    cipher = comp.cipher if comp is not None else None
    try:
        opened = cipher.open_record(record) if cipher is not None else record
        clear = renderer.render(opened)
    except Exception as exc:
        return json_response({**found, "renderable": False, "mapping": renderer.ref,
                              "error": mask_text(f"{type(exc).__name__}: {exc}"),
                              "note": "a replay would dead-letter again for this reason"})
    if reason is not None:
        (shown,), _ = await _shown(request, ident, [{**found, "body": _as_text(clear)}], "delivery preview", reason)
        return json_response({**shown, "renderable": True, "mapping": renderer.ref, "masked": False})
    body = await asyncio.to_thread(_masked_body, request, opened, renderer, clear)
    return json_response({**found, "renderable": True, "mapping": renderer.ref, "masked": True, "body": body})


def _as_text(body: Any) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    if isinstance(body, str):
        return body
    return json.dumps(body, ensure_ascii=False, indent=2, default=str)


def _pairs(clear: Any, masked: Any, out: dict[str, str]) -> None:
    if isinstance(clear, dict) and isinstance(masked, dict):
        for k, v in clear.items():
            _pairs(v, masked.get(k), out)
    elif isinstance(clear, list) and isinstance(masked, list):
        for a, b in zip(clear, masked, strict=False):
            _pairs(a, b, out)
    elif isinstance(clear, str) and isinstance(masked, str) and clear != masked and len(clear) >= 2:
        out[clear] = masked


def _masked_body(request: web.Request, record: dict[str, Any], renderer: Any, clear: Any) -> str:
    """The rendered body as a person may see it: rendered from the masked record when that renders, else the
    clear rendering with every personal value of the record replaced by its masked form."""
    masked_record = _masker(request, None)(record)
    try:
        return _as_text(renderer.render(masked_record))
    except Exception:
        pass
    text = _as_text(clear)
    replacements: dict[str, str] = {}
    _pairs(record, masked_record, replacements)
    for value in sorted(replacements, key=len, reverse=True):
        text = text.replace(value, replacements[value])
        escaped = json.dumps(value)[1:-1]
        if escaped != value:
            text = text.replace(escaped, json.dumps(replacements[value])[1:-1])
    return mask_text(text)


async def _warn_without_supervision(app: web.Application) -> None:
    if not app[GATEWAY].config.supervision.enabled:
        log.warning("[supervision] enabled = false: the console's case search, alert board and statistics stay "
                    "empty, because the supervision follower keeps their index")


def add_routes(app: web.Application) -> None:
    app.on_startup.append(_warn_without_supervision)
    app.router.add_get("/api/v1/cases", cases)
    app.router.add_get("/api/v1/cases/{case_no}", case_timeline)
    app.router.add_get("/api/v1/supervision/alerts", alert_board)
    app.router.add_get("/api/v1/supervision/alert-types", alert_types)
    app.router.add_post("/api/v1/supervision/alerts/acknowledge", acknowledge)
    app.router.add_get("/api/v1/statistics", statistics)
    app.router.add_get("/api/v1/statistics.csv", statistics_csv)
    app.router.add_get("/api/v1/counterparts/health", counterpart_health)
    app.router.add_get("/api/v1/deliveries/{id}/preview", delivery_preview)

