"""SOAP 1.1 inbound: the WSDL is served and usable by a real SOAP client; receipts, Client and Server faults."""

from __future__ import annotations

import asyncio
from typing import Any

import requests
import zeep
from lxml import etree
from test_api_support import PUSH_AUTH, case_item, gw_fixture, http_fixture, write_gateway_dir  # noqa: F401

from gateway.api._soap import SOAP11, SOAP12, TNS
from gateway.app import Gateway
from gateway.config import load_config


def envelope(items: list[dict[str, Any]], kind: str | None = "case", soap_ns: str = SOAP11,
             doctype: str = "") -> bytes:
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>{doctype}',
             f'<soapenv:Envelope xmlns:soapenv="{soap_ns}" xmlns:gw="{TNS}"><soapenv:Body><gw:submitRecords>']
    if kind:
        parts.append(f"<gw:kind>{kind}</gw:kind>")
    for item in items:
        parts.append("<gw:item>" + "".join(f"<{k}>{v}</{k}>" for k, v in item.items()) + "</gw:item>")
    parts.append("</gw:submitRecords></soapenv:Body></soapenv:Envelope>")
    return "".join(parts).encode("utf-8")


def parse(text: bytes) -> etree._Element:
    return etree.fromstring(text)


def fault_of(doc: etree._Element) -> tuple[str, str]:
    fault = doc.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert fault is not None
    return fault.findtext("faultcode"), fault.findtext("faultstring")


async def soap_post(http, gw: Gateway, body: bytes, system: str = "hall_platform") -> tuple[int, etree._Element]:
    async with http.post(f"{gw.api.url}/soap/{system}", data=body,
                         headers={**PUSH_AUTH, "Content-Type": "text/xml; charset=utf-8",
                                  "SOAPAction": f"{TNS}#submitRecords"}) as r:
        return r.status, parse(await r.read())


async def test_the_wsdl_is_served_with_this_endpoints_address(gw, http) -> None:
    async with http.get(f"{gw.api.url}/soap/hall_platform?wsdl") as r:
        assert r.status == 200 and r.content_type == "text/xml"
        wsdl = parse(await r.read())
    ns = {"wsdl": "http://schemas.xmlsoap.org/wsdl/", "soap": "http://schemas.xmlsoap.org/wsdl/soap/"}
    (address,) = wsdl.xpath("//wsdl:service/wsdl:port/soap:address/@location", namespaces=ns)
    assert address == f"{gw.api.url}/soap/hall_platform"
    assert wsdl.xpath("//wsdl:portType/wsdl:operation/@name", namespaces=ns) == ["submitRecords"]
    async with http.get(f"{gw.api.url}/soap/county_files?wsdl") as r:
        assert r.status == 404
    async with http.get(f"{gw.api.url}/soap/hall_json_only?wsdl") as r:
        assert r.status == 404  # that system accepts JSON only


def _zeep_submit(wsdl_url: str, items: list[dict[str, Any]]) -> Any:
    session = requests.Session()
    session.headers.update(PUSH_AUTH)
    client = zeep.Client(wsdl_url, settings=zeep.Settings(forbid_external=True, strict=True),
                         transport=zeep.Transport(session=session))
    elements = []
    for item in items:
        fields = []
        for key, value in item.items():
            el = etree.Element(key)
            el.text = str(value)
            fields.append(el)
        elements.append({"_value_1": fields})
    return client.service.submitRecords(kind="case", item=elements)


