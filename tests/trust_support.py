"""Shared set-up for the counterpart-identity tests: a development PKI made by the gateway's own tooling,
a gateway whose API speaks TLS on loopback with push systems bound to credentials, and TLS clients.

Fixtures and builders only; the test modules import them.
"""

from __future__ import annotations

import hashlib
import shutil
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from gateway.security.devpki import CertificateFiles, init_dev_pki, issue_client_certificate

REPO = Path(__file__).resolve().parents[1]
MAPPINGS = REPO / "mappings"

TOKEN_OLD = "city-token-2026-q3-5b0f0e7d"  # being rotated out: valid until a future date
TOKEN_NEW = "city-token-2026-q4-91c2aa10"  # its replacement, no expiry
TOKEN_EXPIRED = "city-token-2026-q1-0d77e2f3"  # past its not_after
HMAC_KEYS = {"prov-2025": "province-key-expired", "prov-2026a": "province-key-old", "prov-2026b": "province-key-new"}
CITY_HMAC_KEY = "city-platform-hmac-key"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Pki:
    certs: Path
    ca: Path
    server: CertificateFiles
    county: CertificateFiles  # bound to county_hall by fingerprint and subject
    city: CertificateFiles  # bound to city_platform by subject only
    stranger: CertificateFiles  # issued by the right CA, bound to no system
    other_ca_county: CertificateFiles  # another CA's certificate with county_hall's very subject
    signing: CertificateFiles  # RSA, bound to ministry for WS-Security signatures
    ministry_other: CertificateFiles  # RSA, another system's signing certificate


def make_pki(root: Path) -> Pki:
    certs = root / "certs"
    dev = init_dev_pki(certs, seal_key=False)
    # Another CA with the very same name as ours: only its key tells its certificates apart.
    init_dev_pki(root / "other-ca", seal_key=False, organization="exchange-gateway development")
    return Pki(
        certs=certs, ca=dev.ca.cert, server=dev.server,
        county=issue_client_certificate(certs, "county_hall"),
        city=issue_client_certificate(certs, "city_platform"),
        stranger=issue_client_certificate(certs, "stranger"),
        other_ca_county=issue_client_certificate(root / "other-ca", "county_hall"),
        signing=issue_client_certificate(certs, "ministry", key_type="rsa"),
        ministry_other=issue_client_certificate(certs, "other_ministry", key_type="rsa"),
    )


CONFIG = """\
[gateway]
name = "trust-test"
store = "sqlite:///gateway.db"
adapters = ["push"]
certs_dir = "certs"

[api]
port = 0
tls_cert = "{server_cert}"
tls_key = "{server_key}"
client_ca = "{ca}"
client_certificates = "{client_certificates}"

[audit]
seal = false

[supervision]
enabled = false

[sources.county_hall]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
kinds = ["case"]

[sources.county_hall.auth.client_certificate]
fingerprints = ["{county_fp}"]
subject = "{county_subject}"

[sources.city_platform]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"

[sources.city_platform.auth]
client_certificate = {{ subject = "{city_subject}" }}
tokens = [
  {{ sha256 = "{token_old}", not_after = 2099-12-31T23:59:59+08:00, label = "2026-q3" }},
  {{ sha256 = "{token_new}", label = "2026-q4" }},
  {{ sha256 = "{token_expired}", not_after = 2026-03-31T23:59:59+08:00, label = "2026-q1" }},
]
hmac = {{ keys = [{{ id = "city-1", secret = {{ env = "TRUST_TEST_CITY_HMAC" }} }}] }}

[sources.province]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"

[sources.province.auth.hmac]
max_skew = "2m"
keys = [
  {{ id = "prov-2025", secret = {{ file = "secrets/prov-2025.key" }}, not_after = 2025-12-31T23:59:59+08:00 }},
  {{ id = "prov-2026a", secret = {{ file = "secrets/prov-2026a.key" }}, not_after = 2099-01-01T00:00:00 }},
  {{ id = "prov-2026b", secret = {{ env = "TRUST_TEST_PROV_2026B" }} }},
]

[sources.ministry]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
accept = ["soap"]

[sources.ministry.auth.wsse]
username_token = {{ username = "ministry-gw", password = {{ env = "TRUST_TEST_WSSE_PASSWORD" }} }}
certificates = ["{signing_cert}"]
max_skew = "5m"

[sources.other_ministry]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
accept = ["soap"]
auth = {{ wsse = {{ certificates = ["{other_signing_cert}"] }} }}

[sources.unconfigured]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
"""

