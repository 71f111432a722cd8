"""WS-Security and TLS against the real test service: RSA-SHA256 signatures the service verifies
with xmlsec (and refuses when altered, missing or by another key), UsernameToken digests,
mutual TLS with client certificates, signed responses, and secrets kept out of the configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import xmlsec
from lxml import etree
from pydantic import ValidationError
from soap_server import Control, Pki, SoapTestServer, generate_pki, server_tls_context

from gateway.adapters import Delivery, PermanentError, RetryableError
from gateway_adapters.soap import PermanentSoapFault, SoapSetupError, SoapSink, SoapSinkConfig
from gateway_adapters.soap._wsse import X509Signer, verify_response

PASSPHRASE_ENV = "SOAP_TEST_CLIENT_KEY_PASSPHRASE"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return generate_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def passphrase_in_environment(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, pki.client_key_passphrase)


@pytest.fixture
def server():
    with SoapTestServer(Control()) as running:
        yield running


def config(wsdl: Path, endpoint: str, **connection: Any) -> SoapSinkConfig:
    return SoapSinkConfig.model_validate(
        {
            "wsdl": str(wsdl),
            "endpoint": endpoint,
            "timeouts": {"connect": 2, "read": 5, "total": 10},
            **connection,
            "push": {
                "operation": "SubmitRecord",
                "request": {"idempotencyKey": "{idempotency_key}"},
                "status_path": "STATUS",
                "message_path": "DESC",
                "remote_id_path": "DATA.receiptNo",
            },
        }
    )


def signature(pki: Pki, *, rogue: bool = False) -> dict[str, Any]:
    if rogue:
        return {"key_file": str(pki.rogue_key), "cert_file": str(pki.rogue_cert)}
    return {"key_file": str(pki.client_key), "cert_file": str(pki.client_cert),
            "key_passphrase": {"env": PASSPHRASE_ENV}}


DELIVERY = Delivery(
    delivery_id=7,
    destination="market-supervision",
    idempotency_key="hall:approval_result:440300-2026-000001:1",
    kind="approval_result",
    record_key="440300-2026-000001",
    case_no="440300-2026-000001",
    body={"caseNo": "440300-2026-000001", "kind": "approval_result", "applicant": "张三", "decision": "准予许可"},
    attempt=1,
)


async def deliver(cfg: SoapSinkConfig):
    sink = SoapSink("market-supervision", cfg)
    await sink.start()
    try:
        return await sink.deliver_one(DELIVERY)
    finally:
        await sink.close()


def test_lxml_and_xmlsec_are_built_on_the_same_libxml2_and_sign_and_verify(pki):
    # Two copies of libxml2 of different versions in one process corrupt documents that cross between them.
    assert etree.LIBXML_VERSION == xmlsec.get_libxml_version() == xmlsec.get_libxml_compiled_version()
    signer = X509Signer(pki.client_key.read_bytes(), pki.client_cert.read_bytes(), pki.client_key_passphrase)
    key = xmlsec.Key.from_memory(pki.client_cert.read_bytes(), xmlsec.KeyFormat.CERT_PEM, None)
    for index in range(200):
        envelope = etree.fromstring(
            '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            f'<x:Case xmlns:x="urn:t"><x:No>{index}</x:No><x:Name>申请人{index}</x:Name></x:Case>'
            "</s:Body></s:Envelope>"
        )
        signer.sign(envelope)
        verify_response(etree.fromstring(etree.tostring(envelope)), key)
    assert envelope.find(".//{http://www.w3.org/2000/09/xmldsig#}SignatureMethod").get("Algorithm") == RSA_SHA256


@pytest.mark.parametrize(
    ("method", "digest", "reference", "method_uri", "digest_uri"),
    [
        ("rsa-sha256", "sha256", "binary_security_token", RSA_SHA256, SHA256),
        ("rsa-sha512", "sha512", "issuer_serial", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
         "http://www.w3.org/2001/04/xmlenc#sha512"),
    ],
)
async def test_a_signed_request_is_verified_by_the_service(
    server, pki, tmp_path, method, digest, reference, method_uri, digest_uri
):
    server.control.require_signature = True
    server.control.client_cert_pem = pki.client_cert.read_bytes()
    wsdl = server.write_records_wsdl(tmp_path / "records.wsdl")
    wsse = {"signature": {**signature(pki), "signature_method": method, "digest_method": digest,
                          "key_reference": reference}}

    receipt = await deliver(config(wsdl, server.records_url, wsse=wsse))

    assert receipt.remote_id == "R-000001"
    (check,) = server.control.security_log
    assert check["ok"] and check["signed"]["method"] == method_uri and check["signed"]["digests"] == [digest_uri]
    assert check["signed"]["elements"] == ["Body", "Timestamp"]


async def test_a_signed_request_altered_in_transit_is_refused(server, pki, tmp_path):
    server.control.require_signature = True
    server.control.client_cert_pem = pki.client_cert.read_bytes()
    server.control.tamper_in_transit = True
    wsdl = server.write_records_wsdl(tmp_path / "records.wsdl")

    with pytest.raises(PermanentSoapFault) as caught:
        await deliver(config(wsdl, server.records_url, wsse={"signature": signature(pki)}))

    assert caught.value.fault_code == "wsse:FailedCheck"
    assert "signature verification failed" in caught.value.fault_text
    assert server.control.submissions == {}


async def test_an_unsigned_request_is_refused_when_the_service_requires_signatures(server, pki, tmp_path):
    server.control.require_signature = True
    server.control.client_cert_pem = pki.client_cert.read_bytes()
    wsdl = server.write_records_wsdl(tmp_path / "records.wsdl")

    with pytest.raises(PermanentSoapFault, match="wsse:InvalidSecurity.*not signed"):
        await deliver(config(wsdl, server.records_url))


async def test_a_request_signed_with_another_key_is_refused(server, pki, tmp_path):
    server.control.require_signature = True
    server.control.client_cert_pem = pki.client_cert.read_bytes()
    wsdl = server.write_records_wsdl(tmp_path / "records.wsdl")

    with pytest.raises(PermanentSoapFault, match="wsse:FailedCheck"):
        await deliver(config(wsdl, server.records_url, wsse={"signature": signature(pki, rogue=True)}))


async def test_a_username_token_digest_is_accepted(server, tmp_path):
    server.control.require_username_token = True
    server.control.users = {"hall-gateway": "Pa55-word-正确"}
    secret = tmp_path / "soap-password"
    secret.write_text("Pa55-word-正确\n", encoding="utf-8")
    wsdl = server.write_records_wsdl(tmp_path / "records.wsdl")
    token = {"username": "hall-gateway", "password": {"file": str(secret)}}

    receipt = await deliver(config(wsdl, server.records_url, wsse={"username_token": token}))

    assert receipt.remote_id == "R-000001"
    assert server.control.security_log == [{"ok": True, "user": "hall-gateway"}]


async def test_a_wrong_password_digest_is_refused(server, tmp_path, monkeypatch):
    server.control.require_username_token = True
    server.control.users = {"hall-gateway": "right"}
    monkeypatch.setenv("SOAP_TEST_PASSWORD", "wrong")
    wsdl = server.write_records_wsdl(tmp_path / "records.wsdl")
    token = {"username": "hall-gateway", "password": {"env": "SOAP_TEST_PASSWORD"}}

    with pytest.raises(PermanentSoapFault, match="wsse:FailedAuthentication.*does not match"):
        await deliver(config(wsdl, server.records_url, wsse={"username_token": token}))


async def test_username_token_and_signature_together_sign_the_token_too(server, pki, tmp_path, monkeypatch):
    server.control.require_username_token = True
    server.control.require_signature = True
    server.control.users = {"hall-gateway": "s3cret"}
    server.control.client_cert_pem = pki.client_cert.read_bytes()
    monkeypatch.setenv("SOAP_TEST_PASSWORD", "s3cret")
    wsdl = server.write_records_wsdl(tmp_path / "records.wsdl")
    wsse = {
        "username_token": {"username": "hall-gateway", "password": {"env": "SOAP_TEST_PASSWORD"}},
        "signature": signature(pki),
    }

    await deliver(config(wsdl, server.records_url, wsse=wsse))

    (check,) = server.control.security_log
    assert check["user"] == "hall-gateway"
    assert sorted(check["signed"]["elements"]) == ["Body", "Timestamp", "UsernameToken"]


@pytest.fixture
def tls_server(pki):
    context = server_tls_context(pki.server_cert, pki.server_key, pki.ca_cert)
    with SoapTestServer(Control(), ssl_context=context) as running:
        yield running


def mutual_tls(pki: Pki, **overrides: Any) -> dict[str, Any]:
    return {
        "ca_file": str(pki.ca_cert),
        "client_cert_file": str(pki.client_cert),
        "client_key_file": str(pki.client_key),
        "client_key_passphrase": {"env": PASSPHRASE_ENV},
        **overrides,
    }


async def test_mutual_tls_with_a_client_certificate(tls_server, pki, tmp_path):
    wsdl = tls_server.write_records_wsdl(tmp_path / "records.wsdl")
    assert tls_server.records_url.startswith("https://127.0.0.1:")

    receipt = await deliver(config(wsdl, tls_server.records_url, tls=mutual_tls(pki)))

    assert receipt.remote_id == "R-000001"


async def test_without_a_client_certificate_the_tls_handshake_fails_as_retryable(tls_server, pki, tmp_path):
    wsdl = tls_server.write_records_wsdl(tmp_path / "records.wsdl")
    # Depending on timing the refusal arrives as a TLS alert or as a closed connection.
    with pytest.raises(RetryableError, match="TLS failure.*CERTIFICATE_REQUIRED|refuses a missing or untrusted client"):
        await deliver(config(wsdl, tls_server.records_url, tls={"ca_file": str(pki.ca_cert)}))
    assert tls_server.control.requests == 0


async def test_a_server_certificate_from_an_unknown_ca_is_refused(tls_server, pki, tmp_path):
    wsdl = tls_server.write_records_wsdl(tmp_path / "records.wsdl")
    with pytest.raises(RetryableError, match="TLS failure: CERTIFICATE_VERIFY_FAILED"):
        await deliver(config(wsdl, tls_server.records_url, tls=mutual_tls(pki, ca_file=str(pki.rogue_cert))))


async def test_a_wrong_key_passphrase_stops_the_start_with_a_clear_message(tls_server, pki, tmp_path, monkeypatch):
    monkeypatch.setenv(PASSPHRASE_ENV, "not-the-passphrase")
    wsdl = tls_server.write_records_wsdl(tmp_path / "records.wsdl")
    sink = SoapSink("market-supervision", config(wsdl, tls_server.records_url, tls=mutual_tls(pki)))
    with pytest.raises(SoapSetupError, match=r"cannot load the client certificate .*client\.pem"):
        await sink.start()


async def test_signed_responses_are_verified_against_the_counterparts_certificate(server, pki, tmp_path):
    server.control.response_key_pem = pki.server_key.read_bytes()
    server.control.response_cert_pem = pki.server_cert.read_bytes()
    wsdl = server.write_records_wsdl(tmp_path / "records.wsdl")

    good = await deliver(config(wsdl, server.records_url, wsse={"verify_response_cert": str(pki.server_cert)}))
    assert good.remote_id == "R-000001"

    with pytest.raises(PermanentError, match="did not verify against wsse.verify_response_cert"):
        await deliver(config(wsdl, server.records_url, wsse={"verify_response_cert": str(pki.rogue_cert)}))


async def test_an_unsigned_response_is_refused_when_responses_must_be_signed(server, pki, tmp_path):
    wsdl = server.write_records_wsdl(tmp_path / "records.wsdl")
    with pytest.raises(PermanentError, match="did not verify"):
        await deliver(config(wsdl, server.records_url, wsse={"verify_response_cert": str(pki.server_cert)}))


async def test_a_missing_secret_names_the_system_field_and_variable(server, pki, tmp_path, monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV)
    wsdl = server.write_records_wsdl(tmp_path / "records.wsdl")
    sink = SoapSink("market-supervision", config(wsdl, server.records_url, wsse={"signature": signature(pki)}))
    with pytest.raises(
        SoapSetupError,
        match=f"SOAP system 'market-supervision' wsse.signature.key_passphrase: environment variable {PASSPHRASE_ENV}",
    ):
        await sink.start()


def test_a_password_written_into_the_configuration_is_refused(server, tmp_path):
    wsdl = server.write_records_wsdl(tmp_path / "records.wsdl")
    with pytest.raises(ValidationError, match="password"):
        config(wsdl, server.records_url, wsse={"username_token": {"username": "u", "password": "plain-text"}})
