"""Seal signers: keys and certificates on disk, a signing service over HTTP, and the SM2 extension point."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from test_audit import fill, fill_to

from gateway.audit import (
    ExternalSigner,
    Sealer,
    SignerError,
    generate_seal_key,
    key_id_of,
    load_certificates,
    load_local_signer,
    make_signer,
    register_signature_algorithm,
    register_signer_backend,
    verify_store,
)
from gateway.audit.keys import KEY_FILE
from gateway.audit.signers import _BACKENDS, _VERIFIERS, LocalSigner, Signer, verify_signature

# ---------------------------------------------------------------------------- keys on disk


def test_keygen_writes_a_private_key_only_the_owner_reads_and_a_certificate(tmp_path: Path) -> None:
    files = generate_seal_key(tmp_path / "certs", organization="某县行政审批服务局")
    assert stat.S_IMODE(os.stat(files.key_path).st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(files.cert_path.read_bytes())
    assert key_id_of(cert) == files.key_id and "某县行政审批服务局" in cert.subject.rfc4514_string()
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    signer = load_local_signer(tmp_path / "certs")
    assert signer.key_id == files.key_id and signer.algorithm == "ed25519"


def test_replacing_a_key_keeps_the_old_certificate_trusted(tmp_path: Path) -> None:
    first = generate_seal_key(tmp_path)
    with pytest.raises(SignerError, match="already exists"):
        generate_seal_key(tmp_path)
    second = generate_seal_key(tmp_path, "ecdsa-p256-sha256", force=True)
    assert second.retired is not None and second.retired.exists()
    assert set(load_certificates(tmp_path)) == {first.key_id, second.key_id}
    assert load_local_signer(tmp_path).algorithm == "ecdsa-p256-sha256"


def test_a_certificate_that_does_not_belong_to_the_key_is_refused(tmp_path: Path) -> None:
    generate_seal_key(tmp_path / "a")
    other = x509.load_pem_x509_certificate((tmp_path / "a" / "audit-seal.crt").read_bytes())
    with pytest.raises(SignerError, match="does not belong"):
        LocalSigner(ed25519.Ed25519PrivateKey.generate(), other)


def test_missing_key_error_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(SignerError, match="gateway audit keygen"):
        make_signer("local", certs_dir=tmp_path)
    (tmp_path / KEY_FILE).write_text("not a key")
    (tmp_path / "audit-seal.crt").write_text("not a cert")
    with pytest.raises(SignerError, match="audit-seal.key: not an unencrypted PEM private key"):
        load_local_signer(tmp_path)


async def test_ecdsa_p256_signatures_verify_and_reject_other_data(tmp_path: Path) -> None:
    generate_seal_key(tmp_path, "ecdsa-p256-sha256")
    signer = load_local_signer(tmp_path)
    sig = await signer.sign(b"statement")
    verify_signature(signer.certificate, "ecdsa-p256-sha256", b"statement", sig)
    from cryptography.exceptions import InvalidSignature

    with pytest.raises(InvalidSignature):
        verify_signature(signer.certificate, "ecdsa-p256-sha256", b"statemenT", sig)


# ---------------------------------------------------------------------------- a signing service over HTTP


class SigningService:
    """A local stand-in for a 签名验签服务器: signs with its own key; can fail, hang or misbehave."""

    def __init__(self, cert_dir: Path) -> None:
        generate_seal_key(cert_dir, common_name="signing service (test)")
        self.inner = load_local_signer(cert_dir)
        self.mode = "ok"
        self.seen: list[dict] = []

    async def sign(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer s3cret":
            return web.json_response({"error": "unauthorised"}, status=401)
        body = await request.json()
        self.seen.append(body)
        if self.mode == "down":
            return web.json_response({"error": "HSM offline"}, status=503)
        if self.mode == "slow":
            await asyncio.sleep(2)
        signature = await self.inner.sign(base64.b64decode(body["data"]))
        if self.mode == "garbage":
            signature = bytes(64)
        return web.json_response({"signature": base64.b64encode(signature).decode(), "key_id": self.inner.key_id})

    async def certificate(self, request: web.Request) -> web.Response:
        return web.Response(text=self.inner.certificate_pem, content_type="application/x-pem-file")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/sign", self.sign)
        app.router.add_get("/certificate", self.certificate)
        return app


@pytest.fixture
async def service(aiohttp_server, tmp_path: Path):
    svc = SigningService(tmp_path / "service-keys")
    server = await aiohttp_server(svc.app())
    svc.base = str(server.make_url(""))  # type: ignore[attr-defined]
    return svc


async def test_seals_are_signed_through_the_signing_service(store, service) -> None:
    cert = await ExternalSigner.fetch_certificate(f"{service.base}/certificate")
    signer = ExternalSigner(f"{service.base}/sign", cert, token="s3cret", timeout=5)
    try:
        await fill_to(store, 200)
        made = await Sealer(store, signer, max_entries=80).seal_now()
    finally:
        await signer.close()
    assert len(made) == 3 and len(service.seen) == 3
    assert service.seen[0]["algorithm"] == "ed25519" and service.seen[0]["key_id"] == key_id_of(cert)
    assert all(s.state == "signed" and s.key_id == key_id_of(cert) for s in await store.list_seals())
    report = await verify_store(store, trusted={key_id_of(cert): cert})
    assert report.ok and report.seals_signed == 3, report.render()


async def test_signing_service_outage_leaves_seals_pending_until_it_is_back(store, service) -> None:
    cert = await ExternalSigner.fetch_certificate(f"{service.base}/certificate")
    signer = ExternalSigner(f"{service.base}/sign", cert, token="s3cret", timeout=5)
    sealer = Sealer(store, signer)
    try:
        service.mode = "down"
        await fill(store, 20)
        await sealer.seal_now()
        assert sealer.status().pending == 1
        assert "HTTP 503" in sealer.status().last_error and "HSM offline" in sealer.status().last_error
        service.mode = "ok"
        assert await sealer.sign_pending() == 1
    finally:
        await signer.close()
    assert (await verify_store(store, trusted={key_id_of(cert): cert})).ok


async def test_a_signature_that_does_not_verify_is_never_stored(store, service) -> None:
    cert = await ExternalSigner.fetch_certificate(f"{service.base}/certificate")
    signer = ExternalSigner(f"{service.base}/sign", cert, token="s3cret", timeout=5)
    sealer = Sealer(store, signer)
    service.mode = "garbage"
    try:
        await fill(store, 10)
        await sealer.seal_now()
    finally:
        await signer.close()
    (seal,) = await store.list_seals()
    assert seal.state == "pending" and seal.signature is None
    assert "does not verify against the pinned certificate" in seal.last_error


async def test_a_slow_signing_service_times_out_and_a_wrong_token_is_reported(store, service) -> None:
    cert = await ExternalSigner.fetch_certificate(f"{service.base}/certificate")
    slow = ExternalSigner(f"{service.base}/sign", cert, token="s3cret", timeout=0.2)
    service.mode = "slow"
    await fill(store, 10)
    try:
        await Sealer(store, slow).seal_now()
    finally:
        await slow.close()
    (seal,) = await store.list_seals()
    assert seal.state == "pending" and "unreachable" in seal.last_error
    service.mode = "ok"
    wrong = ExternalSigner(f"{service.base}/sign", cert, token="nope", timeout=5)
    with pytest.raises(SignerError, match="answered HTTP 401"):
        await wrong.sign(b"x")
    await wrong.close()


async def test_a_signing_service_for_an_unknown_algorithm_needs_a_verifier(tmp_path: Path) -> None:
    generate_seal_key(tmp_path)
    cert = load_local_signer(tmp_path).certificate
    with pytest.raises(SignerError, match="register a verifier"):
        ExternalSigner("https://127.0.0.1:1/sign", cert, algorithm="sm2-sm3")


# ---------------------------------------------------------------------------- the SM2 extension point


class PluggedSigner(Signer):
    """Stands in for a vetted SM2 backend: its own algorithm name, signing delegated to a key."""

    def __init__(self, inner: LocalSigner, algorithm: str) -> None:
        self.inner = inner
        self.algorithm = algorithm

    @property
    def certificate(self) -> x509.Certificate:
        return self.inner.certificate

    async def sign(self, data: bytes) -> bytes:
        return await self.inner.sign(data)


async def test_a_registered_backend_and_verifier_seal_and_verify_end_to_end(store, tmp_path: Path) -> None:
    generate_seal_key(tmp_path / "k")
    inner = load_local_signer(tmp_path / "k")
    register_signer_backend("x-test", lambda **kw: PluggedSigner(inner, "x-test-sig"))
    try:
        signer = make_signer("x-test")
        await fill(store, 10)
        await Sealer(store, signer).seal_now()
        trusted = load_certificates(tmp_path / "k")
        # until a verifier is registered, such seals are reported as uncheckable, never as valid
        report = await verify_store(store, trusted=trusted)
        assert report.first_problem == "seal 1: signature algorithm 'x-test-sig' cannot be checked here " \
                                       "(no verifier installed)"
        register_signature_algorithm("x-test-sig", lambda cert, data, sig: verify_signature(cert, "ed25519", data, sig))
        assert (await verify_store(store, trusted=trusted)).ok
    finally:
        _VERIFIERS.pop("x-test-sig", None)
        _BACKENDS.pop("x-test", None)
