"""Reprocessing quarantine entries: their kept originals through the current mapping of their system.

Used by ``gateway quarantine reprocess`` and ``POST /api/v1/quarantine/reprocess``. An
entry whose records now map and validate lands (and is resolved, its receipts noted); an
entry still wrong stays open with today's reasons; an entry with nothing parsed kept (an
unreadable item) cannot be run again and says so. A dry run changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.adapters import RawRecord
from gateway.pipeline.ingest import Ingestor
from gateway.store import Reprocessed, Store

CHUNK = 200  # entries per transaction


@dataclass
class ReprocessReport:
    dry_run: bool
    results: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r["outcome"]] = out.get(r["outcome"], 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "counts": self.counts(), "results": self.results}


def _ref(entry: dict[str, Any]) -> str:
    return f"{entry['ref']} (reprocessed from quarantine {entry['id']})"


async def select(store: Store, *, ids: Sequence[int] | None, system: str | None,
                 limit: int | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(open entries to reprocess, results for ids that cannot be: unknown or not open)."""
    refused: list[dict[str, Any]] = []
    if ids:
        found = {e["id"]: e for e in await store.quarantine_entries(ids=list(ids), limit=len(ids))}
        entries = []
        for entry_id in dict.fromkeys(ids):
            entry = found.get(entry_id)
            if entry is None:
                refused.append({"id": entry_id, "outcome": "unknown", "message": f"no quarantine entry {entry_id}"})
            elif entry["state"] != "open":
                refused.append({"id": entry_id, "outcome": "refused", "message": f"quarantine entry {entry_id} is "
                                f"{entry['state']}, not open: nothing to reprocess"})
            elif system is None or entry["system"] == system:
                entries.append(entry)
        return entries, refused
    entries, after = [], 0
    while limit is None or len(entries) < limit:
        page = await store.quarantine_entries(system=system, state="open", after_id=after, limit=500)
        if not page:
            break
        entries.extend(page)
        after = page[-1]["id"]
    return entries[:limit] if limit is not None else entries, refused


async def reprocess(store: Store, ingestor: Ingestor, *, ids: Sequence[int] | None = None, system: str | None = None,
                    limit: int | None = None, dry_run: bool = False, actor: str = "cli") -> ReprocessReport:
    """Run open entries (chosen by ``ids`` or ``system``, or all) through their system's current mapping."""
    entries, refused = await select(store, ids=ids, system=system, limit=limit)
    report = ReprocessReport(dry_run, list(refused))
    for start in range(0, len(entries), CHUNK):
        report.results.extend(await _chunk(store, ingestor, entries[start:start + CHUNK], dry_run, actor))
    report.results.sort(key=lambda r: r["id"])
    return report


async def _chunk(store: Store, ingestor: Ingestor, entries: list[dict[str, Any]], dry_run: bool,
                 actor: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    by_system: dict[str, list[tuple[dict[str, Any], RawRecord]]] = {}
    for entry in entries:
        if entry["payload"] is None:
            rules = ", ".join(sorted({str(e.get("rule")) for e in entry["errors"]}))
            results.append({"id": entry["id"], "outcome": "not_reprocessable",
                            "message": f"nothing parsed was kept of this item (it broke: {rules}); only the "
                                       "counterpart can send it again, corrected"})
            continue
        if entry["system"] not in ingestor.mappings:
            results.append({"id": entry["id"], "outcome": "no_mapping",
                            "message": f"system {entry['system']!r} has no inbound mapping configured now"})
            continue
        full = await store.quarantine_entry(entry["id"])
        raw = full.get("raw") if full is not None else None
        by_system.setdefault(entry["system"], []).append(
            (entry, RawRecord(entry["system"], entry["payload"], _ref(entry), raw)))
    items: list[Reprocessed] = []
    for system, pairs in by_system.items():
        raws = [raw for _, raw in pairs]
        accepted, quarantined = await asyncio.to_thread(ingestor.prepare, system, raws)
        mapping = ingestor.mappings[system]
        mapping_id = f"{mapping.name}@{mapping.version}"
        for entry, raw in pairs:
            mine = [a for a in accepted if a.ref == raw.ref]
            errors = [e for q in quarantined if q.ref == raw.ref for e in q.errors]
            if dry_run:
                records = [{"kind": a.kind, "record_key": a.record_key, "version": a.version} for a in mine]
                outcome = "would_land" if not errors else ("would_partly_land" if mine else "still_bad")
                results.append({"id": entry["id"], "outcome": outcome, "mapping": mapping_id, "records": records,
                                "errors": errors})
            else:
                items.append(Reprocessed(entry["id"], mapping_id, mine, errors))
    if items:
        results.extend(await store.commit_reprocess(items, actor))
        if ingestor.on_commit is not None:
            ingestor.on_commit()
    return results
