"""The inbound push endpoint against a real running gateway: receipts after commit, duplicates, mixed batches, refusals."""

from __future__ import annotations

import json
import logging

import aiohttp
from test_api_support import (  # noqa: F401
    ID_NO,
    PUSH_AUTH,
    acceptance_item,
    case_item,
    gw_fixture,
    http_fixture,
    xml_records,
)

from gateway.app import Gateway
from gateway.observability.logs import json_formatter

JSON_URL = "/api/v1/inbound/hall_platform/case"


async def post_json(http: aiohttp.ClientSession, gw: Gateway, body: object, path: str = JSON_URL,
                    **headers: str) -> tuple[int, dict]:
    async with http.post(gw.api.url + path, json=body, headers={**PUSH_AUTH, **headers}) as r:
        return r.status, await r.json()


async def test_push_is_answered_202_with_receipts_and_the_records_are_committed(gw, http) -> None:
    status, body = await post_json(http, gw, [case_item("HP-2026-0001"), case_item("HP-2026-0002")])

    assert status == 202
    assert body["committed"] is True and body["accepted"] == 2 and body["quarantined"] == 0
    receipts = [item["receipt_id"] for item in body["items"]]
    assert all(r and r.startswith("R") for r in receipts) and len(set(receipts)) == 2
    assert [item["status"] for item in body["items"]] == ["accepted", "accepted"]
    # The answer came after the commit: the rows are there, under the receipts we were given.
    for case_no, receipt in zip(["HP-2026-0001", "HP-2026-0002"], receipts, strict=True):
        rows = await gw.store.list_records(case_no=case_no)
        assert [(r["kind"], r["receipt_id"], r["ref"]) for r in rows] == [
            ("case", receipt, f"POST {JSON_URL} item {receipts.index(receipt)}")]
        assert rows[0]["record"]["data"]["applicant_id_no"] == ID_NO
    # … routed to the sink in the same transaction.
    deliveries = await gw.store.list_deliveries(destination="archive")
    assert {d["case_no"] for d in deliveries} == {"HP-2026-0001", "HP-2026-0002"}


async def test_a_single_json_object_is_one_item(gw, http) -> None:
    status, body = await post_json(http, gw, case_item("HP-2026-0003"))
    assert status == 202 and len(body["items"]) == 1 and body["items"][0]["records"][0]["record_key"] == "HP-2026-0003"


async def test_the_same_record_again_is_200_duplicate_with_the_original_receipt(gw, http) -> None:
    _, first = await post_json(http, gw, [case_item("HP-2026-0010")])
    status, again = await post_json(http, gw, [case_item("HP-2026-0010")])

    assert status == 200
    assert again["duplicates"] == 1 and again["accepted"] == 0
    assert again["items"][0]["status"] == "duplicate"
    assert again["items"][0]["receipt_id"] == first["items"][0]["receipt_id"]
    assert len(await gw.store.list_records(case_no="HP-2026-0010", kind="case")) == 1


async def test_a_newer_version_is_accepted_with_a_new_receipt(gw, http) -> None:
    _, v1 = await post_json(http, gw, [case_item("HP-2026-0011", version=1)])
    status, v2 = await post_json(http, gw, [case_item("HP-2026-0011", version=2)])
    assert status == 202 and v2["items"][0]["receipt_id"] != v1["items"][0]["receipt_id"]


async def test_a_mixed_batch_is_400_with_field_errors_while_the_good_items_land(gw, http) -> None:
    bad_id = "110105194912310021"  # wrong check character
    items = [case_item("HP-2026-0020"), case_item("HP-2026-0021", id_no=bad_id), case_item("HP-2026-0022")]
    status, body = await post_json(http, gw, items)

    assert status == 400
    assert [i["status"] for i in body["items"]] == ["accepted", "quarantined", "accepted"]
    assert body["accepted"] == 2 and body["quarantined"] == 1
    (error,) = body["items"][1]["errors"]
    assert error["field"] == "applicant_id_no" and error["rule"] == "id_number_check"
    assert error["value"] == "110105********0021"  # masked as stored: first 6, last 4
    assert bad_id not in json.dumps(body)
    assert "GB 11643" in error["message"]
    assert await gw.store.list_records(case_no="HP-2026-0020")
    assert await gw.store.list_records(case_no="HP-2026-0022")
    assert not await gw.store.list_records(case_no="HP-2026-0021")
    quarantined = await gw.store.list_quarantine(system="hall_platform")
    assert [q["ref"] for q in quarantined] == [f"POST {JSON_URL} item 1"]