WSSE_PASSWORD = "ministry-wsse-password"


def write_site(root: Path, pki: Pki, *, client_certificates: str = "optional") -> Path:
    """A gateway directory with the project's mappings, HMAC key files (0600) and gateway.toml."""
    shutil.copytree(MAPPINGS, root / "mappings")
    secrets = root / "secrets"
    secrets.mkdir()
    for key_id in ("prov-2025", "prov-2026a"):
        path = secrets / f"{key_id}.key"
        path.write_text(HMAC_KEYS[key_id] + "\n", encoding="utf-8")
        path.chmod(0o600)
    config = root / "gateway.toml"
    config.write_text(CONFIG.format(
        server_cert=pki.server.cert, server_key=pki.server.key, ca=pki.ca, client_certificates=client_certificates,
        county_fp=pki.county.fingerprint_text, county_subject=pki.county.subject, city_subject=pki.city.subject,
        token_old=sha(TOKEN_OLD), token_new=sha(TOKEN_NEW), token_expired=sha(TOKEN_EXPIRED),
        signing_cert=pki.signing.cert, other_signing_cert=pki.ministry_other.cert,
    ), encoding="utf-8")
    return config


SINCE: dict[int, int] = {}
"""Per shared gateway (by id): the audit seq where the running test started."""


async def fresh_start(gw) -> None:
    """Let a test on a shared gateway see only its own refusals: a new refusal log, the trail position noted."""
    from gateway.security.refusals import RefusalLog

    gw.refusals = RefusalLog(gw.store.audit_event)
    SINCE[id(gw)] = (await gw.store.audit_head())[0]


async def refusals(gw) -> list[dict]:
    """The detail (and system) of every counterpart_refused entry since the test started, oldest first."""
    rows = await gw.store.audit_entries(after_seq=SINCE.get(id(gw), 0), limit=10_000)
    return [dict(r.decoded()["detail"], system=r.decoded()["system"]) for r in rows
            if r.decoded()["action"] == "counterpart_refused"]


def set_secrets(monkeypatch) -> None:
    monkeypatch.setenv("TRUST_TEST_CITY_HMAC", CITY_HMAC_KEY)
    monkeypatch.setenv("TRUST_TEST_PROV_2026B", HMAC_KEYS["prov-2026b"])
    monkeypatch.setenv("TRUST_TEST_WSSE_PASSWORD", WSSE_PASSWORD)


def client_context(pki: Pki, cert: CertificateFiles | None = None) -> ssl.SSLContext:
    """A TLS client that trusts the development CA and presents ``cert`` (or no certificate)."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    return ctx


def session(pki: Pki, cert: CertificateFiles | None = None) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(pki, cert)))


def case_item(case_no: str, **fields: object) -> dict[str, object]:
    """A 办件 as the hall platform mapping reads it."""
    item: dict[str, object] = {
        "dataType": "CASE", "caseNo": case_no, "itemCode": "3706000001", "itemName": "食品经营许可",
        "applicantType": "PERSON", "applicantName": "张三", "applicantIdType": "10",
        "applicantIdNo": "11010519491231002X", "contactName": "张三", "contactPhone": "13812345678",
        "submitTime": "2026-09-29 10:00:00", "regionCode": "370602", "version": 1,
    }
    item.update(fields)
    return item


def acceptance_item(case_no: str) -> dict[str, object]:
    return {"dataType": "ACCEPT", "caseNo": case_no, "deptName": "烟台市芝罘区行政审批服务局",
            "handler": "王五", "status": "ACCEPTED", "acceptTime": "2026-09-29 11:00:00"}
