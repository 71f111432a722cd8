"""The console's case index: how the supervision follower's batches fold into it, and catching up on a store
upgraded to it."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.console.index import IndexBatch, fold_record, month_of
from gateway.store.cases import AlertQuery, CaseQuery
from gateway.store.sqlite import SqliteStore
from tests.console_support import CREDIT_CODE, ID_NO, console_gateway, load_scenario
from tests.test_api_support import http_fixture as http_fixture  # noqa: F401  (the ``http`` fixture)


@pytest.fixture(name="store")
async def store_fixture(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "gateway.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def record(kind: str, **data: Any) -> dict[str, Any]:
    return {"kind": kind, "data": data, "provenance": {"source_system": "hall_platform"}}


def alert(case_no: str, alert_type: str, severity: str, alert_id: str) -> dict[str, Any]:
    return {"kind": "supervision_alert", "provenance": {"source_system": "supervision"},
            "data": {"alert_id": alert_id, "case_no": case_no, "alert_type": alert_type, "severity": severity,
                     "raised_at": "2026-10-13T00:00:00+08:00", "description": "…"}}


def test_months_are_counted_in_china_time() -> None:
    assert month_of("2026-10-31T17:30:00+00:00") == "2026-11"  # 01:30 on 1 November in China
    assert month_of("2026-10-31T23:59:59+08:00") == "2026-10"
    assert month_of("2026-10-31") == "2026-10" and month_of(None) is None


def test_a_persons_id_number_is_never_indexed_and_an_organisations_credit_code_is() -> None:
    batch = IndexBatch()
    fold_record(batch, 1, "2026-10-01T09:00:00+08:00", record(
        "case", case_no="A", applicant_type="1", applicant_name="张三", applicant_id_type="111",
        applicant_id_no=ID_NO), "A")
    fold_record(batch, 2, "2026-10-01T09:00:00+08:00", record(
        "case", case_no="B", applicant_type="2", applicant_name="某公司", applicant_id_type="821",
        applicant_id_no=CREDIT_CODE.lower()), "B")
    fold_record(batch, 3, "2026-10-01T09:00:00+08:00", record(
        "case", case_no="C", applicant_type="2", applicant_name="加密公司",
        applicant_id_no={"$enc": "v1:aes-256-gcm:k1:…"}), "C")
    assert batch.cases["A"]["applicant_credit_code"] is None and ID_NO not in str(batch.cases)
    assert batch.cases["B"]["applicant_credit_code"] == CREDIT_CODE
    assert batch.cases["C"]["applicant_credit_code"] is None  # encrypted at rest: not indexed


async def test_flags_only_rise_and_fields_a_later_record_lacks_are_kept(store: SqliteStore) -> None:
    first = IndexBatch()
    fold_record(first, 1, "2026-10-01T09:00:00+08:00", record(
        "case", case_no="SL-1", item_code="3706000001", applicant_name="某公司", applicant_type="2",
        region_code="370602", department_name="芝罘区市场监管局"), "SL-1")
    fold_record(first, 2, "2026-10-01T09:05:00+08:00", alert("SL-1", "overdue_red", "red", "sa-1"), None)
    await store.commit_index(first, "2")
    later = IndexBatch()
    fold_record(later, 3, "2026-10-02T09:00:00+08:00", record("acceptance", case_no="SL-1"), "SL-1")
    fold_record(later, 4, "2026-10-02T09:01:00+08:00", alert("SL-1", "near_deadline_yellow", "yellow", "sa-2"), None)
    await store.commit_index(later, "4")
    row = await store.case_index_row("SL-1")
    assert row is not None
    assert row["warning"] == 2 and row["overdue"] == 1 and row["alerts"] == 2  # yellow after red stays red
    assert row["item_code"] == "3706000001" and row["region_code"] == "370602" and row["records"] == 2
    assert row["first_received_at"] == "2026-10-01T09:00:00+08:00"
    assert row["last_received_at"] == "2026-10-02T09:00:00+08:00"
    assert await store.get_cursor("console:case_index") == "4"


async def test_a_dead_letter_alert_gives_a_case_no_card(store: SqliteStore) -> None:
    batch = IndexBatch()
    fold_record(batch, 1, "2026-10-01T09:00:00+08:00", record("case", case_no="SL-2", item_code="3706000001"), "SL-2")
    fold_record(batch, 2, "2026-10-01T09:05:00+08:00", alert("SL-2", "delivery_dead_letter", "red", "sa-d"), None)
    await store.commit_index(batch, "2")
    row = await store.case_index_row("SL-2")
    assert row is not None and row["warning"] == 0 and row["alerts"] == 1


async def test_an_alert_for_a_case_not_yet_indexed_adds_no_half_empty_row(store: SqliteStore) -> None:
    batch = IndexBatch()
    fold_record(batch, 1, "2026-10-01T09:00:00+08:00", alert("SL-9", "audit_integrity", "red", "sa-9"), None)
    await store.commit_index(batch, "1")
    assert await store.case_index_row("SL-9") is None
    rows, more = await store.list_alert_index(AlertQuery())
    assert [r["alert_id"] for r in rows] == ["sa-9"] and not more


async def test_a_store_upgraded_to_the_case_index_is_indexed_from_its_records_at_start(tmp_path, http) -> None:
    async for gw in console_gateway(tmp_path):
        await load_scenario(http, gw)
        store: Any = gw.store
        before, _, _ = await store.search_cases(CaseQuery(limit=10))
        # As a store from before migration 0045 looks once it ran: records folded, index empty.
        conn = sqlite3.connect(store.path)
        for table in ("case_index", "alert_index", "counterpart_contact", "case_stats_monthly"):
            conn.execute(f"DELETE FROM {table}")
        conn.execute("DELETE FROM cursors WHERE name = 'console:case_index'")
        conn.commit()
        conn.close()
        assert (await store.search_cases(CaseQuery(limit=10)))[0] == []
        assert await gw.supervision.catch_up_index() > 0
        after, total, _ = await store.search_cases(CaseQuery(limit=10))
        assert total == 3
        keep = ("case_no", "status", "warning", "overdue", "outside_system", "applicant_credit_code", "license_no")
        assert [{k: r[k] for k in keep} for r in after] == [{k: r[k] for k in keep} for r in before]
        assert await gw.supervision.catch_up_index() == 0  # nothing left to do
        _from_scratch(store.path)


def _from_scratch(path: str) -> dict[tuple[str, str, str], tuple[int, ...]]:
    """The monthly table as grouping every case would give it."""
    conn = sqlite3.connect(path)
    out: dict[tuple[str, str, str], list[int]] = {}
    for month, dept, item, n, overdue, backfilled in conn.execute(
            "SELECT received_month, COALESCE(department, ''), COALESCE(item_code, ''), count(*), sum(overdue),"
            " sum(backfilled) FROM case_index GROUP BY 1, 2, 3"):
        out.setdefault((month, dept, item), [0] * 6)[:3] = [n, overdue, backfilled]
    for month, dept, item, n, on_time, timed in conn.execute(
            "SELECT completed_month, COALESCE(department, ''), COALESCE(item_code, ''), count(*),"
            " sum(CASE WHEN on_time = 1 THEN 1 ELSE 0 END), sum(CASE WHEN on_time IS NULL THEN 0 ELSE 1 END)"
            " FROM case_index WHERE completed_month IS NOT NULL GROUP BY 1, 2, 3"):
        out.setdefault((month, dept, item), [0] * 6)[3:] = [n, on_time, timed]
    kept = {(m, d, i): (r, o, b, c, t, tm) for m, d, i, r, o, b, c, t, tm in conn.execute(
        "SELECT month, department, item_code, received, overdue, backfilled, completed, on_time, timed"
        " FROM case_stats_monthly")}
    conn.close()
    assert {k: v for k, v in kept.items() if any(v)} == {k: tuple(v) for k, v in out.items()}
    return kept


async def test_the_monthly_statistics_follow_every_change_of_a_case(store: SqliteStore) -> None:
    from gateway.console.index import apply_state
    from gateway.supervision.state import CaseState

    def case_batch(n: int, month: str, **changes: Any) -> IndexBatch:
        batch = IndexBatch()
        fold_record(batch, n, f"{month}-03T09:00:00+08:00", record(
            "case", case_no="SL-7", item_code="3706000001", department_name="芝罘区市场监管局"), "SL-7")
        state = CaseState("SL-7", "case", f"{month}-03T09:00:00+08:00", submitted_at=f"{month}-03T09:00:00+08:00",
                          **changes)
        apply_state(batch.cases["SL-7"], state, None)
        return batch

    await store.commit_index(case_batch(1, "2026-09"), "1")
    _from_scratch(store.path)
    # Accepted, then completed in the next month; then it turns out overdue (an alert); then a new
    # version of the case record moves its application into October.
    await store.commit_index(case_batch(2, "2026-09", acceptance={"accepted_at": "2026-09-04T09:00:00+08:00"}), "2")
    await store.commit_index(case_batch(3, "2026-09", acceptance={"accepted_at": "2026-09-04T09:00:00+08:00"},
                                        completion={"completed_at": "2026-10-20T09:00:00+08:00"}), "3")
    late = IndexBatch()
    fold_record(late, 4, "2026-10-21T09:00:00+08:00", alert("SL-7", "overdue_red", "red", "sa-7"), None)
    await store.commit_index(late, "4")
    kept = _from_scratch(store.path)
    assert kept[("2026-09", "芝罘区市场监管局", "3706000001")][:2] == (1, 1)
    assert kept[("2026-10", "芝罘区市场监管局", "3706000001")][3] == 1
    await store.commit_index(case_batch(5, "2026-10", completion={"completed_at": "2026-10-20T09:00:00+08:00"}), "5")
    kept = _from_scratch(store.path)
    assert kept[("2026-09", "芝罘区市场监管局", "3706000001")][0] == 0
    assert kept[("2026-10", "芝罘区市场监管局", "3706000001")][:4] == (1, 1, 0, 1)