async def test_an_item_of_another_kind_than_the_endpoint_is_refused_while_the_others_land(gw, http) -> None:
    status, body = await post_json(http, gw, [case_item("HP-2026-0030"), acceptance_item("HP-2026-0030")])

    assert status == 400
    assert [i["status"] for i in body["items"]] == ["accepted", "quarantined"]
    (error,) = body["items"][1]["errors"]
    assert error["rule"] == "endpoint_kind" and error["value"] == "acceptance"
    assert "/api/v1/inbound/hall_platform/acceptance" in error["message"]
    # Through its own endpoint the same item is welcome.
    status, body = await post_json(http, gw, [acceptance_item("HP-2026-0030")],
                                   path="/api/v1/inbound/hall_platform/acceptance")
    assert status == 202 and body["items"][0]["records"][0]["kind"] == "acceptance"


async def test_a_kind_the_mapping_does_not_produce_is_400_naming_the_kinds_it_does(gw, http) -> None:
    status, body = await post_json(http, gw, [case_item("HP-2026-0040")],
                                   path="/api/v1/inbound/hall_platform/evaluation")
    assert status == 400
    assert body["error"]["kinds"] == ["case", "acceptance", "completion", "approval_result"]
    assert "does not produce 'evaluation'" in body["error"]["message"]


async def test_an_unknown_system_is_404_and_a_non_push_source_says_why(gw, http) -> None:
    status, body = await post_json(http, gw, [case_item("X")], path="/api/v1/inbound/nobody/case")
    assert status == 404 and body["error"]["push_systems"] == ["hall_json_only", "hall_platform"]
    status, body = await post_json(http, gw, [case_item("X")], path="/api/v1/inbound/county_files/case")
    assert status == 404 and "adapter 'filedrop'" in body["error"]["message"]


async def test_a_body_over_max_body_bytes_is_413_before_and_while_reading(gw, http) -> None:
    big = json.dumps([case_item(f"HP-BIG-{i:05d}") for i in range(400)]).encode()
    assert len(big) > gw.config.api.max_body_bytes
    async with http.post(gw.api.url + JSON_URL, data=big,
                         headers={**PUSH_AUTH, "Content-Type": "application/json"}) as r:
        assert r.status == 413
        assert "[api].max_body_bytes" in (await r.json())["error"]["message"]

    async def chunked():  # no Content-Length: aiohttp's client_max_size cuts it off
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    async with http.post(gw.api.url + JSON_URL, data=chunked(),
                         headers={**PUSH_AUTH, "Content-Type": "application/json"}) as r:
        assert r.status == 413
    assert not await gw.store.list_records(case_no="HP-BIG-00000")


async def test_more_items_than_max_items_is_413_and_nothing_lands(gw, http) -> None:
    items = [case_item(f"HP-MAX-{i}") for i in range(4)]
    status, body = await post_json(http, gw, items, path="/api/v1/inbound/hall_json_only/case")
    assert status == 413 and body["error"]["max_items"] == 3
    assert not await gw.store.list_records(case_no="HP-MAX-0")


async def test_an_unknown_content_type_is_415(gw, http) -> None:
    async with http.post(gw.api.url + JSON_URL, data=b"caseNo=1",
                         headers={**PUSH_AUTH, "Content-Type": "application/x-www-form-urlencoded"}) as r:
        assert r.status == 415
        assert (await r.json())["error"]["accepted"] == ["application/json", "application/xml", "text/xml"]
    # A system that takes JSON only refuses XML the same way.
    async with http.post(gw.api.url + "/api/v1/inbound/hall_json_only/case",
                         data=xml_records([case_item("HP-2026-0050")]),
                         headers={"Content-Type": "application/xml"}) as r:
        assert r.status == 415


async def test_invalid_utf8_and_broken_json_are_400_with_a_clear_message(gw, http) -> None:
    prefix = '[{"caseNo": "HP-2026-0060", "applicantName": "张'.encode()
    body = prefix + b"\xff\xfe" + b'"}]'
    async with http.post(gw.api.url + JSON_URL, data=body,
                         headers={**PUSH_AUTH, "Content-Type": "application/json"}) as r:
        assert r.status == 400
        message = (await r.json())["error"]["message"]
        assert "not valid UTF-8" in message and f"byte {len(prefix)} (ff fe" in message
    async with http.post(gw.api.url + JSON_URL, data=b'[{"caseNo": "HP-1",}]',
                         headers={**PUSH_AUTH, "Content-Type": "application/json"}) as r:
        assert r.status == 400
        error = (await r.json())["error"]
        assert "not valid JSON" in error["message"] and error["line"] == 1


