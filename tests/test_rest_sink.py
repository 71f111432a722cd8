"""REST sink against a real local hall platform: headers, classification, batches, bearer, HMAC, mTLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError

from gateway.adapters import Delivery, PermanentError, RetryableError, discover
from gateway.demo.counterparts import HallPlatform
from gateway_adapters.rest import (
    ADAPTER,
    RestConfigError,
    RestRetryableError,
    RestSink,
    RestSinkConfig,
    canonical_string,
    hmac_signature,
)
from gateway_adapters.rest._http import parse_retry_after


def delivery(n: int = 1, *, kind: str = "approval_result", body: Any = None, key: str | None = None,
             correlation_id: str | None = None) -> Delivery:
    return Delivery(
        delivery_id=n,
        destination="hall",
        idempotency_key=key or f"county:approval_result:XK-2026-{n:04d}:1",
        kind=kind,
        record_key=f"XK-2026-{n:04d}",
        case_no=f"3706002026{n:06d}",
        body=body if body is not None else {"XK_XDR_MC": "烟台市某某餐饮有限公司", "XK_WSH": f"烟许字〔2026〕{n}号"},
        attempt=1,
        correlation_id=correlation_id,
    )


@asynccontextmanager
async def running_sink(url: str, **options: Any) -> AsyncIterator[RestSink]:
    sink = ADAPTER.make_sink("hall", RestSinkConfig(url=url, **options))  # type: ignore[misc]
    await sink.start()
    try:
        yield sink
    finally:
        await sink.close()


@pytest.fixture
async def hall() -> AsyncIterator[HallPlatform]:
    platform = HallPlatform()
    await platform.start()
    yield platform
    await platform.stop()


# --------------------------------------------------------------------------- one record


async def test_delivers_json_with_idempotency_key_and_the_records_correlation_id(hall: HallPlatform) -> None:
    d = delivery(1, correlation_id="county-batch-42")
    async with running_sink(hall.records_url, remote_id_path="id") as sink:
        [result] = await sink.deliver([d])
    assert result.error is None and result.receipt is not None
    assert result.receipt.remote_id == "HALL-000001"
    assert hall.records[d.idempotency_key] == d.body  # Chinese text arrives intact
    assert hall.last_headers["Idempotency-Key"] == d.idempotency_key
    assert hall.last_headers["X-Correlation-Id"] == "county-batch-42"
    assert hall.last_headers["X-Gateway-Delivery"] == "hall:1:1"
    assert hall.last_headers["Content-Type"].startswith("application/json")


async def test_a_record_stored_without_a_correlation_id_is_named_by_its_delivery(hall: HallPlatform) -> None:
    async with running_sink(hall.records_url) as sink:
        [result] = await sink.deliver([delivery(3)])
    assert result.receipt is not None
    assert hall.last_headers["X-Correlation-Id"] == hall.last_headers["X-Gateway-Delivery"] == "hall:3:1"


async def test_the_same_delivery_twice_is_one_record_at_the_counterpart(hall: HallPlatform) -> None:
    async with running_sink(hall.records_url, remote_id_path="id") as sink:
        first = await sink.deliver([delivery(7)])
        second = await sink.deliver([delivery(7)])
    assert first[0].receipt and second[0].receipt
    assert first[0].receipt.remote_id == second[0].receipt.remote_id
    assert (hall.received_raw, hall.unique, hall.repeats) == (2, 1, 1)


async def test_503_is_retryable_and_carries_retry_after(hall: HallPlatform) -> None:
    hall.fail_next(1, status=503, retry_after=7)
    async with running_sink(hall.records_url) as sink:
        [failed] = await sink.deliver([delivery(1)])
        [retried] = await sink.deliver([delivery(1)])
    assert isinstance(failed.error, RetryableError) and isinstance(failed.error, RestRetryableError)
    assert failed.error.status == 503
    assert failed.error.retry_after == 7.0
    assert "hall" in str(failed.error) and "503" in str(failed.error)
    assert retried.receipt is not None and hall.unique == 1


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 504])
async def test_transient_statuses_are_retryable(hall: HallPlatform, status: int) -> None:
    hall.fail_next(1, status=status)
    async with running_sink(hall.records_url) as sink:
        [result] = await sink.deliver([delivery(1)])
    assert isinstance(result.error, RetryableError) and result.error.status == status


async def test_400_is_permanent_naming_record_status_and_reason_then_accepted_once_fixed(
    hall: HallPlatform,
) -> None:
    hall.reject_when(lambda body: "XK_WSH" not in body, reason="XK_WSH 许可决定文书号 is required")
    bad = delivery(3, body={"XK_XDR_MC": "某某公司"})
    async with running_sink(hall.records_url) as sink:
        [refused] = await sink.deliver([bad])
        assert isinstance(refused.error, PermanentError) and not refused.error.retryable
        assert refused.error.status == 400
        message = str(refused.error)
        for part in ("REST sink 'hall'", "delivery 3", "XK-2026-0003", "400", "XK_WSH 许可决定文书号 is required"):
            assert part in message
        hall.accept_all()  # the counterpart fixed its side; a replay now goes through
        [replayed] = await sink.deliver([bad])
    assert replayed.receipt is not None
    assert (hall.rejected, hall.unique) == (1, 1)


async def test_refusal_body_is_trimmed_in_the_error(hall: HallPlatform) -> None:
    hall.reject_when(lambda body: True, reason="x" * 5000)
    async with running_sink(hall.records_url, error_body_chars=80) as sink:
        [refused] = await sink.deliver([delivery(1)])
    assert isinstance(refused.error, PermanentError)
    assert len(str(refused.error)) < 400 and "bytes)" in str(refused.error)


async def test_timeout_is_retryable_and_the_retry_is_absorbed_by_the_idempotency_key(hall: HallPlatform) -> None:
    hall.set_delay(0.6)
    async with running_sink(hall.records_url, timeouts={"connect": 1, "sock_read": 0.2, "total": 5}) as sink:
        [timed_out] = await sink.deliver([delivery(1)])
        assert isinstance(timed_out.error, RetryableError)
        assert "timeouts.read" in str(timed_out.error)
        hall.set_delay(0)
        [retried] = await sink.deliver([delivery(1)])
    assert retried.receipt is not None
    await asyncio.sleep(0.6)  # the slow first request still lands on the platform
    assert (hall.received_raw, hall.unique) == (2, 1)


async def test_connection_refused_is_retryable() -> None:
    platform = HallPlatform()
    await platform.start()
    url = platform.records_url
    await platform.stop()
    async with running_sink(url) as sink:
        [result] = await sink.deliver([delivery(1)])
    assert isinstance(result.error, RetryableError)
    assert "cannot connect" in str(result.error)


async def test_409_is_permanent_unless_configured_as_already_received() -> None:
    async with HallPlatform(repeat_status=409) as platform:
        async with running_sink(platform.records_url) as strict:
            await strict.deliver([delivery(1)])
            [conflict] = await strict.deliver([delivery(1)])
        async with running_sink(platform.records_url, conflict_is_success=True, remote_id_path="id") as lenient:
            [accepted] = await lenient.deliver([delivery(1)])
    assert isinstance(conflict.error, PermanentError) and conflict.error.status == 409
    assert accepted.receipt is not None and accepted.receipt.remote_id == "HALL-000001"
    assert "already received" in (accepted.receipt.detail or "")


async def test_url_template_sends_each_kind_to_its_own_path() -> None:
    async with HallPlatform(path="/api/{kind}/records") as platform:
        async with running_sink(platform.url + "/api/{kind}/records") as sink:
            [result] = await sink.deliver([delivery(1, kind="supervision_result")])
    assert result.receipt is not None
    assert platform.last_path == "/api/supervision_result/records"


async def test_redirect_is_permanent_and_names_the_new_location(aiohttp_server: Any) -> None:
    app = web.Application()

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect("/api/v2/records")

    app.router.add_post("/api/records", moved)
    server = await aiohttp_server(app)
    async with running_sink(str(server.make_url("/api/records"))) as sink:
        [result] = await sink.deliver([delivery(1)])
    assert isinstance(result.error, PermanentError) and "/api/v2/records" in str(result.error)


# --------------------------------------------------------------------------- batches


async def test_batch_sends_an_array_and_reads_one_result_per_item(hall: HallPlatform) -> None:
    hall.reject_when(lambda body: body.get("XK_XDR_MC") == "", reason="XK_XDR_MC 行政相对人名称 is empty")
    batch = [
        delivery(1, key="county:a,b%c:1", correlation_id="file-a"),  # a key with the separator survives the header
        delivery(2, body={"XK_XDR_MC": ""}, correlation_id="file-a"),
        delivery(3, correlation_id="push-b"),
    ]
    async with running_sink(hall.records_url, batch_size=10) as sink:
        results = await sink.deliver(batch)
    assert [r.delivery_id for r in results] == [1, 2, 3]
    assert results[0].receipt and results[0].receipt.remote_id == "HALL-000001"
    assert results[2].receipt and results[2].receipt.remote_id == "HALL-000002"
    assert isinstance(results[1].error, PermanentError)
    assert "XK_XDR_MC 行政相对人名称 is empty" in str(results[1].error) and "delivery 2" in str(results[1].error)
    assert set(hall.records) == {"county:a,b%c:1", batch[2].idempotency_key}
    assert (hall.received_raw, hall.requests_total) == (3, 1)
    # one header for the request: the distinct correlation ids of its records, in array order
    assert hall.last_headers["X-Correlation-Id"] == "file-a, push-b"
    assert hall.last_headers["X-Gateway-Delivery"] == "hall:1+2:1"


async def test_batch_whole_failure_applies_to_every_delivery(hall: HallPlatform) -> None:
    hall.fail_next(1, status=503, retry_after=2)
    async with running_sink(hall.records_url, batch_size=3) as sink:
        results = await sink.deliver([delivery(1), delivery(2), delivery(3)])
    assert all(isinstance(r.error, RestRetryableError) and r.error.retry_after == 2.0 for r in results)
    assert hall.unique == 0


async def test_batch_with_a_result_array_of_the_wrong_length_is_retryable(aiohttp_server: Any) -> None:
    app = web.Application()

    async def short_answer(request: web.Request) -> web.Response:
        return web.json_response({"data": {"results": [{"code": "0"}]}})

    app.router.add_post("/batch", short_answer)
    server = await aiohttp_server(app)
    shape = {"items_path": "data.results", "status_field": "code", "ok_values": ["0"]}
    async with running_sink(str(server.make_url("/batch")), batch_size=2, batch_results=shape) as sink:
        results = await sink.deliver([delivery(1), delivery(2)])
    assert all(isinstance(r.error, RetryableError) for r in results)
    assert "'data.results' hold 1 items, expected 2" in str(results[0].error)


async def test_batch_item_results_in_a_custom_shape(aiohttp_server: Any) -> None:
    app = web.Application()

    async def provincial_style(request: web.Request) -> web.Response:
        items = await request.json()
        results = [
            {"code": "0", "sjid": f"P{i}"} if i != 1 else {"code": "9", "msg": "系统繁忙"}
            for i, _ in enumerate(items)
        ]
        return web.json_response({"RESULT": results})

    app.router.add_post("/batch", provincial_style)
    server = await aiohttp_server(app)
    shape = {
        "items_path": "RESULT", "status_field": "code", "ok_values": ["0"], "retry_values": ["9"],
        "id_field": "sjid", "error_field": "msg",
    }
    async with running_sink(str(server.make_url("/batch")), batch_size=3, batch_results=shape) as sink:
        results = await sink.deliver([delivery(1), delivery(2), delivery(3)])
    assert results[0].receipt and results[0].receipt.remote_id == "P0"
    assert isinstance(results[1].error, RetryableError) and "系统繁忙" in str(results[1].error)
    assert results[2].receipt and results[2].receipt.remote_id == "P2"


async def test_batches_larger_than_batch_size_are_split(hall: HallPlatform) -> None:
    async with running_sink(hall.records_url, batch_size=2) as sink:
        results = await sink.deliver([delivery(n) for n in range(1, 6)])
    assert all(r.receipt for r in results)
    assert (hall.unique, hall.requests_total) == (5, 3)


# --------------------------------------------------------------------------- authentication


async def test_bearer_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALL_TOKEN", "s3cret-token")
    async with HallPlatform(bearer_token="s3cret-token") as platform:
        auth = {"type": "bearer", "token": {"env": "HALL_TOKEN"}}
        async with running_sink(platform.records_url, auth=auth) as sink:
            [result] = await sink.deliver([delivery(1)])
    assert result.receipt is not None and platform.auth_failures == []


async def test_bearer_token_file_is_reread_after_rotation(tmp_path: Path) -> None:
    token_file = tmp_path / "hall.token"
    token_file.write_text("old-token\n")
    async with HallPlatform(bearer_token="old-token") as platform:
        auth = {"type": "bearer", "token": {"file": str(token_file)}}
        async with running_sink(platform.records_url, auth=auth) as sink:
            [before] = await sink.deliver([delivery(1)])
            platform.bearer_token = "new-token"
            [refused] = await sink.deliver([delivery(2)])
            token_file.write_text("new-token\n")
            os.utime(token_file, ns=(1, os.stat(token_file).st_mtime_ns + 1_000_000_000))
            [after] = await sink.deliver([delivery(2)])
    assert before.receipt and after.receipt
    assert isinstance(refused.error, PermanentError) and refused.error.status == 401
    assert "check the credentials" in str(refused.error)


async def test_missing_token_env_stops_start_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    sink = RestSink("hall", RestSinkConfig(
        url="http://127.0.0.1:9/api", auth={"type": "bearer", "token": {"env": "NO_SUCH_TOKEN"}}
    ))
    with pytest.raises(RestConfigError, match="NO_SUCH_TOKEN"):
        await sink.start()


async def test_hmac_signed_request_is_verified_by_the_counterpart(tmp_path: Path) -> None:
    key_file = tmp_path / "hall.key"
    key_file.write_text("hall-shared-key-2026\n")
    async with HallPlatform(hmac_key=b"hall-shared-key-2026") as platform:
        auth = {"type": "hmac", "key": {"file": str(key_file)}}
        async with running_sink(platform.records_url, auth=auth) as sink:
            results = await sink.deliver([delivery(1)])
            results += await sink.deliver([delivery(2)])
    assert all(r.receipt for r in results), [str(r.error) for r in results]
    assert platform.auth_failures == []
    assert {"X-Timestamp", "X-Nonce", "X-Signature"} <= set(platform.last_headers)


async def test_hmac_with_the_wrong_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALL_HMAC_KEY", "6b6579".upper())  # hex of b"key", but the hall expects another
    async with HallPlatform(hmac_key=b"another-key") as platform:
        auth = {"type": "hmac", "key": {"env": "HALL_HMAC_KEY"}, "key_encoding": "hex"}
        async with running_sink(platform.records_url, auth=auth) as sink:
            [result] = await sink.deliver([delivery(1)])
    assert isinstance(result.error, PermanentError) and result.error.status == 401
    assert platform.auth_failures == ["X-Signature does not match the canonical request"]


def test_canonical_string_and_signature_match_the_documented_example() -> None:
    canonical = canonical_string(
        "post", "/api/records?batch=1", "1790000000", "0123456789abcdef0123456789abcdef", b'{"a":1}'
    )
    assert canonical == (
        b"POST\n/api/records?batch=1\n1790000000\n0123456789abcdef0123456789abcdef\n"
        b"015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
    )
    readme = (Path(__file__).parent.parent / "adapters" / "rest" / "README.md").read_text(encoding="utf-8")
    assert hmac_signature(b"example-key", canonical) in readme


# --------------------------------------------------------------------------- mutual TLS


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Hall"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _issue(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, issuer_key: ec.EllipticCurvePrivateKey,
    *, ca: bool = False, server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        ).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return cert_path, key_path


def _pki(directory: Path, prefix: str) -> dict[str, Path]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue(f"{prefix} Test CA", ca_key, _name(f"{prefix} Test CA"), ca_key, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue("127.0.0.1", server_key, ca_cert.subject, ca_key, server=True)
    client_cert = _issue("gateway-test-client", client_key, ca_cert.subject, ca_key)
    ca_path, _ = _write(directory, f"{prefix}-ca", ca_cert, ca_key)
    server_path, server_key_path = _write(directory, f"{prefix}-server", server_cert, server_key)
    client_path, client_key_path = _write(directory, f"{prefix}-client", client_cert, client_key)
    return {"ca": ca_path, "server": server_path, "server_key": server_key_path,
            "client": client_path, "client_key": client_key_path}


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    return _pki(tmp_path, "hall")


@pytest.fixture
async def mtls_hall(pki: dict[str, Path]) -> AsyncIterator[HallPlatform]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca"]))
    context.load_cert_chain(str(pki["server"]), str(pki["server_key"]))
    context.verify_mode = ssl.CERT_REQUIRED
    platform = HallPlatform(ssl_context=context)
    await platform.start()
    yield platform
    await platform.stop()


async def test_mutual_tls_presents_the_client_certificate(mtls_hall: HallPlatform, pki: dict[str, Path]) -> None:
    tls = {"ca_file": str(pki["ca"]), "cert_file": str(pki["client"]), "key_file": str(pki["client_key"])}
    async with running_sink(mtls_hall.records_url, tls=tls) as sink:
        [result] = await sink.deliver([delivery(1)])
    assert mtls_hall.records_url.startswith("https://")
    assert result.receipt is not None, str(result.error)
    assert any("commonName=gateway-test-client" in s for s in mtls_hall.client_subjects)


async def test_mutual_tls_without_a_client_certificate_is_retryable(
    mtls_hall: HallPlatform, pki: dict[str, Path]
) -> None:
    async with running_sink(mtls_hall.records_url, tls={"ca_file": str(pki["ca"])}) as sink:
        [result] = await sink.deliver([delivery(1)])
    assert isinstance(result.error, RetryableError)
    assert mtls_hall.unique == 0


async def test_server_certificate_from_an_unknown_ca_is_refused(
    mtls_hall: HallPlatform, pki: dict[str, Path], tmp_path: Path
) -> None:
    other = _pki(tmp_path, "other")
    tls = {"ca_file": str(other["ca"]), "cert_file": str(pki["client"]), "key_file": str(pki["client_key"])}
    async with running_sink(mtls_hall.records_url, tls=tls) as sink:
        [result] = await sink.deliver([delivery(1)])
    assert isinstance(result.error, RetryableError)
    assert "certificate" in str(result.error)


async def test_unreadable_client_certificate_stops_start_with_the_file_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    sink = RestSink("hall", RestSinkConfig(url="https://127.0.0.1:9/api", tls={"cert_file": str(missing)}))
    with pytest.raises(RestConfigError, match="nope.pem"):
        await sink.start()


# --------------------------------------------------------------------------- configuration


def test_adapter_is_registered_under_the_entry_point() -> None:
    assert discover(["rest"])["rest"] is ADAPTER
    assert ADAPTER.sink_config is RestSinkConfig and ADAPTER.make_sink is not None


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"url": "http://h/api", "auth": {"type": "bearer", "token": "inline-secret"}}, "token"),
        ({"url": "http://h/api", "auth": {"type": "bearer", "token": {"env": "A", "file": "b"}}}, "exactly one"),
        ({"url": "http://h/api", "headers": {"Authorization": "Bearer x"}}, "carries a credential"),
        ({"url": "http://h/api/{system}"}, "only placeholder"),
        ({"url": "ftp://h/api"}, "http://"),
        ({"url": "http://h/api", "remote_id_path": "data..id"}, "JSON path"),
        ({"url": "http://h/api", "batch_size": 0}, "batch_size"),
        ({"url": "http://h/api", "tls": {"key_file": "k.pem"}}, "cert_file"),
    ],
)
def test_configuration_mistakes_are_refused_with_a_reason(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        RestSinkConfig(**options)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now=1792567670.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


async def test_deliver_before_start_is_a_programming_error() -> None:
    sink = RestSink("hall", RestSinkConfig(url="http://127.0.0.1:9/api"))
    with pytest.raises(RuntimeError, match="before start"):
        await sink.deliver([delivery(1)])


async def test_the_health_request_answers_2xx_when_up_and_raises_retryable_otherwise() -> None:
    async with HallPlatform(bearer_token="s3cret") as hall:
        os.environ["HEALTH_TEST_TOKEN"] = "s3cret"
        try:
            async with running_sink(hall.records_url, health_url=hall.records_url,
                                    auth={"type": "bearer", "token": {"env": "HEALTH_TEST_TOKEN"}}) as sink:
                assert sink.probe is not None
                await sink.probe()  # GET with the sink's credentials: 200
                assert hall.last_headers["Authorization"] == "Bearer s3cret"
                hall.fail_next(1, status=503)
                with pytest.raises(RestRetryableError, match="health request: GET .* answered 503"):
                    await sink.probe()
        finally:
            del os.environ["HEALTH_TEST_TOKEN"]
    async with running_sink("http://127.0.0.1:9/api/records") as plain:
        assert plain.probe is None  # without health_url the worker probes with a delivery


def test_a_health_url_must_be_http() -> None:
    with pytest.raises(ValidationError, match="health_url 'ftp://x' must start with http"):
        RestSinkConfig(url="http://127.0.0.1/api", health_url="ftp://x")
