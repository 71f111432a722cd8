"""Electronic supervision in the running gateway: findings become routed, delivered supervision_alert records."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

from e2e_site import Site, wait_until

from gateway.app import Gateway
from gateway.demo.counterparts import HallPlatform
from gateway.demo.generate import HALL_CREDIT_CODE, approvedatainfo_xml, case_fields


def _write(path, items: list[bytes]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"<APPROVEDATAINFOS>" + b"".join(items) + b"</APPROVEDATAINFOS>")
    tmp.rename(path)


def _section(name: str, fields: dict[str, str]) -> bytes:
    return f"<{name}>".encode() + b"".join(f"<{k}>{v}</{k}>".encode() for k, v in fields.items()) + \
        f"</{name}>".encode()


async def test_overdue_backfilled_and_outside_system_cases_raise_alerts_that_reach_the_supervisors(tmp_path):
    rng = random.Random(5)
    month_ago = datetime.now() - timedelta(days=30)
    # case A: applied and accepted a month ago with a 5-working-day promise, never completed, reported only now
    a = case_fields(900001, rng, submitted_from=month_ago, spread_minutes=1)
    a.update(CNSX="5", CNSXDW="G")
    acceptance = {"SBLSH": a["SBLSH"], "SLBMMC": "烟台市行政审批服务局", "SLBMZZJGDM": HALL_CREDIT_CODE,
                  "BLRXM": "王伟", "SLZTDM": "1", "SLSJ": (month_ago + timedelta(hours=2)).strftime("%Y%m%d%H%M%S")}
    case_a = approvedatainfo_xml(a).replace(b"</APPROVEDATAINFO>", _section("SPSHOULI", acceptance)
                                            + b"</APPROVEDATAINFO>")
    # case B: a completion with no application or acceptance ever seen (体外循环)
    b_no = "3706000000900002"
    completion = {"SBLSH": b_no, "BJBMMC": "烟台市行政审批服务局", "BJBMZZJGDM": HALL_CREDIT_CODE, "BJJGDM": "6",
                  "BJSJ": (datetime.now() - timedelta(hours=3)).strftime("%Y%m%d%H%M%S")}
    case_b = b"<APPROVEDATAINFO>" + _section("SPBANJIE", completion) + b"</APPROVEDATAINFO>"

    async with HallPlatform() as hall:
        site = Site(tmp_path, hall.records_url, supervision="true", supervision_destinations='["hall_platform"]')
        gw = Gateway(site.config())
        await gw.start()
        try:
            _write(tmp_path / "drop/county/late.xml", [case_a, case_b])
            await wait_until(
                lambda: {b.get("alertType") or b.get("alert_type") for b in hall.records.values()
                         if b.get("dataType") == "ALERT"} >= {"backfill_late_entry", "outside_system_no_acceptance",
                                                              "overdue_red"},
                timeout=30, what="the three findings delivered to the hall")
        finally:
            await gw.stop()

    alerts = [json.loads(r[0])["data"] for r in site.query(
        "SELECT body FROM records WHERE kind='supervision_alert' ORDER BY id")]
    by_type = {}
    for alert in alerts:
        by_type.setdefault(alert["alert_type"], []).append(alert)
    assert by_type["overdue_red"][0]["case_no"] == a["SBLSH"]
    assert by_type["overdue_red"][0]["severity"] == "red"
    assert by_type["backfill_late_entry"][0]["case_no"] == a["SBLSH"]
    assert by_type["outside_system_no_acceptance"][0]["case_no"] == b_no
    assert "acceptance_overdue" not in by_type  # A's acceptance came in the same report as its application
    # alerts are audited as raised, and delivered like any record
    assert site.audit_count("alert_raised") == len(alerts)
    assert site.scalar("SELECT count(*) FROM outbox o JOIN records r ON r.id = o.record_id "
                       "WHERE r.kind='supervision_alert' AND o.state='delivered'") == len(alerts)


async def test_a_report_carrying_application_acceptance_and_completion_is_judged_whole_not_record_by_record(
        tmp_path) -> None:
    """Accepted 2026-09-29 with 5 working days and completed 2026-10-12, across 国庆, reported only now in one
    element: late entry (补录) yes; no "never accepted" between its records and no red card."""
    rng = random.Random(9)
    case = case_fields(900011, rng, submitted_from=datetime(2026, 9, 28, 15, 0), spread_minutes=1)
    case.update(CNSX="5", CNSXDW="G")
    acceptance = {"SBLSH": case["SBLSH"], "SLBMMC": "烟台市行政审批服务局", "SLBMZZJGDM": HALL_CREDIT_CODE,
                  "BLRXM": "王伟", "SLZTDM": "1", "SLSJ": "20260929093000"}
    completion = {"SBLSH": case["SBLSH"], "BJBMMC": "烟台市行政审批服务局", "BJBMZZJGDM": HALL_CREDIT_CODE,
                  "BJJGDM": "7", "BJSJ": "20261012160000"}
    report = approvedatainfo_xml(case).replace(
        b"</APPROVEDATAINFO>", _section("SPSHOULI", acceptance) + _section("SPBANJIE", completion)
        + b"</APPROVEDATAINFO>")
    async with HallPlatform() as hall:
        site = Site(tmp_path, hall.records_url, supervision="true", supervision_destinations='["hall_platform"]')
        gw = Gateway(site.config())
        await gw.start()
        try:
            _write(tmp_path / "drop/county/late.xml", [report])
            await wait_until(lambda: site.scalar("SELECT count(*) FROM case_state") >= 1 and any(
                b.get("dataType") == "ALERT" for b in hall.records.values()), timeout=30, what="the case folded")
            await gw.supervision.tick(datetime.now().astimezone())  # and a tick after it changes nothing
        finally:
            await gw.stop()
    types = sorted(json.loads(r[0])["data"]["alert_type"] for r in site.query(
        "SELECT body FROM records WHERE kind='supervision_alert'"))
    assert set(types) == {"backfill_late_entry"}, types