async def test_a_soap_client_built_from_the_wsdl_submits_records_and_gets_receipts(gw, http) -> None:
    items = [case_item("SOAP-2026-0001"), case_item("SOAP-2026-0002")]
    # zeep is synchronous: run it in a thread while this loop serves the gateway.
    result = await asyncio.to_thread(_zeep_submit, f"{gw.api.url}/soap/hall_platform?wsdl", items)

    assert result.accepted == 2 and result.quarantined == 0
    assert [i.status for i in result.item] == ["accepted", "accepted"]
    rows = await gw.store.list_records(case_no="SOAP-2026-0002", kind="case")
    assert rows[0]["receipt_id"] == result.item[1].receiptId
    assert rows[0]["ref"] == "POST /soap/hall_platform item 1"
    assert rows[0]["record"]["data"]["applicant_name"] == "张三"

    again = await asyncio.to_thread(_zeep_submit, f"{gw.api.url}/soap/hall_platform?wsdl", items[:1])
    assert again.duplicates == 1 and again.item[0].receiptId == result.item[0].receiptId


async def test_a_batch_with_a_bad_item_is_a_client_fault_listing_every_item_while_good_ones_land(gw, http) -> None:
    bad = case_item("SOAP-2026-0011", id_no="110105194912310021")
    status, doc = await soap_post(http, gw, envelope([case_item("SOAP-2026-0010"), bad]))

    assert status == 500
    code, message = fault_of(doc)
    assert code == "soapenv:Client" and "1 of 2 items were refused" in message
    ns = {"gw": TNS}
    statuses = doc.xpath("//detail/gw:submitRecordsFault/gw:results/gw:item/gw:status/text()", namespaces=ns)
    assert statuses == ["accepted", "quarantined"]
    assert doc.xpath("//gw:item[gw:index=1]/gw:error/gw:rule/text()", namespaces=ns) == ["id_number_check"]
    assert doc.xpath("//gw:item[gw:index=1]/gw:error/gw:value/text()", namespaces=ns) == ["110105********0021"]
    assert await gw.store.list_records(case_no="SOAP-2026-0010", kind="case")
    assert not await gw.store.list_records(case_no="SOAP-2026-0011")


async def test_entity_declarations_in_an_envelope_are_a_client_fault(gw, http) -> None:
    doctype = '<!DOCTYPE soapenv:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    status, doc = await soap_post(http, gw, envelope([{"caseNo": "&xxe;"}], doctype=doctype))
    code, message = fault_of(doc)
    assert status == 500 and code == "soapenv:Client" and "entities" in message
    assert b"root:" not in etree.tostring(doc)
    assert await gw.store.list_records() == []


async def test_malformed_requests_are_client_faults_that_say_what_is_wrong(gw, http) -> None:
    status, doc = await soap_post(http, gw, b"<soapenv:Envelope xmlns:soapenv='" + SOAP11.encode() + b"'>")
    assert fault_of(doc)[0] == "soapenv:Client" and "well-formed" in fault_of(doc)[1]
    status, doc = await soap_post(http, gw, envelope([case_item("S-12")], soap_ns=SOAP12))
    assert fault_of(doc)[0] == "soapenv:VersionMismatch"
    status, doc = await soap_post(http, gw, envelope([]))
    assert "carries no <item>" in fault_of(doc)[1]
    status, doc = await soap_post(http, gw, envelope([case_item("S-13")], kind="evaluation"))
    assert "does not produce 'evaluation'" in fault_of(doc)[1]
    status, doc = await soap_post(http, gw, envelope([case_item("S-14")]), system="nobody")
    assert status == 404 and fault_of(doc)[0] == "soapenv:Client"


async def test_a_store_failure_is_a_server_fault_and_nothing_is_committed(tmp_path, http) -> None:
    gw = Gateway(load_config(write_gateway_dir(tmp_path, sinks=False)))
    await gw.start()
    try:
        await gw.store.close()  # the database goes away under a running gateway
        status, doc = await soap_post(http, gw, envelope([case_item("SOAP-2026-0020")]))
        code, message = fault_of(doc)
        assert status == 500 and code == "soapenv:Server"
        assert "nothing of this request was committed" in message
        async with http.get(gw.api.url + "/readyz") as r:
            assert r.status == 503 and (await r.json())["store"]["writable"] is False
    finally:
        await gw.stop()
