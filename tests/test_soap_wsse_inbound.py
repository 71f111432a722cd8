"""Inbound SOAP with WS-Security on /soap/{system}: envelopes signed and tokened by the SOAP adapter's own
client-side WS-Security (xmlsec, zeep's UsernameToken), accepted when right, refused with WSS fault codes when
missing, wrong, stale, replayed, altered after signing, wrapped, or made with another system's key."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from lxml import etree
from trust_support import (
    WSSE_PASSWORD,
    Pki,
    case_item,
    fresh_start,
    make_pki,
    refusals,
    session,
    set_secrets,
    write_site,
)
from zeep.wsse.username import UsernameToken

from gateway.api._soap import SOAP11, TNS
from gateway.app import Gateway
from gateway.config import load_config
from gateway.security.wsse import WSSE, WSU
from gateway_adapters.soap._wsse import WsseSecurity, X509Signer

FAULT_NS = {"s": SOAP11}


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


def envelope(case_no: str) -> etree._Element:
    fields = "".join(f"<{k}>{v}</{k}>" for k, v in case_item(case_no).items())
    text = (f'<soapenv:Envelope xmlns:soapenv="{SOAP11}" xmlns:gw="{TNS}"><soapenv:Header/><soapenv:Body>'
            f"<gw:submitRecords><gw:kind>case</gw:kind><gw:item>{fields}</gw:item></gw:submitRecords>"
            "</soapenv:Body></soapenv:Envelope>")
    return etree.fromstring(text.encode())


def secure(env: etree._Element, pki: Pki, *, password: str = WSSE_PASSWORD, signer: str = "signing",
           username: bool = True, sign: bool = True, created: dt.datetime | None = None) -> etree._Element:
    """WS-Security as the SOAP adapter applies it to what it sends: Timestamp, UsernameToken digest, signature."""
    cert = getattr(pki, signer)
    token = UsernameToken("ministry-gw", password, use_digest=True, created=created) if username else None
    x509 = X509Signer(cert.key.read_bytes(), cert.cert.read_bytes(), None) if sign else None
    WsseSecurity(username_token=token, signer=x509, timestamp_ttl_seconds=300).apply(env, {})
    return env


async def send(gw: Gateway, pki: Pki, env: etree._Element | bytes, system: str = "ministry"
               ) -> tuple[int, etree._Element, dict[str, str]]:
    body = env if isinstance(env, bytes) else etree.tostring(env)
    async with session(pki) as http, http.post(f"{gw.api.url}/soap/{system}", data=body,
                                               headers={"Content-Type": "text/xml; charset=utf-8"}) as r:
        return r.status, etree.fromstring(await r.read()), dict(r.headers)


def fault(doc: etree._Element) -> tuple[str, str]:
    el = doc.find("s:Body/s:Fault", FAULT_NS)
    assert el is not None, etree.tostring(doc)
    return el.findtext("faultcode"), el.findtext("faultstring")


async def test_a_signed_envelope_with_a_username_token_is_accepted(gw, pki) -> None:
    status, doc, _ = await send(gw, pki, secure(envelope("MIN-2026-0001"), pki))
    assert status == 200, etree.tostring(doc)
    assert doc.findtext(f".//{{{TNS}}}accepted") == "1"
    rows = await gw.store.list_records(case_no="MIN-2026-0001")
    assert rows and rows[0]["system"] == "ministry"


async def test_without_ws_security_the_answer_is_401_invalid_security(gw, pki) -> None:
    status, doc, headers = await send(gw, pki, envelope("MIN-2026-0002"))
    code, text = fault(doc)
    assert status == 401 and code == "wsse:InvalidSecurity" and "requires WS-Security" in text
    assert 'WS-Security realm="exchange-gateway/ministry"' in headers["WWW-Authenticate"]
    assert not await gw.store.list_records(case_no="MIN-2026-0002")


async def test_a_wrong_password_digest_is_failed_authentication(gw, pki) -> None:
    status, doc, _ = await send(gw, pki, secure(envelope("MIN-2026-0003"), pki, password="guess"))
    assert status == 401 and fault(doc)[0] == "wsse:FailedAuthentication"


async def test_the_same_envelope_twice_is_a_replay(gw, pki) -> None:
    body = etree.tostring(secure(envelope("MIN-2026-0004"), pki))
    assert (await send(gw, pki, body))[0] == 200
    status, doc, _ = await send(gw, pki, body)
    code, text = fault(doc)
    assert status == 401 and code == "wsse:FailedAuthentication" and "replay" in text
    assert len(await gw.store.list_records(case_no="MIN-2026-0004")) == 1


async def test_a_token_created_outside_the_window_is_message_expired(gw, pki) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    status, doc, _ = await send(gw, pki, secure(envelope("MIN-2026-0005"), pki, created=old))
    assert status == 401 and fault(doc)[0] == "wsse:MessageExpired"


async def test_a_body_changed_after_signing_fails_the_check(gw, pki) -> None:
    env = secure(envelope("MIN-2026-0006"), pki)
    case_no = env.find(f".//{{{TNS}}}item/caseNo")
    case_no.text = "MIN-2026-9999"
    status, doc, _ = await send(gw, pki, env)
    assert status == 401 and fault(doc)[0] == "wsse:FailedCheck"
    assert not await gw.store.list_records(case_no="MIN-2026-9999")


async def test_a_wrapped_signature_with_the_signed_body_moved_aside_is_refused(gw, pki) -> None:
    env = secure(envelope("MIN-2026-0007"), pki)
    body = env.find(f"{{{SOAP11}}}Body")
    # Signature wrapping: keep the signed Body (with its id) in the header, put a forged Body in its place.
    env.find(f"{{{SOAP11}}}Header").append(copy.deepcopy(body))
    body.find(f".//{{{TNS}}}item/caseNo").text = "MIN-2026-FORGED"
    status, doc, _ = await send(gw, pki, env)
    code, text = fault(doc)
    assert status == 401 and code == "wsse:InvalidSecurity" and "exactly one" in text
    del body.attrib[f"{{{WSU}}}Id"]  # …and with the forged Body not claiming the id at all
    status, doc, _ = await send(gw, pki, env)
    assert status == 401 and "does not cover the SOAP Body" in fault(doc)[1]
    assert not await gw.store.list_records(case_no="MIN-2026-FORGED")


async def test_a_signature_without_the_timestamp_or_a_password_in_clear_is_refused(gw, pki) -> None:
    env = secure(envelope("MIN-2026-0008"), pki)
    security = env.find(f"{{{SOAP11}}}Header/{{{WSSE}}}Security")
    security.remove(security.find(f"{{{WSU}}}Timestamp"))
    status, doc, _ = await send(gw, pki, env)
    assert status == 401 and "wsu:Timestamp" in fault(doc)[1]

    env = envelope("MIN-2026-0009")
    WsseSecurity(username_token=UsernameToken("ministry-gw", WSSE_PASSWORD)).apply(env, {})  # PasswordText
    status, doc, _ = await send(gw, pki, env)
    assert status == 401 and fault(doc)[0] == "wsse:UnsupportedSecurityToken"


async def test_an_envelope_signed_with_another_systems_key_is_403(gw, pki) -> None:
    env = secure(envelope("MIN-2026-0010"), pki, signer="ministry_other")
    status, doc, headers = await send(gw, pki, env)
    code, text = fault(doc)
    assert status == 403 and "belongs to system 'other_ministry'" in text and "WWW-Authenticate" not in headers
    # The same envelope is accepted where that key belongs (other_ministry needs only the signature).
    status, doc, _ = await send(gw, pki, secure(envelope("MIN-2026-0011"), pki, signer="ministry_other",
                                                username=False), system="other_ministry")
    assert status == 200, etree.tostring(doc)
    (refused,) = await refusals(gw)
    assert refused["system"] == "ministry" and refused["credential_system"] == "other_ministry"
