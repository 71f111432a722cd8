"""SOAP sink against the real spyne test service on loopback: receipts from RESULT, business
refusals, SOAP faults classified as permanent or retryable, slow answers, and the provincial
exchange envelope built purely from configuration."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from soap_server import Control, SoapTestServer

from gateway.adapters import Delivery, PermanentError, RetryableError
from gateway_adapters.soap import PermanentSoapFault, RetryableSoapFault, SoapSink, SoapSinkConfig


@pytest.fixture
def server():
    with SoapTestServer(Control()) as running:
        yield running


@pytest.fixture
def records_wsdl(server: SoapTestServer, tmp_path: Path) -> Path:
    return server.write_records_wsdl(tmp_path / "records.wsdl")


def submit_config(wsdl: Path, endpoint: str, timeouts: dict[str, float] | None = None, **push: Any) -> SoapSinkConfig:
    settings: dict[str, Any] = {
        "operation": "SubmitRecord",
        "request": {"idempotencyKey": "{idempotency_key}"},
        "status_path": "STATUS",
        "success_values": ["0"],
        "retryable_status_values": ["9"],
        "message_path": "DESC",
        "remote_id_path": "DATA.receiptNo",
    }
    settings.update(push)
    return SoapSinkConfig.model_validate(
        {"wsdl": str(wsdl), "endpoint": endpoint, "timeouts": timeouts or {"read": 5, "total": 10}, "push": settings}
    )


def delivery(body: Any, delivery_id: int = 1, key: str = "county-hall:case:440300-2026-000001:1") -> Delivery:
    return Delivery(
        delivery_id=delivery_id,
        destination="market-supervision",
        idempotency_key=key,
        kind="approval_result",
        record_key="440300-2026-000001",
        case_no="440300-2026-000001",
        body=body,
        attempt=1,
    )


CASE = {"caseNo": "440300-2026-000001", "kind": "approval_result", "applicant": "深圳市某某科技有限公司",
        "decision": "准予许可"}


@pytest.fixture
async def sink(server, records_wsdl):
    started = SoapSink("market-supervision", submit_config(records_wsdl, server.records_url))
    await started.start()
    yield started
    await started.close()


async def test_a_delivery_returns_the_counterparts_receipt_and_message(server, sink):
    (result,) = await sink.deliver([delivery(CASE)])

    assert result.error is None
    assert result.receipt.remote_id == "R-000001"
    assert result.receipt.detail == "STATUS=0 接收成功"
    stored = server.control.submissions["county-hall:case:440300-2026-000001:1"]
    assert stored["applicant"] == "深圳市某某科技有限公司" and stored["decision"] == "准予许可"


async def test_a_repeated_delivery_carries_the_same_idempotency_key(server, sink):
    first = await sink.deliver_one(delivery(CASE))
    again = await sink.deliver_one(delivery(CASE))
    assert first.remote_id == again.remote_id and len(server.control.submissions) == 1


async def test_a_refusal_in_the_result_status_is_permanent_and_keeps_the_description(sink):
    (result,) = await sink.deliver([delivery({**CASE, "caseNo": "REJECT-7"})])
    assert isinstance(result.error, PermanentError)
    assert "STATUS = '1'" in str(result.error) and "办件 REJECT-7 的事项编码不存在" in str(result.error)
    assert "delivery 1: approval_result 440300-2026-000001, case 440300-2026-000001, attempt 1" in str(result.error)


async def test_a_busy_status_listed_as_retryable_is_retried(sink):
    (result,) = await sink.deliver([delivery({**CASE, "caseNo": "BUSY-1"})])
    assert isinstance(result.error, RetryableError) and "系统繁忙" in str(result.error)


async def test_a_client_fault_is_permanent_and_a_server_fault_retryable(server, sink):
    server.control.fault_mode = "client"
    (client,) = await sink.deliver([delivery(CASE)])
    server.control.fault_mode = "server"
    (busy,) = await sink.deliver([delivery(CASE)])

    assert isinstance(client.error, PermanentSoapFault) and not client.error.retryable
    assert client.error.fault_code == "soap11env:Client.InvalidRequest"
    assert client.error.fault_text == "请求参数不符合规范: caseNo 格式错误"
    assert isinstance(busy.error, RetryableSoapFault) and busy.error.retryable
    assert busy.error.fault_code == "soap11env:Server.Unavailable"
    assert "数据库暂时不可用" in str(busy.error)


async def test_each_delivery_of_a_batch_gets_its_own_result(sink):
    results = await sink.deliver(
        [delivery(CASE, 1, "k1"), delivery({**CASE, "caseNo": "REJECT-2"}, 2, "k2"), delivery(CASE, 3, "k3")]
    )
    assert [r.delivery_id for r in results] == [1, 2, 3]
    assert [r.error is None for r in results] == [True, False, True]


async def test_an_answer_slower_than_the_read_timeout_is_retryable(server, records_wsdl):
    server.control.delay_seconds = 1.5
    slow = SoapSink("market-supervision", submit_config(records_wsdl, server.records_url, {"read": 0.3, "total": 10}))
    await slow.start()
    try:
        began = time.monotonic()
        (result,) = await slow.deliver([delivery(CASE)])
        elapsed = time.monotonic() - began
    finally:
        await slow.close()
    assert isinstance(result.error, RetryableError)
    assert "read timeout" in str(result.error) and "read 0.3s" in str(result.error)
    assert elapsed < 1.2


async def test_the_total_deadline_bounds_a_call_whatever_the_read_timeout(server, records_wsdl):
    server.control.delay_seconds = 1.5
    slow = SoapSink("market-supervision", submit_config(records_wsdl, server.records_url, {"read": 30, "total": 0.4}))
    await slow.start()
    try:
        with pytest.raises(RetryableError, match="total deadline"):
            await slow.deliver_one(delivery(CASE))
    finally:
        await slow.close()


async def test_a_refused_connection_is_retryable(records_wsdl):
    with SoapTestServer(Control()) as gone:
        url = gone.records_url
    dead = SoapSink("market-supervision", submit_config(records_wsdl, url))
    await dead.start()
    try:
        with pytest.raises(RetryableError, match="ConnectError"):
            await dead.deliver_one(delivery(CASE))
    finally:
        await dead.close()


async def test_a_body_that_does_not_fit_the_wsdl_is_permanent(sink):
    with pytest.raises(PermanentError, match="does not fit the WSDL.*licenceNo"):
        await sink.deliver_one(delivery({**CASE, "licenceNo": "X-1"}))


async def test_a_body_field_that_the_template_also_sets_is_a_configuration_error(sink):
    with pytest.raises(PermanentError, match="idempotencyKey come both from the request template and the body"):
        await sink.deliver_one(delivery({**CASE, "idempotencyKey": "mine"}))


def exchange_config(endpoint: str, service_id: str = "approval.result.push") -> SoapSinkConfig:
    return SoapSinkConfig.model_validate(
        {
            "wsdl": "builtin:provincial-exchange.wsdl",
            "endpoint": endpoint,
            "push": {
                "operation": "service",
                "soap_headers": {"serviceId": service_id},
                "request": {
                    "Header": {
                        "sender": "HALL-440300",
                        "receiver": "SCJG-440300",
                        "cc": "",
                        "flow": "approval-to-supervision",
                        "item": "{kind}",
                        "sn": "{idempotency_key}",
                        "securityType": "0",
                        "operator": "exchange-gateway",
                    }
                },
                "body_at": "Body",
                "body_as": "xml",
                "response_xml_at": "Body",
                "status_path": "RESULT.STATUS",
                "message_path": "RESULT.DESC",
                "remote_id_path": "RESULT.DATA.RECEIPTNO",
            },
        }
    )


APPROVAL = {
    "APPROVEDATAINFO": {
        "SBLSH": "440300-2026-000001",
        "SXBM": "11440300MB2C",
        "BJJGDM": "6",
        "XK_XDR_MC": "深圳市某某科技有限公司",
        "XK_JDRQ": "2026-10-12",
    }
}


async def test_a_delivery_in_the_provincial_exchange_envelope_is_configuration_only(server):
    sink = SoapSink("provincial-exchange", exchange_config(server.exchange_url))
    await sink.start()
    try:
        receipt = await sink.deliver_one(delivery(APPROVAL, key="hall:approval_result:440300-2026-000001:2"))
    finally:
        await sink.close()

    assert receipt.remote_id == "GD-000001" and receipt.detail == "RESULT.STATUS=0 接收成功"
    (exchange,) = server.control.exchanges
    assert exchange["serviceId"] == "approval.result.push"
    assert exchange["header"]["sn"] == "hall:approval_result:440300-2026-000001:2"
    assert exchange["header"]["item"] == "approval_result" and exchange["header"]["receiver"] == "SCJG-440300"
    body = etree.fromstring(exchange["body"].encode())
    assert body.tag == "APPROVEDATAINFO" and body.findtext("XK_XDR_MC") == "深圳市某某科技有限公司"


async def test_a_refusal_inside_the_exchange_result_is_permanent(server):
    sink = SoapSink("provincial-exchange", exchange_config(server.exchange_url))
    await sink.start()
    try:
        with pytest.raises(PermanentError, match="RESULT.STATUS = '2'.*报文格式错误"):
            await sink.deliver_one(delivery({"OTHERROOT": {"A": "1"}}))
    finally:
        await sink.close()


async def test_an_unknown_service_id_is_a_permanent_client_fault(server):
    sink = SoapSink("provincial-exchange", exchange_config(server.exchange_url, service_id="no.such.service"))
    await sink.start()
    try:
        with pytest.raises(PermanentSoapFault, match="未知的 serviceId"):
            await sink.deliver_one(delivery(APPROVAL))
    finally:
        await sink.close()
