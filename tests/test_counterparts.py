"""Counterpart identities over real TLS on loopback: client certificates bound to systems, kinds a system may
send, bearer tokens with rotation, HMAC-signed requests with a replay window, and every refusal audited."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from trust_support import (
    CITY_HMAC_KEY,
    HMAC_KEYS,
    TOKEN_EXPIRED,
    TOKEN_NEW,
    TOKEN_OLD,
    Pki,
    acceptance_item,
    case_item,
    fresh_start,
    make_pki,
    refusals,
    session,
    set_secrets,
    write_site,
)

from gateway.adapters import Delivery
from gateway.app import Gateway
from gateway.config import ConfigError, load_config
from gateway.observability.logs import json_formatter
from gateway.security.request_signing import canonical_string, hmac_signature
from gateway_adapters.rest import RestSink, RestSinkConfig


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_gw(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> AsyncIterator[Gateway]:
    """One running gateway for the module (its start dominates each test otherwise)."""
    with pytest.MonkeyPatch.context() as mp:
        set_secrets(mp)
        gateway = Gateway(load_config(write_site(tmp_path_factory.mktemp("site"), pki)))
        await gateway.start()
        try:
            yield gateway
        finally:
            await gateway.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def gw(shared_gw: Gateway) -> Gateway:
    await fresh_start(shared_gw)
    return shared_gw


async def post(http: aiohttp.ClientSession, gw: Gateway, path: str, body: object,
               headers: dict[str, str] | None = None) -> tuple[int, dict, aiohttp.typedefs.LooseHeaders]:
    async with http.post(gw.api.url + path, json=body, headers=headers or {}) as r:
        return r.status, await r.json(), r.headers


async def metric(gw: Gateway, pki: Pki, name: str, **labels: str) -> float:
    async with session(pki) as http, http.get(gw.api.url + "/metrics") as r:
        text = await r.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


# --------------------------------------------------------------------------- client certificates


async def test_the_bound_certificate_pushes_and_the_access_log_names_the_counterpart(gw, pki, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.api.access")
    async with session(pki, pki.county) as http:
        status, body, _ = await post(http, gw, "/api/v1/inbound/county_hall/case", [case_item("CH-2026-0001")])

    assert status == 202 and body["accepted"] == 1
    assert await gw.store.list_records(case_no="CH-2026-0001")
    lines = [json.loads(json_formatter().format(r)) for r in caplog.records if r.name == "gateway.api.access"]
    (line,) = [line for line in lines if "/inbound/" in line["path"]]
    assert line["counterpart"] == {"system": "county_hall", "method": "client_certificate",
                                   "credential": f"SHA-256 {pki.county.fingerprint[:16]}"}
    assert await metric(gw, pki, "gateway_counterpart_authenticated_total", system="county_hall",
                        method="client_certificate") == 1


async def test_no_client_certificate_is_401_with_www_authenticate_and_an_audit_entry(gw, pki) -> None:
    async with session(pki) as http:  # TLS, the right CA trusted, but no certificate of our own
        status, body, headers = await post(http, gw, "/api/v1/inbound/county_hall/case", [case_item("CH-2026-0002")])

    assert status == 401
    assert headers["WWW-Authenticate"] == 'ClientCertificate realm="exchange-gateway/county_hall"'
    assert "must authenticate with client_certificate" in body["error"]["message"]
    assert body["error"]["reason"] == "missing_credentials"
    assert not await gw.store.list_records(case_no="CH-2026-0002")
    (entry,) = await refusals(gw)
    assert entry["system"] == "county_hall" and entry["reason"] == "missing_credentials" and entry["status"] == 401
    assert entry["remote"] == "127.0.0.1" and entry["count"] == 1
    assert await metric(gw, pki, "gateway_counterpart_refusals_total", system="county_hall",
                        reason="missing_credentials") == 1


async def test_a_certificate_from_another_ca_is_refused_in_the_handshake_counted_and_audited(gw, pki) -> None:
    # Same subject as county_hall's real certificate, issued by a CA with the very same name: only the
    # signature tells them apart, and OpenSSL refuses it before HTTP.
    with pytest.raises(aiohttp.ClientError):
        async with session(pki, pki.other_ca_county) as http:
            await post(http, gw, "/api/v1/inbound/county_hall/case", [case_item("CH-2026-0003")])

    assert not await gw.store.list_records(case_no="CH-2026-0003")
    for _ in range(50):  # the handshake's entry is written in the background
        found = [e for e in await refusals(gw) if e["reason"] == "tls_handshake"]
        if found:
            break
        await asyncio.sleep(0.05)
    (entry,) = found
    assert entry["system"] is None and "status" not in entry
    assert "certificate" in entry["message"] and "client_ca" in entry["message"]
    assert await metric(gw, pki, "gateway_counterpart_refusals_total", system="-", reason="tls_handshake") == 1


async def test_with_client_certificates_required_a_missing_one_is_refused_in_the_handshake(
        tmp_path, pki, monkeypatch) -> None:
    set_secrets(monkeypatch)
    gateway = Gateway(load_config(write_site(tmp_path, pki, client_certificates="required")))
    await gateway.start()
    try:
        with pytest.raises(aiohttp.ClientError):
            async with session(pki) as http:
                await post(http, gateway, "/api/v1/inbound/county_hall/case", [case_item("CH-2026-0004")])
        async with session(pki, pki.county) as http:
            status, _, _ = await post(http, gateway, "/api/v1/inbound/county_hall/case", [case_item("CH-2026-0005")])
        assert status == 202
        for _ in range(50):
            found = [e for e in await refusals(gateway) if e["reason"] == "tls_handshake"]
            if found:
                break
            await asyncio.sleep(0.05)
        assert found and "certificate" in found[0]["message"]
    finally:
        await gateway.stop()


async def test_system_a_certificate_pushing_as_system_b_is_403_and_nothing_lands(gw, pki) -> None:
    async with session(pki, pki.county) as http:
        status, body, headers = await post(http, gw, "/api/v1/inbound/city_platform/case",
                                           [case_item("CP-2026-0001")])

    assert status == 403 and "WWW-Authenticate" not in headers
    assert body["error"]["reason"] == "credential_of_other_system"
    assert "belongs to system 'county_hall'" in body["error"]["message"]
    assert not await gw.store.list_records(case_no="CP-2026-0001")
    (entry,) = await refusals(gw)
    assert entry["system"] == "city_platform" and entry["credential_system"] == "county_hall"
    assert entry["credential"] == f"SHA-256 {pki.county.fingerprint}"


async def test_a_certificate_from_the_right_ca_bound_to_no_system_is_403(gw, pki) -> None:
    async with session(pki, pki.stranger) as http:
        status, body, _ = await post(http, gw, "/api/v1/inbound/county_hall/case", [case_item("CH-2026-0006")])
    assert status == 403 and body["error"]["reason"] == "certificate_not_bound"
    assert "CN=stranger" in body["error"]["message"]


async def test_a_renewed_certificate_with_the_bound_subject_pushes_where_the_binding_is_by_subject(gw, pki) -> None:
    async with session(pki, pki.city) as http:
        status, _, _ = await post(http, gw, "/api/v1/inbound/city_platform/case", [case_item("CP-2026-0002")])
    assert status == 202


# --------------------------------------------------------------------------- kinds


async def test_a_permitted_system_sending_a_kind_it_may_not_send_is_403(gw, pki) -> None:
    async with session(pki, pki.county) as http:
        status, body, _ = await post(http, gw, "/api/v1/inbound/county_hall/acceptance",
                                     [acceptance_item("CH-2026-0010")])
        assert status == 403 and body["error"]["reason"] == "kind_not_permitted"
        assert "may not send 'acceptance'" in body["error"]["message"] and "may send case" in body["error"]["message"]

        # Through the endpoint without a kind, one forbidden item refuses the whole request: nothing lands.
        status, body, _ = await post(http, gw, "/api/v1/inbound/county_hall",
                                     [case_item("CH-2026-0011"), acceptance_item("CH-2026-0011")])
        assert status == 403 and "acceptance: item(s) 1" in body["error"]["message"]
    assert not await gw.store.list_records(case_no="CH-2026-0010")
    assert not await gw.store.list_records(case_no="CH-2026-0011")
    assert {e["reason"] for e in await refusals(gw)} == {"kind_not_permitted"}


# --------------------------------------------------------------------------- tokens


async def test_both_tokens_of_a_rotation_overlap_push_and_the_metric_says_which_is_still_used(gw, pki) -> None:
    async with session(pki) as http:
        for n, token in enumerate((TOKEN_OLD, TOKEN_NEW, TOKEN_NEW)):
            status, _, _ = await post(http, gw, "/api/v1/inbound/city_platform/case", [case_item(f"CP-T-{n}")],
                                      {"Authorization": f"Bearer {token}"})
            assert status == 202
    assert await metric(gw, pki, "gateway_counterpart_authenticated_total", system="city_platform",
                        credential="2026-q3") == 1
    assert await metric(gw, pki, "gateway_counterpart_authenticated_total", system="city_platform",
                        credential="2026-q4") == 2


async def test_an_expired_or_unknown_token_is_401_invalid_token(gw, pki) -> None:
    async with session(pki) as http:
        status, body, headers = await post(http, gw, "/api/v1/inbound/city_platform/case", [case_item("CP-T-9")],
                                           {"Authorization": f"Bearer {TOKEN_EXPIRED}"})
        assert status == 401 and body["error"]["reason"] == "expired_token"
        assert "expired at 2026-03-31T23:59:59+08:00" in body["error"]["message"]
        assert 'Bearer realm="exchange-gateway/city_platform", error="invalid_token"' in headers["WWW-Authenticate"]
        status, body, _ = await post(http, gw, "/api/v1/inbound/city_platform/case", [case_item("CP-T-9")],
                                     {"Authorization": "Bearer guessed-token"})
        assert status == 401 and body["error"]["reason"] == "invalid_token"
    assert not await gw.store.list_records(case_no="CP-T-9")


async def test_another_systems_token_is_403(gw, pki) -> None:
    async with session(pki) as http:
        status, body, _ = await post(http, gw, "/api/v1/inbound/province/case", [case_item("PV-T-1")],
                                     {"Authorization": f"Bearer {TOKEN_NEW}"})
    assert status == 403 and "belongs to system 'city_platform'" in body["error"]["message"]
    (entry,) = await refusals(gw)
    assert entry["credential"] == f"token sha256:{__import__('hashlib').sha256(TOKEN_NEW.encode()).hexdigest()[:12]}"
    assert TOKEN_NEW not in json.dumps(entry)


async def test_a_valid_certificate_with_a_wrong_token_is_refused_every_credential_must_verify(gw, pki) -> None:
    async with session(pki, pki.city) as http:
        status, body, _ = await post(http, gw, "/api/v1/inbound/city_platform/case", [case_item("CP-T-10")],
                                     {"Authorization": "Bearer not-this-one"})
    assert status == 401 and body["error"]["reason"] == "invalid_token"


# --------------------------------------------------------------------------- HMAC


def _sink(gw: Gateway, pki: Pki, key_id: str, secret_env: str) -> RestSink:
    config = RestSinkConfig.model_validate({
        "url": gw.api.url + "/api/v1/inbound/province/case",
        "auth": {"type": "hmac", "key": {"env": secret_env}, "key_id": key_id},
        "tls": {"ca_file": str(pki.ca)},
    })
    return RestSink("province-gateway", config)


def _delivery(case_no: str) -> Delivery:
    return Delivery(delivery_id=1, destination="province-gateway", idempotency_key=f"k-{case_no}", kind="case",
                    record_key=case_no, case_no=case_no, body=case_item(case_no), attempt=1)


async def test_the_rest_sinks_hmac_signature_is_accepted_across_a_key_rotation(gw, pki, monkeypatch) -> None:
    # The gateway's own REST sink signs; the push API checks with the same canonical string.
    for key_id in ("prov-2026a", "prov-2026b"):
        monkeypatch.setenv("SIGNING_KEY", HMAC_KEYS[key_id])
        sink = _sink(gw, pki, key_id, "SIGNING_KEY")
        await sink.start()
        try:
            (result,) = await sink.deliver([_delivery(f"PV-{key_id}")])
        finally:
            await sink.close()
        assert result.error is None, result.error
        assert await gw.store.list_records(case_no=f"PV-{key_id}")
    assert await metric(gw, pki, "gateway_counterpart_authenticated_total", system="province",
                        credential="key prov-2026a") == 1


def _signed(key: str, path: str, body: bytes, *, key_id: str | None = None, timestamp: int | None = None,
            nonce: str = "0123456789abcdef0123456789abcdef") -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    headers = {"Content-Type": "application/json", "X-Timestamp": ts, "X-Nonce": nonce,
               "X-Signature": hmac_signature(key.encode(), canonical_string("POST", path, ts, nonce, body))}
    if key_id:
        headers["X-Key-Id"] = key_id
    return headers


async def _raw_post(gw: Gateway, pki: Pki, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    async with session(pki) as http, http.post(gw.api.url + path, data=body, headers=headers) as r:
        return r.status, await r.json()


async def test_a_replayed_hmac_request_is_401_and_stores_nothing_twice(gw, pki) -> None:
    path = "/api/v1/inbound/province/case"
    body = json.dumps([case_item("PV-R-1")]).encode()
    headers = _signed(HMAC_KEYS["prov-2026b"], path, body, key_id="prov-2026b")
    status, _ = await _raw_post(gw, pki, path, body, headers)
    assert status == 202
    status, answer = await _raw_post(gw, pki, path, body, headers)  # the very same bytes again
    assert status == 401 and answer["error"]["reason"] == "replayed"
    assert len(await gw.store.list_records(case_no="PV-R-1")) == 1
    (entry,) = await refusals(gw)
    assert entry["reason"] == "replayed" and entry["credential"] == "key prov-2026b"


async def test_stale_timestamps_expired_keys_tampered_bodies_and_other_systems_keys_are_refused(gw, pki) -> None:
    path = "/api/v1/inbound/province/case"
    body = json.dumps([case_item("PV-R-2")]).encode()
    cases = [
        (_signed(HMAC_KEYS["prov-2026b"], path, body, timestamp=int(time.time()) - 600), 401, "stale_timestamp"),
        (_signed(HMAC_KEYS["prov-2025"], path, body, key_id="prov-2025"), 401, "expired_key"),
        (_signed(HMAC_KEYS["prov-2026b"], path, body.replace(b"PV-R-2", b"PV-R-3"), nonce="f" * 32), 401,
         "invalid_signature"),
        (_signed(HMAC_KEYS["prov-2026b"], path, body, key_id="prov-9999", nonce="e" * 32), 401, "unknown_key"),
        (_signed(CITY_HMAC_KEY, path, body, nonce="d" * 32), 403, "credential_of_other_system"),
    ]
    for headers, status, reason in cases:
        got, answer = await _raw_post(gw, pki, path, body, headers)
        assert (got, answer["error"]["reason"]) == (status, reason), answer
    got, answer = await _raw_post(gw, pki, path, body, {"Content-Type": "application/json"})
    assert got == 401 and answer["error"]["reason"] == "missing_credentials"
    assert not await gw.store.list_records(case_no="PV-R-2")
    assert [e["reason"] for e in await refusals(gw)] == [
        "stale_timestamp", "expired_key", "invalid_signature", "unknown_key", "credential_of_other_system",
        "missing_credentials"]


# --------------------------------------------------------------------------- unconfigured systems, floods


async def test_a_push_system_without_credentials_refuses_every_push_with_403(gw, pki) -> None:
    async with session(pki, pki.county) as http:
        status, body, _ = await post(http, gw, "/api/v1/inbound/unconfigured/case", [case_item("UN-1")])
    assert status == 403 and body["error"]["reason"] == "not_configured"
    assert "[sources.unconfigured.auth]" in body["error"]["message"]


async def test_a_flood_of_identical_refusals_is_one_entry_then_one_summary(gw, pki) -> None:
    async with session(pki) as http:
        for _ in range(40):
            status, _, _ = await post(http, gw, "/api/v1/inbound/city_platform/case", [case_item("FL-1")],
                                      {"Authorization": "Bearer wrong"})
            assert status == 401
    assert len(await refusals(gw)) == 1  # the first, written at once
    assert await metric(gw, pki, "gateway_counterpart_refusals_total", system="city_platform",
                        reason="invalid_token") == 40
    await gw.refusals.close()  # the window closes (at shutdown, or every 60 s)
    first, summary = await refusals(gw)
    assert first["count"] == 1 and "summary" not in first
    assert summary["count"] == 39 and summary["summary"] is True and summary["reason"] == "invalid_token"


async def test_an_hmac_key_that_cannot_be_read_stops_the_start_with_its_name(tmp_path, pki, monkeypatch) -> None:
    set_secrets(monkeypatch)
    monkeypatch.delenv("TRUST_TEST_PROV_2026B")
    gateway = Gateway(load_config(write_site(tmp_path, pki)))
    with pytest.raises(ConfigError, match="HMAC key 'prov-2026b' is configured to come from environment variable "
                                          "TRUST_TEST_PROV_2026B, which is not set"):
        await gateway.start()
    await gateway.stop()

