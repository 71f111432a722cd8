"""并联审批: the lead department accepts once, the gateway dispatches the case to every department at once,
tracks who has answered on the working-day calendar, alerts on the late one, and delivers the combined result
to the hall when all have answered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import pytest
from e2e_site import wait_until
from exchange_support import acceptance, audit_actions, case, opinion, push, rows, write_site

from gateway.app import Gateway
from gateway.config import load_config
from gateway.exchange.config import ParallelDepartment
from gateway.exchange.parallel import due_at
from gateway.supervision.calendar import WorkCalendar

CHINA = timezone(timedelta(hours=8))

SCHEME = """
[[exchange.parallel]]
name = "食品经营许可并联审批"
items = ["XK000"]
lead = "hall_platform"
lead_department = "烟台市芝罘区行政审批服务局"
to = ["hall_platform"]

[[exchange.parallel.departments]]
name = "烟台市市场监督管理局"
system = "market_ministry"
time_limit = 20

[[exchange.parallel.departments]]
name = "芝罘区卫生健康局"
system = "county_results"
sink = "county_out"
time_limit = 2
"""


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = Gateway(load_config(write_site(tmp_path, SCHEME)))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


def test_limits_count_working_days_after_the_acceptance_day_with_make_up_days():
    calendar = WorkCalendar.default()
    accepted = datetime(2026, 9, 29, 10, 0, tzinfo=CHINA)  # Tue; 1–7 Oct is the National Day holiday
    five = due_at(calendar, accepted, ParallelDepartment(name="x", system="x", time_limit=5))
    assert five == datetime(2026, 10, 12, 23, 59, 59, tzinfo=five.tzinfo)  # 30 Sep, 8, 9, Sat 10 (调休), 12 Oct
    natural = due_at(calendar, accepted, ParallelDepartment(name="x", system="x", time_limit=5, unit="Z"))
    assert natural.date().isoformat() == "2026-10-04"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


async def _alerts(gw: Gateway, case_no: str) -> list[dict]:
    assert gw.store is not None
    return [r["record"]["data"] for r in await gw.store.list_records(case_no=case_no, kind="supervision_alert")]


async def test_one_department_late_is_alerted_then_the_combined_result_goes_to_the_hall_once_it_answers(site: Gateway):
    calendar = WorkCalendar.default()
    today = datetime.now(CHINA).date()
    accepted = datetime.combine(calendar.add_working_days(today, -4), time(10, 0), CHINA)
    case_no = "SB-PAR-0001"
    await push(site, "hall_platform", case(case_no, item_code="XK00011"), acceptance(case_no, at=_stamp(accepted)))
    store = site.store
    assert store is not None and site.exchange is not None
    await site.exchange.drain()
    # dispatched at once to both departments, through each one's own adapter
    dispatched = rows(site, "SELECT r.kind, o.destination FROM outbox o JOIN records r ON r.id = o.record_id"
                            " WHERE r.case_no = ? AND r.kind IN ('case', 'acceptance')"
                            " ORDER BY o.destination, o.id", case_no)
    assert dispatched == [("case", "county_out"), ("acceptance", "county_out"),
                          ("case", "market_ministry"), ("acceptance", "market_ministry")]
    state = (await store.exchange_parallel_cases([case_no]))[case_no]
    assert state["state"] == "open" and state["lead"] == "hall_platform"
    dues = {d["department"]: d["due_at"][:10] for d in state["departments"]}
    assert dues == {"芝罘区卫生健康局": calendar.add_working_days(accepted.date(), 2).isoformat(),
                    "烟台市市场监督管理局": calendar.add_working_days(accepted.date(), 20).isoformat()}
    started = audit_actions(site, "parallel_started")
    assert [(e["case"], len(e["detail"]["departments"])) for e in started] == [(case_no, 2)]
    # the market regulator answers in time; the health bureau's limit has passed: the clock raises its alert
    await push(site, "market_ministry", opinion(case_no, department="烟台市市场监督管理局",
                                               at=_stamp(datetime.now(CHINA) - timedelta(hours=1))))

    async def late_alert() -> list[dict]:
        return [a for a in await _alerts(site, case_no) if a["alert_type"] == "parallel_late"]

    found = await wait_until(late_alert, timeout=15, what="the parallel_late alert")
    assert [(a["department"], a["severity"], a["subject_key"]) for a in found] == [
        ("芝罘区卫生健康局", "red", "county_results")]
    assert "未在时限内反馈意见" in found[0]["description"]
    await site.exchange.tick(datetime.now(CHINA))  # the clock again: no second alert for the same lateness
    assert len(await late_alert()) == 1
    assert not [r for r in rows(site, "SELECT r.kind FROM records r WHERE r.system = 'exchange'")]  # not yet combined
    # the late department answers at last: the combined result goes to the hall
    await push(site, "county_results", opinion(case_no, department="芝罘区卫生健康局", at=_stamp(datetime.now(CHINA)),
                                               text="经现场核查，同意"))
    await site.exchange.drain()
    combined = await store.list_records(case_no=case_no, kind="process_step")
    made = [r for r in combined if r["system"] == "exchange"]
    assert len(made) == 1
    data = made[0]["record"]["data"]
    assert data["action"] == "pass" and data["step_name"] == "并联审批意见汇总"
    assert "烟台市市场监督管理局：同意" in data["opinion"] and "芝罘区卫生健康局：同意" in data["opinion"]
    assert "逾期" in data["opinion"]  # the late answer is marked as such
    assert rows(site, "SELECT destination FROM outbox WHERE record_id = ?", made[0]["id"]) == [("hall_platform",)]
    state = (await store.exchange_parallel_cases([case_no]))[case_no]
    assert state["state"] == "completed" and state["result"] == "pass" and state["next_check"] is None
    answered = audit_actions(site, "parallel_answered")
    assert [(e["detail"]["department"], e["detail"]["late"]) for e in answered] == [
        ("烟台市市场监督管理局", False), ("芝罘区卫生健康局", True)]
    assert [e["detail"]["result"] for e in audit_actions(site, "parallel_completed")] == ["pass"]
    # the hall receives it (the file sink writes what the hall platform would be sent)
    await wait_until(lambda: any("并联审批意见汇总" in p.read_text(encoding="utf-8")
                                 for p in (site.config.base_dir / "out" / "hall").glob("*.json")),
                     what="the combined result at the hall")


async def test_a_return_by_any_department_makes_the_combined_result_a_return(site: Gateway):
    case_no = "SB-PAR-0002"
    now = datetime.now(CHINA)
    await push(site, "hall_platform", case(case_no, item_code="XK00023"), acceptance(case_no, at=_stamp(now)))
    await push(site, "market_ministry", opinion(case_no, department="烟台市市场监督管理局", at=_stamp(now),
                                               action="退回", text="材料不全"))
    await push(site, "county_results", opinion(case_no, department="芝罘区卫生健康局", at=_stamp(now)))
    assert site.exchange is not None and site.store is not None
    await site.exchange.drain()
    made = [r for r in await site.store.list_records(case_no=case_no, kind="process_step") if r["system"] == "exchange"]
    assert [r["record"]["data"]["action"] for r in made] == ["return"]
    assert "退回（材料不全）" in made[0]["record"]["data"]["opinion"]


async def test_cases_of_other_items_and_acceptances_of_other_systems_do_not_start_a_scheme(site: Gateway):
    now = _stamp(datetime.now(CHINA))
    await push(site, "hall_platform", case("SB-PAR-0003", item_code="XK00107"), acceptance("SB-PAR-0003", at=now))
    await push(site, "hall_platform", case("SB-PAR-0004", item_code="XK00011"))
    await push(site, "county_results", {"TYPE": "YJ", "SBLSH": "SB-PAR-0004", "SPHJDM": "2", "SPSJ": now,
                                        "YWDZ": "通过"})
    assert site.exchange is not None and site.store is not None
    await site.exchange.drain()
    assert await site.store.exchange_parallel_cases(["SB-PAR-0003", "SB-PAR-0004"]) == {}
    # the acceptance comes later: now it starts
    await push(site, "hall_platform", acceptance("SB-PAR-0004", at=now))
    await site.exchange.drain()
    state = (await site.store.exchange_parallel_cases(["SB-PAR-0004"]))["SB-PAR-0004"]
    assert state["state"] == "open"
    # the county's opinion that came before the acceptance is counted; the market regulator is awaited
    assert {d["department"]: d["action"] for d in state["departments"]} == {
        "芝罘区卫生健康局": "pass", "烟台市市场监督管理局": None}
