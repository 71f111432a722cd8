"""Replies a real SOAP peer rarely produces, mocked with respx on zeep's httpx transport: HTML
error pages, truncated bodies, connection resets, SOAP 1.2 faults, fault-code overrides, DTDs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from gateway.adapters import Delivery, PermanentError, RetryableError
from gateway_adapters.soap import (
    PROVINCIAL_EXCHANGE_WSDL,
    PermanentSoapFault,
    RetryableSoapFault,
    SoapSink,
    SoapSinkConfig,
)
from gateway_adapters.soap._config import FaultPolicy
from gateway_adapters.soap._errors import classify

ENDPOINT = "http://exchange.test/exchange"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"


def exchange_config(wsdl: Path | str = "builtin:provincial-exchange.wsdl", **extra: Any) -> SoapSinkConfig:
    return SoapSinkConfig.model_validate(
        {
            "wsdl": str(wsdl),
            "endpoint": ENDPOINT,
            **extra,
            "push": {
                "operation": "service",
                "soap_headers": {"serviceId": "approval.result.push"},
                "request": {"Header": {"sender": "HALL", "receiver": "PROV", "sn": "{idempotency_key}"}},
                "body_at": "Body",
                "body_as": "xml",
                "response_xml_at": "Body",
                "status_path": "RESULT.STATUS",
                "message_path": "RESULT.DESC",
                "remote_id_path": "RESULT.DATA.RECEIPTNO",
            },
        }
    )


DELIVERY = Delivery(
    delivery_id=11,
    destination="province",
    idempotency_key="hall:approval_result:440300-2026-000009:1",
    kind="approval_result",
    record_key="440300-2026-000009",
    case_no="440300-2026-000009",
    body={"APPROVEDATAINFO": {"SBLSH": "440300-2026-000009", "BJJGDM": "6"}},
    attempt=3,
)


def soap11(body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP11}"><s:Body>{body}</s:Body></s:Envelope>'


def exchange_reply(result: str) -> str:
    from xml.sax.saxutils import escape

    return soap11(
        '<t:ExchangeMessageResponse xmlns:t="urn:gov-exchange:provincial:v1">'
        "<t:Header><t:sender>PROV</t:sender><t:receiver>HALL</t:receiver><t:sn>1</t:sn></t:Header>"
        f"<t:Body>{escape(result)}</t:Body></t:ExchangeMessageResponse>"
    )


async def send(config: SoapSinkConfig | None = None):
    sink = SoapSink("province", config or exchange_config())
    await sink.start()
    try:
        return await sink.deliver_one(DELIVERY)
    finally:
        await sink.close()


@respx.mock
async def test_a_well_formed_answer_is_read_from_the_xml_in_the_body_field():
    route = respx.post(ENDPOINT).respond(
        200, text=exchange_reply("<RESULT><STATUS>0</STATUS><DESC>ok</DESC><DATA><RECEIPTNO>P-9</RECEIPTNO></DATA></RESULT>"),
        headers={"Content-Type": "text/xml; charset=utf-8"},
    )
    receipt = await send()
    assert receipt.remote_id == "P-9" and receipt.detail == "RESULT.STATUS=0 ok"
    sent = route.calls.last.request
    assert b"serviceId" in sent.content and b"hall:approval_result:440300-2026-000009:1" in sent.content
    assert b"&lt;APPROVEDATAINFO&gt;&lt;SBLSH&gt;440300-2026-000009" in sent.content


@respx.mock
async def test_an_html_502_page_from_a_proxy_is_retryable_and_quoted():
    respx.post(ENDPOINT).respond(
        502, html="<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
    )
    with pytest.raises(RetryableError) as caught:
        await send()
    message = str(caught.value)
    assert caught.value.status == 502
    assert "HTTP 502" in message and "not a SOAP response (Content-Type text/html)" in message
    assert "502 Bad Gateway" in message and "operation 'service' at http://exchange.test/exchange" in message
    assert "(delivery 11: approval_result 440300-2026-000009, case 440300-2026-000009, attempt 3)" in message


@respx.mock
async def test_an_html_login_page_with_status_200_is_not_taken_for_an_answer():
    respx.post(ENDPOINT).respond(200, html="<html><body>请登录统一身份认证平台</body></html>")
    with pytest.raises(RetryableError, match="HTTP 200: not a SOAP response"):
        await send()


@respx.mock
async def test_a_truncated_body_is_retryable():
    whole = exchange_reply("<RESULT><STATUS>0</STATUS><DESC>ok</DESC></RESULT>")
    respx.post(ENDPOINT).respond(200, text=whole[: len(whole) // 2], headers={"Content-Type": "text/xml"})
    with pytest.raises(RetryableError, match="not well-formed XML"):
        await send()


@respx.mock
async def test_a_connection_reset_is_retryable():
    respx.post(ENDPOINT).mock(side_effect=httpx.ReadError("[Errno 104] Connection reset by peer"))
    with pytest.raises(RetryableError, match=r"ReadError: \[Errno 104\] Connection reset by peer"):
        await send()


@respx.mock
async def test_a_connection_closed_mid_body_is_retryable():
    respx.post(ENDPOINT).mock(
        side_effect=httpx.RemoteProtocolError("peer closed connection without sending complete message body")
    )
    with pytest.raises(RetryableError, match="RemoteProtocolError"):
        await send()


@respx.mock
async def test_a_connect_timeout_is_retryable_and_names_the_limits():
    respx.post(ENDPOINT).mock(side_effect=httpx.ConnectTimeout("timed out"))
    with pytest.raises(RetryableError, match=r"connect timeout \(connect 5s, read 30s, total 60s\)"):
        await send()


@pytest.mark.parametrize(
    ("status", "retryable"), [(404, False), (401, False), (429, True), (503, True), (408, True)]
)
@respx.mock
async def test_http_errors_without_soap_are_classified_by_status(status: int, retryable: bool):
    respx.post(ENDPOINT).respond(status, text=f"status {status}", headers={"Content-Type": "text/plain"})
    with pytest.raises(RetryableError if retryable else PermanentError) as caught:
        await send()
    assert caught.value.status == status and caught.value.retryable is retryable


def soap11_fault(code: str, text: str, nsdecl: str = "") -> str:
    return soap11(f"<s:Fault {nsdecl}><faultcode>{code}</faultcode><faultstring>{text}</faultstring></s:Fault>")


@pytest.mark.parametrize(
    ("code", "nsdecl", "permanent"),
    [
        ("s:Client", "", True),
        ("s:Client.Validation", "", True),
        ("s:Server", "", False),
        ("s:MustUnderstand", "", True),
        ("wsse:FailedAuthentication", 'xmlns:wsse="urn:wsse"', True),
        ("wsse:MessageExpired", 'xmlns:wsse="urn:wsse"', False),
        ("x:SomethingLocal", 'xmlns:x="urn:x"', False),
    ],
)
@respx.mock
async def test_soap11_fault_codes_are_classified(code: str, nsdecl: str, permanent: bool):
    respx.post(ENDPOINT).respond(500, text=soap11_fault(code, "说明文字", nsdecl), headers={"Content-Type": "text/xml"})
    with pytest.raises(PermanentSoapFault if permanent else RetryableSoapFault) as caught:
        await send()
    assert caught.value.fault_code == code and caught.value.fault_text == "说明文字"


@respx.mock
async def test_configured_fault_codes_override_the_defaults():
    respx.post(ENDPOINT).respond(500, text=soap11_fault("s:Client.Busy", "稍后"), headers={"Content-Type": "text/xml"})
    config = exchange_config(faults={"retryable_codes": ["Client.Busy"]})
    with pytest.raises(RetryableSoapFault):
        await send(config)


@pytest.fixture
def soap12_wsdl(tmp_path: Path) -> Path:
    """The shipped WSDL with a SOAP 1.2 binding, as some provinces publish it."""
    text = PROVINCIAL_EXCHANGE_WSDL.read_text(encoding="utf-8").replace(
        "http://schemas.xmlsoap.org/wsdl/soap/", "http://schemas.xmlsoap.org/wsdl/soap12/"
    )
    path = tmp_path / "exchange-soap12.wsdl"
    path.write_text(text, encoding="utf-8")
    return path


def soap12_fault(code: str, subcode: str | None, text: str) -> str:
    sub = f"<e:Subcode><e:Value xmlns:p='urn:province'>{subcode}</e:Value></e:Subcode>" if subcode else ""
    return (
        f'<e:Envelope xmlns:e="{SOAP12}"><e:Body><e:Fault><e:Code><e:Value>{code}</e:Value>{sub}</e:Code>'
        f'<e:Reason><e:Text xml:lang="zh">{text}</e:Text></e:Reason></e:Fault></e:Body></e:Envelope>'
    )


@pytest.mark.parametrize(
    ("code", "subcode", "http_status", "permanent"),
    [("e:Sender", None, 400, True), ("e:Receiver", None, 500, False), ("e:Sender", "p:Throttled", 400, True)],
)
@respx.mock
async def test_soap12_sender_faults_are_permanent_and_receiver_faults_retryable(
    soap12_wsdl, code, subcode, http_status, permanent
):
    respx.post(ENDPOINT).respond(
        http_status, text=soap12_fault(code, subcode, "拒绝"), headers={"Content-Type": "application/soap+xml"}
    )
    with pytest.raises(PermanentSoapFault if permanent else RetryableSoapFault) as caught:
        await send(exchange_config(soap12_wsdl))
    assert caught.value.fault_code == code and "拒绝" in str(caught.value)


@respx.mock
async def test_a_subcode_named_in_the_policy_decides_over_its_sender_code(soap12_wsdl):
    respx.post(ENDPOINT).respond(
        400, text=soap12_fault("e:Sender", "p:Throttled", "限流"), headers={"Content-Type": "application/soap+xml"}
    )
    with pytest.raises(RetryableSoapFault):
        await send(exchange_config(soap12_wsdl, faults={"retryable_codes": ["Throttled"]}))


@respx.mock
async def test_a_response_with_a_dtd_is_refused():
    evil = (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + soap11("<r>&x;</r>").split("?>", 1)[1]
    )
    respx.post(ENDPOINT).respond(200, text=evil, headers={"Content-Type": "text/xml"})
    with pytest.raises(PermanentError, match="DTD"):
        await send()


@respx.mock
async def test_a_dtd_inside_the_business_xml_of_the_body_field_is_refused():
    respx.post(ENDPOINT).respond(
        200,
        text=exchange_reply('<!DOCTYPE RESULT [<!ENTITY x "boom">]><RESULT><STATUS>&x;</STATUS></RESULT>'),
        headers={"Content-Type": "text/xml"},
    )
    with pytest.raises(RetryableError, match="DOCTYPE"):
        await send()


@respx.mock
async def test_a_body_field_without_xml_is_retryable_since_the_verdict_is_unknown():
    respx.post(ENDPOINT).respond(200, text=exchange_reply("处理中"), headers={"Content-Type": "text/xml"})
    with pytest.raises(RetryableError, match="response field 'Body' is not well-formed XML"):
        await send()


@respx.mock
async def test_a_soap_answer_labelled_text_html_is_still_read():
    respx.post(ENDPOINT).respond(
        200,
        text=exchange_reply("<RESULT><STATUS>0</STATUS><DESC>ok</DESC><DATA><RECEIPTNO>P-1</RECEIPTNO></DATA></RESULT>"),
        headers={"Content-Type": "text/html;charset=UTF-8"},
    )
    assert (await send()).remote_id == "P-1"


@respx.mock
async def test_plain_xml_that_is_not_a_soap_envelope_is_refused():
    respx.post(ENDPOINT).respond(
        200, text="<error><code>AUTH</code><msg>token expired</msg></error>", headers={"Content-Type": "text/xml"}
    )
    with pytest.raises(RetryableError, match=r"HTTP 200: not a SOAP response .*token expired"):
        await send()


def test_a_reset_over_https_mentions_that_tls_1_3_refuses_client_certificates_that_way():
    reset = httpx.ReadError("[Errno 104] Connection reset by peer")
    reset.__cause__ = ConnectionResetError(104, "Connection reset by peer")
    over_tls = classify(reset, where="SOAP system 'x' at https://127.0.0.1:1/records", policy=FaultPolicy(),
                        timeouts="1s")
    plain = classify(reset, where="SOAP system 'x' at http://127.0.0.1:1/records", policy=FaultPolicy(),
                     timeouts="1s")
    assert isinstance(over_tls, RetryableError) and isinstance(plain, RetryableError)
    assert "refuses a missing or untrusted client certificate" in str(over_tls)
    assert "client certificate" not in str(plain)
