"""Correlation and effects: every record links to its case, licence and credit code; a supervision result
that names only a licence (or only a credit code) is tied to its case, and a suspension or revocation
marks the licence and its case and tells the hall."""

from __future__ import annotations

from exchange_support import (
    acceptance,
    audit_actions,
    case,
    completion,
    county_licence,
    holder_code,
    licence,
    push,
    rows,
    settle,
    site_fixture,  # noqa: F401 - the fixture, used as ``site``
    supervision_result,
)

from gateway.app import Gateway


async def _approved(gw: Gateway, case_no: str, licence_no: str, code: str, **licence_fields: object) -> None:
    await push(gw, "hall_platform", case(case_no, holder=code), acceptance(case_no), completion(case_no, licence_no),
               licence(case_no, licence_no, code, **licence_fields))


async def test_a_revocation_naming_only_its_licence_is_tied_to_the_case_marks_it_and_tells_the_hall(site: Gateway):
    code = holder_code("lu-dong")
    await _approved(site, "SB2026092900001", "JY13706020000123", code)
    out = await push(site, "market_ministry", supervision_result("烟市监罚〔2026〕88号", code,
                                                                 licence_no="JY13706020000123"))
    assert [o.status for o in out] == ["accepted"]
    await settle(site)
    store = site.store
    assert store is not None
    # every reader that asks by case finds it: the record's case index is the case now
    by_case = await store.list_records(case_no="SB2026092900001")
    kinds = [r["kind"] for r in by_case]
    assert kinds[:5] == ["case", "acceptance", "completion", "approval_result", "supervision_result"]
    result = next(r for r in by_case if r["kind"] == "supervision_result")
    assert result["record_key"] == "烟市监罚〔2026〕88号"
    # the licence and the case are marked
    detail = await store.licence_detail("JY13706020000123")
    assert detail is not None
    assert detail["licence"]["state"] == "revoked"
    assert detail["licence"]["state_by"] == "烟市监罚〔2026〕88号"
    assert detail["licence"]["case_no"] == "SB2026092900001"
    assert detail["licence"]["approved_by"] == "hall_platform"
    assert detail["case"]["affected"] == "revoked"
    assert [e["effect"] for e in detail["effects"]] == ["revoke"]
    # the hall is told: a notice record routed to it, naming the case and the licence
    notices = [r for r in by_case if r["kind"] == "supervision_alert"]
    assert len(notices) == 1
    notice = notices[0]["record"]["data"]
    assert notice["alert_type"] == "licence_revoked" and notice["case_no"] == "SB2026092900001"
    assert "JY13706020000123" in notice["description"]
    dests = rows(site, "SELECT destination FROM outbox WHERE record_id = ?", notices[0]["id"])
    assert dests == [("hall_platform",)]
    # and the trail says what happened, on the case
    linked = audit_actions(site, "case_linked")
    assert [(e["case"], e["record"], e["detail"]["by"]) for e in linked] == [
        ("SB2026092900001", "烟市监罚〔2026〕88号", "licence")]
    affected = audit_actions(site, "licence_affected")
    assert affected[0]["detail"]["licence"] == "JY13706020000123" and affected[0]["detail"]["effect"] == "revoke"
    # deliveries of the result are filed under the case too
    assert {r[0] for r in rows(site, "SELECT case_no FROM outbox WHERE record_id = ?", result["id"])} == {
        "SB2026092900001"}


async def test_a_result_that_arrives_before_its_approval_waits_and_is_tied_when_the_approval_comes(site: Gateway):
    code = holder_code("hai-yue")
    await push(site, "market_ministry", supervision_result("烟市监罚〔2026〕90号", code, licence_no="JY2",
                                                           kind="暂扣", effect="暂扣"))
    await settle(site)
    store = site.store
    assert store is not None
    waiting = await store.exchange_links(unresolved=True)
    assert [(w["record_key"], w["licence_no"]) for w in waiting] == [("烟市监罚〔2026〕90号", "JY2")]
    assert "not known yet" in waiting[0]["note"]
    await _approved(site, "SB2026092900002", "JY2", code)
    await settle(site)
    assert await store.exchange_links(unresolved=True) == []
    detail = await store.licence_detail("JY2")
    assert detail is not None and detail["licence"]["state"] == "suspended"
    assert [r["kind"] for r in await store.list_records(case_no="SB2026092900002", kind="supervision_result")] == [
        "supervision_result"]
    notices = await store.list_records(case_no="SB2026092900002", kind="supervision_alert")
    assert [n["record"]["data"]["alert_type"] for n in notices] == ["licence_suspended"]


async def test_a_result_naming_only_a_credit_code_finds_the_case_when_the_code_has_one_licence(site: Gateway):
    code = holder_code("jin-qiao")
    await _approved(site, "SB2026092900003", "JY3", code)
    await push(site, "market_ministry", supervision_result("烟市监检〔2026〕7号", code, kind="检查", effect=None))
    await settle(site)
    store = site.store
    assert store is not None
    links = await store.exchange_links(case_no="SB2026092900003")
    inspection = next(link for link in links if link["kind"] == "supervision_result")
    assert inspection["resolved_by"] == "credit_code" and inspection["licence_no"] == "JY3"
    detail = await store.licence_detail("JY3")
    assert detail is not None and detail["licence"]["state"] == "valid"  # an inspection affects nothing
    assert [e["effect"] for e in detail["effects"]] == ["none"]


