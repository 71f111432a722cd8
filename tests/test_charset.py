"""The charset rule: a declared charset is honoured or the body refused, never read into mojibake."""

from __future__ import annotations

import json

import pytest
from test_api_support import PUSH_AUTH, case_item, gw_fixture, http_fixture  # noqa: F401

from gateway.formats import CharsetRefused, decode_body, xml_body_bytes

URL = "/api/v1/inbound/hall_platform/case"


def refusal(body: bytes, charset: str | None) -> CharsetRefused:
    with pytest.raises(CharsetRefused) as caught:
        decode_body(body, charset)
    return caught.value


def test_utf8_is_read_with_or_without_a_charset_and_its_bom_is_skipped() -> None:
    body = '{"申请人": "张三"}'.encode()
    assert decode_body(body, None) == decode_body(body, "UTF-8") == decode_body(body, "utf8") == '{"申请人": "张三"}'
    assert decode_body(b"\xef\xbb\xbf" + body, None) == '{"申请人": "张三"}'


def test_gb18030_and_its_subsets_are_honoured() -> None:
    body = '{"申请人": "张三"}'.encode("gb18030")
    assert decode_body(body, "GBK") == decode_body(body, "gb2312") == decode_body(body, "GB18030") == '{"申请人": "张三"}'


def test_utf8_declared_as_latin1_is_refused_not_stored_as_mojibake() -> None:
    refused = refusal('{"申请人": "张三"}'.encode(), "ISO-8859-1")
    assert (refused.status, refused.rule) == (415, "charset_unsupported")
    assert "declares charset=ISO-8859-1 and holds non-ASCII bytes" in refused.message
    assert "valid UTF-8, so it probably is UTF-8 declared wrongly" in refused.message


def test_an_ascii_body_is_read_alike_in_every_ascii_compatible_charset() -> None:
    body = b'{"caseNo": "HP-1"}'
    assert decode_body(body, "latin-1") == decode_body(body, "windows-1252") == decode_body(body, "us-ascii")


def test_other_charsets_and_unknown_names_are_refused_and_bad_bytes_are_400() -> None:
    assert refusal(b'{"a": 1}', "utf-16").status == 415
    assert refusal(b'{"a": 1}', "klingon").message.startswith("unknown charset 'klingon'")
    bad = refusal(b'{"a": "\xff"}', "utf-8")
    assert (bad.status, bad.rule) == (400, "encoding") and "byte 7 (ff" in bad.message
    assert refusal(b'{"a": "\xe4"}', "us-ascii").rule == "charset_unsupported"


def test_an_xml_body_follows_the_same_rule_and_its_declaration_must_agree() -> None:
    doc = "<records><record><a>张三</a></record></records>"
    assert xml_body_bytes(doc.encode("gb18030"), "GBK") == doc.encode()  # decoded and handed over as UTF-8
    declared = ('<?xml version="1.0" encoding="GB18030"?>' + doc).encode("gb18030")
    assert xml_body_bytes(declared, "gbk") == declared  # header and declaration agree
    with pytest.raises(CharsetRefused, match="says charset=latin-1 but the XML declares encoding=GB18030"):
        xml_body_bytes(declared, "latin-1")
    with pytest.raises(CharsetRefused, match="holds non-ASCII bytes"):
        xml_body_bytes(doc.encode(), "latin-1")
    assert xml_body_bytes(doc.encode(), None) == doc.encode()


# --------------------------------------------------------------------------- over the push API


async def test_a_utf8_push_declared_latin1_is_415_and_nothing_is_stored(gw, http) -> None:
    body = json.dumps([case_item("HP-CS-0001")], ensure_ascii=False).encode()
    async with http.post(gw.api.url + URL, data=body,
                         headers={**PUSH_AUTH, "Content-Type": "application/json; charset=ISO-8859-1"}) as r:
        assert r.status == 415
        error = (await r.json())["error"]
    assert error["rule"] == "charset_unsupported" and "charset=utf-8" in error["message"]
    assert not await gw.store.list_records(case_no="HP-CS-0001")
    # the same body declared as what it is lands, with its Chinese intact
    async with http.post(gw.api.url + URL, data=body,
                         headers={**PUSH_AUTH, "Content-Type": "application/json; charset=utf-8"}) as r:
        assert r.status == 202
    (row,) = await gw.store.list_records(case_no="HP-CS-0001")
    assert row["record"]["data"]["applicant_name"] == "张三"


async def test_pushed_items_that_break_a_reading_rule_are_quarantined_one_by_one(gw, http) -> None:
    good = json.dumps(case_item("HP-CS-0010"), ensure_ascii=False)
    duplicate = good.replace('"caseNo": "HP-CS-0010"', '"caseNo": "HP-CS-0011", "caseNo": "HP-CS-0012"')
    deep = '{"caseNo": "HP-CS-0013", "x": ' + "[" * 5000 + "]" * 5000 + "}"
    huge_version = json.dumps(case_item("HP-CS-0014"), ensure_ascii=False).replace(
        '"version": 1', '"version": 18446744073709551617')
    body = f"[{good}, {duplicate}, {deep}, {huge_version}]".encode()
    async with http.post(gw.api.url + URL, data=body, headers={**PUSH_AUTH, "Content-Type": "application/json"}) as r:
        assert r.status == 400
        answer = await r.json()
    assert [i["status"] for i in answer["items"]] == ["accepted", "quarantined", "quarantined", "quarantined"]
    assert [i["errors"][0]["rule"] for i in answer["items"][1:]] == [
        "json_duplicate_key", "json_depth", "json_integer_range"
    ]
    assert answer["items"][1]["errors"][0]["message"].startswith("the member 'caseNo' appears twice")
    assert await gw.store.list_records(case_no="HP-CS-0010")
    quarantined = await gw.store.list_quarantine(system="hall_platform")
    assert {q["errors"][0]["rule"] for q in quarantined} == {"json_duplicate_key", "json_depth", "json_integer_range"}