async def test_json_in_a_named_charset_is_decoded(gw, http) -> None:
    body = json.dumps([case_item("HP-2026-0061")], ensure_ascii=False).encode("gb18030")
    async with http.post(gw.api.url + JSON_URL, data=body,
                         headers={**PUSH_AUTH, "Content-Type": "application/json; charset=GB18030"}) as r:
        assert r.status == 202
    rows = await gw.store.list_records(case_no="HP-2026-0061")
    assert rows[0]["record"]["data"]["applicant_name"] == "张三"


async def test_json_items_that_are_not_objects_are_refused_one_by_one(gw, http) -> None:
    status, body = await post_json(http, gw, [case_item("HP-2026-0062"), "not an object"])
    assert status == 400
    assert [i["status"] for i in body["items"]] == ["accepted", "quarantined"]
    assert "not an object" in body["items"][1]["errors"][0]["message"]


async def test_xml_items_land_like_json_ones(gw, http) -> None:
    xml = xml_records([case_item("HP-2026-0070"), case_item("HP-2026-0071")])
    async with http.post(gw.api.url + JSON_URL, data=xml, headers={**PUSH_AUTH, "Content-Type": "text/xml"}) as r:
        assert r.status == 202
        body = await r.json()
    assert body["accepted"] == 2
    rows = await gw.store.list_records(case_no="HP-2026-0071")
    assert rows[0]["record"]["data"]["applicant_name"] == "张三"


async def test_xml_with_external_entities_is_refused_and_reads_nothing(gw, http, tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE", encoding="utf-8")
    xxe = (f'<?xml version="1.0"?>\n<!DOCTYPE records [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
           "<records><record><dataType>CASE</dataType><caseNo>&xxe;</caseNo></record></records>").encode()
    async with http.post(gw.api.url + JSON_URL, data=xxe, headers={**PUSH_AUTH, "Content-Type": "application/xml"}) as r:
        assert r.status == 400
        text = await r.text()
    assert "TOP-SECRET-VALUE" not in text
    assert "entities" in json.loads(text)["error"]["message"]

    laughs = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
              + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
              + "]><records><record><caseNo>&i;</caseNo></record></records>").encode()
    async with http.post(gw.api.url + JSON_URL, data=laughs, headers={**PUSH_AUTH, "Content-Type": "text/xml"}) as r:
        assert r.status == 400
    assert await gw.store.list_records() == []
    assert await gw.store.list_quarantine() == []


async def test_xml_that_is_not_well_formed_is_400_with_its_position(gw, http) -> None:
    async with http.post(gw.api.url + JSON_URL, data=b"<records><record><caseNo>1</record></records>",
                         headers={**PUSH_AUTH, "Content-Type": "text/xml"}) as r:
        assert r.status == 400
        error = (await r.json())["error"]
    assert error["line"] == 1 and "not well-formed" in error["message"]


async def test_the_correlation_id_is_echoed_or_made_up_and_logged(gw, http, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.api.access")
    async with http.post(gw.api.url + JSON_URL, json=[case_item("HP-2026-0080")],
                         headers={**PUSH_AUTH, "X-Correlation-Id": "county-batch-42"}) as r:
        assert r.headers["X-Correlation-Id"] == "county-batch-42"
        assert (await r.json())["correlation_id"] == "county-batch-42"
    # The access line is a JSON object of its own, its fields keys of it (not JSON inside a message).
    (line,) = [json.loads(json_formatter().format(rec)) for rec in caplog.records if rec.name == "gateway.api.access"]
    assert line["event"] == "http request" and line["level"] == "info" and line["logger"] == "gateway.api.access"
    assert line["correlation_id"] == "county-batch-42" and line["status"] == 202
    assert line["route"] == "/api/v1/inbound/{system}/{kind}" and line["system"] == "hall_platform"
    assert line["accepted"] == 1
    async with http.get(gw.api.url + "/healthz", headers={"X-Correlation-Id": "bad id with spaces"}) as r:
        made_up = r.headers["X-Correlation-Id"]
    assert made_up != "bad id with spaces" and len(made_up) == 32


async def test_pushes_are_refused_with_503_once_the_gateway_is_stopping(gw, http) -> None:
    gw.stopping.set()
    status, body = await post_json(http, gw, [case_item("HP-2026-0090")])
    assert status == 503 and "nothing was received" in body["error"]["message"]