async def test_a_credit_code_with_several_cases_stays_unresolved_unless_the_text_names_the_licence(site: Gateway):
    code = holder_code("rui-feng")
    await _approved(site, "SB2026092900004", "JY4A", code, decision="芝审批许〔2026〕4A号")
    await _approved(site, "SB2026092900005", "JY4B", code, decision="芝审批许〔2026〕4B号")
    await push(site, "market_ministry",
               supervision_result("烟市监罚〔2026〕91号", code, kind="处罚", effect=None),
               supervision_result("烟市监罚〔2026〕92号", code, affected_text="食品经营许可证 JY4B"))
    await settle(site)
    store = site.store
    assert store is not None
    waiting = await store.exchange_links(unresolved=True)
    assert [w["record_key"] for w in waiting] == ["烟市监罚〔2026〕91号"]
    assert "2 cases" in waiting[0]["note"]
    detail = await store.licence_detail("JY4B")
    assert detail is not None and detail["licence"]["state"] == "revoked"
    first = await store.licence_detail("JY4A")
    assert first is not None and first["licence"]["state"] == "valid"


async def test_approval_results_route_by_item_type_licence_category_and_region(site: Gateway):
    code = holder_code("routes")
    await push(site, "hall_platform",
               licence("SB1", "R1", code, decision="D1", item_type="01", category="GENERAL", region="370602"),
               licence("SB2", "R2", code, decision="D2", item_type="01", category="APPROVAL", region="370602"),
               licence("SB3", "R3", code, decision="D3", item_type="20", category="GENERAL", region="370602"),
               licence("SB4", "R4", code, decision="D4", item_type="01", category="FRANCHISE", region="370612"))
    routed = rows(site, "SELECT r.record_key, o.destination FROM outbox o JOIN records r ON r.id = o.record_id"
                        " ORDER BY r.record_key, o.destination")
    assert routed == [("D1", "market_ministry"), ("D4", "county_out"), ("D4", "market_ministry")]


async def test_supervision_results_go_back_to_the_approving_bureau(site: Gateway):
    code = holder_code("county")
    # the county's approval bureau approved this licence; its front-end machine carried the approval result
    out = await push(site, "county_results", county_licence("SB2026101500009", "JY9", code,
                                                            decision="牟审批许〔2026〕9号"))
    assert [o.status for o in out] == ["accepted"]
    await push(site, "market_ministry", supervision_result("烟市监罚〔2026〕99号", code, licence_no="JY9"))
    await settle(site)
    store = site.store
    assert store is not None
    result = (await store.list_records(case_no="SB2026101500009", kind="supervision_result"))[0]
    dests = sorted(r[0] for r in rows(site, "SELECT destination FROM outbox WHERE record_id = ?", result["id"]))
    # the routes send it to the hall; the approving bureau gets it through the county front-end machine
    assert dests == ["county_out", "hall_platform"]
    routed = audit_actions(site, "routed")
    assert [(e["system"], e["record"], e["case"]) for e in routed] == [
        ("county_out", "烟市监罚〔2026〕99号", "SB2026101500009")]
    assert "approving bureau" in routed[0]["detail"]["reason"]


async def test_every_record_links_to_its_case_licence_and_credit_code(site: Gateway):
    code = holder_code("links")
    await _approved(site, "SB2026092900010", "JY10", code)
    await settle(site)
    store = site.store
    assert store is not None
    links = await store.exchange_links(case_no="SB2026092900010")
    assert [(lk["kind"], lk["licence_no"], lk["credit_code"], lk["resolved_by"]) for lk in links] == [
        ("case", None, code, "record"), ("acceptance", None, None, "record"),
        ("completion", "JY10", None, "record"), ("approval_result", "JY10", code, "record")]
    assert [lk["record_key"] for lk in await store.exchange_links(credit_code=code)] == [
        "SB2026092900010", "芝审批许〔2026〕JY10号"]


async def test_records_stored_before_the_exchange_existed_are_linked_without_telling_anyone_again(tmp_path):
    import sqlite3

    from exchange_support import write_site

    from gateway.config import load_config

    config_path = write_site(tmp_path)
    text = config_path.read_text(encoding="utf-8")
    config_path.write_text(text.replace("[exchange]\n", "[exchange]\nenabled = false\n"), encoding="utf-8")
    gw = Gateway(load_config(config_path))
    await gw.start()
    code = holder_code("history")
    try:
        await _approved(gw, "SB-OLD-1", "JY-OLD-1", code)
        await push(gw, "market_ministry", supervision_result("烟市监罚〔2025〕1号", code, licence_no="JY-OLD-1"))
    finally:
        await gw.stop()
    # what migration 0030 notes on a store that has records when it is upgraded: where history ends
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.execute("UPDATE cursors SET value = (SELECT CAST(max(id) AS TEXT) FROM records) WHERE name = 'exchange:history'")
    config_path.write_text(text, encoding="utf-8")
    gw = Gateway(load_config(config_path))
    await gw.start()
    try:
        await settle(gw)
        assert gw.store is not None
        detail = await gw.store.licence_detail("JY-OLD-1")
        assert detail is not None and detail["licence"]["state"] == "revoked"  # the state is known …
        assert [r["kind"] for r in await gw.store.list_records(case_no="SB-OLD-1")][-1] == "supervision_result"
        assert await gw.store.list_records(kind="supervision_alert") == []  # … but the hall is not told again
        assert audit_actions(gw, "routed") == []
    finally:
        await gw.stop()
