"""Query endpoints, masking by role, health, metrics and the OpenAPI document, against a running gateway."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families
from test_api_support import (  # noqa: F401
    ID_NO,
    PHONE,
    PUSH_AUTH,
    case_item,
    gw_fixture,
    http_fixture,
    token_for,
)

from gateway.api import build_app, openapi_document, start_api
from gateway.app import Gateway
from gateway.audit.chain import GENESIS, canonical, entry_hash
from gateway.store import AcceptItem

PUSH = "/api/v1/inbound/hall_platform/case"


async def push(http, base_url: str, items: list[dict]) -> dict:
    async with http.post(base_url + PUSH, json=items, headers=PUSH_AUTH) as r:
        assert r.status in (202, 400), await r.text()
        return await r.json()


async def get(http, gw: Gateway, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """GET as an engineer unless other headers are given."""
    if headers is None:
        headers = await token_for(gw, "eng.query")
    async with http.get(gw.api.url + path, headers=headers) as r:
        return r.status, await r.json()


async def test_query_endpoints_need_an_authenticated_caller(gw, http) -> None:
    for path in ("/api/v1/records", "/api/v1/deliveries", "/api/v1/quarantine", "/api/v1/audit", "/api/v1/alerts"):
        status, body = await get(http, gw, path, {})
        assert status == 401 and "log in" in body["error"]["message"], path


async def test_records_are_masked_for_every_role_and_unmasked_only_for_an_auditor_with_a_reason(gw, http) -> None:
    await push(http, gw.api.url, [case_item("Q-2026-0001")])

    for role in ("engineer", "supervisor", "auditor"):
        status, page = await get(http, gw, "/api/v1/records?case_no=Q-2026-0001&kind=case",
                                 await token_for(gw, f"q.{role}", role))
        assert status == 200 and page["masked"] is True and page["count"] == 1, role
        data = page["items"][0]["record"]["data"]
        assert data["applicant_id_no"] == "110105********002X" and data["contact_phone"] == "138****5678"
        assert data["applicant_name"] == "张*" and data["contact_name"] == "张*"
        assert ID_NO not in json.dumps(page) and PHONE not in json.dumps(page) and "张三" not in json.dumps(page)

    auditor = await token_for(gw, "q.auditor", "auditor")
    _, page = await get(http, gw, "/api/v1/records?case_no=Q-2026-0001&kind=case&unmask=true&reason=核查投诉线索 2026-17",
                        auditor)
    assert page["masked"] is False
    assert page["items"][0]["record"]["data"]["applicant_id_no"] == ID_NO
    entries = await gw.store.audit_entries(case_no="Q-2026-0001")
    reads = [e.decoded() for e in entries if e.decoded()["action"] == "unmasked"]
    assert len(reads) == 1
    assert reads[0]["detail"]["user"] == "q.auditor" and reads[0]["detail"]["what"] == "records"
    assert reads[0]["detail"]["reason"] == "核查投诉线索 2026-17"


async def test_records_page_forward_with_after_id(gw, http) -> None:
    await push(http, gw.api.url, [case_item(f"Q-PAGE-{i}") for i in range(3)])
    _, first = await get(http, gw, "/api/v1/records?kind=case&limit=2")
    assert first["count"] == 2 and first["next"] == {"after_id": first["items"][-1]["id"]}
    _, second = await get(http, gw, f"/api/v1/records?kind=case&limit=2&after_id={first['next']['after_id']}")
    assert [r["record_key"] for r in second["items"]] == ["Q-PAGE-2"] and second["next"] is None


async def test_bad_query_parameters_are_400_naming_the_parameter(gw, http) -> None:
    status, body = await get(http, gw, "/api/v1/records?limit=many")
    assert status == 400 and body["error"]["parameter"] == "limit"
    status, body = await get(http, gw, "/api/v1/deliveries?state=lost")
    assert status == 400 and "pending, inflight, delivered, dead" in body["error"]["message"]
    status, body = await get(http, gw, "/api/v1/records?kind=cases")
    assert status == 400 and body["error"]["parameter"] == "kind"


async def test_deliveries_show_the_outbox_by_state_and_destination(gw, http) -> None:
    await push(http, gw.api.url, [case_item("Q-2026-0010")])
    for _ in range(100):  # the file sink delivers within a few polls
        _, page = await get(http, gw, "/api/v1/deliveries?destination=archive&case_no=Q-2026-0010")
        if page["items"] and page["items"][0]["state"] == "delivered":
            break
        await asyncio.sleep(0.05)
    (delivery,) = page["items"]
    assert delivery["state"] == "delivered" and delivery["kind"] == "case" and delivery["destination"] == "archive"
    _, dead = await get(http, gw, "/api/v1/deliveries?state=dead")
    assert dead["items"] == []


async def test_quarantine_lists_every_reason_with_the_counterparts_personal_keys_masked(gw, http) -> None:
    bad_id = "110105194912310021"
    await push(http, gw.api.url, [case_item("Q-2026-0020", id_no=bad_id)])
    _, page = await get(http, gw, "/api/v1/quarantine?system=hall_platform")
    (row,) = page["items"]
    assert row["errors"][0]["rule"] == "id_number_check"
    assert row["payload"]["applicantIdNo"] == "110105********0021"  # the hall platform's own key
    assert row["payload"]["contactPhone"] == "138****5678"
    assert row["payload"]["applicantName"] == "张*" and row["payload"]["contactName"] == "张*"
    assert bad_id not in json.dumps(page) and "张三" not in json.dumps(page)
    auditor = await token_for(gw, "q.auditor", "auditor")
    _, page = await get(http, gw, "/api/v1/quarantine?system=hall_platform&unmask=1&reason=fix the id check", auditor)
    assert page["items"][0]["payload"]["applicantIdNo"] == bad_id


async def test_audit_entries_are_decoded_and_their_hashes_can_be_recomputed(gw, http) -> None:
    await push(http, gw.api.url, [case_item("Q-2026-0030")])
    supervisor = await token_for(gw, "li.jiancha", "supervisor")
    _, page = await get(http, gw, "/api/v1/records?case_no=Q-2026-0030&unmask=1&reason=spot check",
                        await token_for(gw, "q.auditor", "auditor"))
    assert page["masked"] is False
    _, page = await get(http, gw, "/api/v1/audit?limit=1000", supervisor)
    entries = page["items"]
    assert entries[0]["seq"] == 1 and page["masked"] is True
    assert not any(e["masked"] for e in entries)  # nothing personal in the trail: every entry as chained
    previous = GENESIS
    for e in entries:
        assert entry_hash(previous, canonical(e["entry"]), "sha256") == e["hash"]
        previous = e["hash"]
    _, case_page = await get(http, gw, "/api/v1/audit?case_no=Q-2026-0030", supervisor)
    actions = [e["entry"]["action"] for e in case_page["items"]]
    assert actions[0] == "received" and all(e["case_no"] == "Q-2026-0030" for e in case_page["items"])
    assert "unmasked" in actions  # the auditor's read above
    _, later = await get(http, gw, f"/api/v1/audit?after_seq={entries[-1]['seq']}")
    assert later["items"] == [] or later["items"][0]["seq"] > entries[-1]["seq"]


async def test_alerts_are_the_supervision_alert_records_of_the_case(gw, http) -> None:
    await push(http, gw.api.url, [case_item("Q-2026-0040")])
    # An alert as electronic supervision stores it (stored directly: which rules fire is not this test's subject).
    data = {"alert_id": "sa-q-0040", "case_no": "Q-2026-0040", "rule": "acceptance_time_limit",
            "alert_type": "acceptance_overdue", "severity": "red", "raised_at": "2026-10-13T09:00:00+08:00",
            "description": "办件 Q-2026-0040 超过受理时限仍无受理记录。"}
    body = json.dumps({"kind": "supervision_alert", "schema_version": "1", "data": data, "provenance": {}},
                      ensure_ascii=False)
    await gw.store.commit_ingest([AcceptItem(
        system="supervision", kind="supervision_alert", record_key="sa-q-0040", version=1, case_no="Q-2026-0040",
        business_time=data["raised_at"], receipt_time=data["raised_at"], payload_hash="sha256:00",
        body=body, ref="rule acceptance_time_limit", receipt_id="R-alert-q-0040", destinations=(),
        idempotency_keys=(), mapping="supervision@1")], [])

    _, page = await get(http, gw, "/api/v1/alerts?case_no=Q-2026-0040&limit=1000",
                        await token_for(gw, "li.jiancha", "supervisor"))
    mine = [r for r in page["items"] if r["receipt_id"] == "R-alert-q-0040"]
    assert len(mine) == 1 and mine[0]["record"]["data"]["severity"] == "red"
    assert {r["kind"] for r in page["items"]} == {"supervision_alert"}  # the case itself is not an alert


async def test_healthz_says_alive_and_readyz_says_ready_with_the_store_writable(gw, http) -> None:
    status, body = await get(http, gw, "/healthz", {})
    assert status == 200 and body["status"] == "alive" and body["state"] == "started"
    assert body["push_systems"] == ["hall_json_only", "hall_platform"]
    status, body = await get(http, gw, "/readyz", {})
    assert status == 200 and body["ready"] is True and body["store"]["writable"] is True


async def test_metrics_are_prometheus_text_with_push_outcomes_and_deliveries(gw, http) -> None:
    await push(http, gw.api.url, [case_item("Q-2026-0050"), case_item("Q-2026-0051", id_no="110105194912310021")])
    async with http.get(gw.api.url + "/metrics") as r:
        assert r.status == 200 and r.content_type == "text/plain"
        text = await r.text()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    pushed = "gateway_api_inbound_items_total"
    assert samples[(pushed, (("form", "json"), ("status", "accepted"), ("system", "hall_platform")))] == 1
    assert samples[(pushed, (("form", "json"), ("status", "quarantined"), ("system", "hall_platform")))] == 1
    assert samples[("gateway_store_ingest_outcomes_total", (("status", "quarantined"),))] == 1
    assert ("gateway_deliveries", (("destination", "archive"), ("state", "pending"))) in samples
    assert samples[("gateway_store_up", ())] == 1


async def test_the_openapi_document_parses_and_describes_every_route(gw, http) -> None:
    status, doc = await get(http, gw, "/api/v1/openapi.json", {})
    assert status == 200 and doc["openapi"] == "3.1.0"
    assert doc["servers"][0]["url"] == gw.api.url
    app = build_app(gw)
    routes = {(r.resource.canonical, r.method.lower()) for r in app.router.routes() if r.method != "HEAD"}
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes == documented
    # Every reference resolves inside the document.
    refs = {v for v in _walk(doc) if isinstance(v, str) and v.startswith("#/")}
    for ref in refs:
        node = doc
        for part in ref[2:].split("/"):
            node = node[part]
    assert openapi_document()["info"]["title"].startswith("Exchange gateway API")


def _walk(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _certificates(tmp_path):
    """A CA, a server certificate for 127.0.0.1 and a client certificate (CN jiancha-terminal-01), as PEM files."""
    now = datetime.datetime.now(datetime.UTC)

    def issue(cn, issuer_key, issuer_name, *, ca=False, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(issuer_key or key, hashes.SHA256())
        return key, cert

    def write(stem, key, cert):
        (tmp_path / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (tmp_path / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return tmp_path / f"{stem}.pem", tmp_path / f"{stem}.key"

    ca_key, ca = issue("api-test CA", None, None, ca=True)
    server = issue("127.0.0.1", ca_key, ca.subject, san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client = issue("jiancha-terminal-01", ca_key, ca.subject)
    return write("ca", ca_key, ca)[0], write("server", *server), write("client", *client)


async def test_over_mutual_tls_a_client_certificate_alone_names_no_reader(gw, tmp_path) -> None:
    ca, (server_cert, server_key), (client_cert, client_key) = _certificates(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
    server_ctx.load_cert_chain(server_cert, server_key)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(ca))
    client_ctx.load_cert_chain(client_cert, client_key)
    auditor = await token_for(gw, "q.auditor", "auditor")

    tls_api = await start_api(gw, ssl_context=server_ctx)
    try:
        assert tls_api.url.startswith("https://127.0.0.1:")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as tls_http:
            await push(tls_http, tls_api.url, [case_item("Q-TLS-0001")])
            query = "/api/v1/records?case_no=Q-TLS-0001&kind=case&unmask=1&reason=complaint 17"
            async with tls_http.get(tls_api.url + query, headers={"X-Gateway-Role": "auditor"}) as r:
                assert r.status == 401  # the certificate is a machine's, not a person's login
            async with tls_http.get(tls_api.url + query, headers=auditor) as r:
                page = await r.json()
    finally:
        await tls_api.stop()
    assert page["masked"] is False and page["items"][0]["record"]["data"]["applicant_id_no"] == ID_NO
    reads = [e.decoded()["detail"] for e in await gw.store.audit_entries(case_no="Q-TLS-0001")
             if e.decoded()["action"] == "unmasked"]
    assert [(r["user"], r["role"], r["via"]) for r in reads] == [("q.auditor", "auditor", "token")]
