"""`gateway check` and the start-up log warn of what works but must not reach production unnoticed: push
systems without credentials or anonymous, certificates near or past expiry, key files others can read, the
development seal key, an API off loopback without TLS."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.app import Gateway, build
from gateway.audit.keys import generate_seal_key
from gateway.cli import main
from gateway.config import load_config
from gateway.security.checks import security_warnings
from gateway.security.devpki import init_dev_pki, issue_client_certificate

REPO = Path(__file__).resolve().parents[1]


def _certificate(path: Path, cn: str, days_left: float) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now + dt.timedelta(days=days_left)).sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _site(root: Path, body: str) -> Path:
    shutil.copytree(REPO / "mappings", root / "mappings")
    config = root / "gateway.toml"
    config.write_text(body, encoding="utf-8")
    return config


RISKY = """\
[gateway]
adapters = ["push", "rest"]
store = "sqlite:///gateway.db"

[api]
host = "0.0.0.0"
port = 0

[sources.open_door]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
auth = {{ anonymous = true }}

[sources.forgotten]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"

[sources.rotating]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
auth = {{ tokens = [{{ sha256 = "{}", not_after = {} }}] }}
""".format("ab" * 32, (dt.datetime.now(dt.UTC) + dt.timedelta(days=5)).replace(microsecond=0).isoformat())


SINK_WITH_SECRETS = """
[sinks.province]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "https://province.example/api/records"
auth = { type = "bearer", token = { file = "secrets/province.token" } }
tls = { cert_file = "certs/gw-client.crt", key_file = "secrets/gw-client.key" }
"""


def _warnings(config: Path) -> list[str]:
    cfg = load_config(config)
    return [str(w) for w in security_warnings(cfg, build(cfg))]


def test_check_lists_every_risky_setting_and_strict_makes_them_fail(tmp_path) -> None:
    config = _site(tmp_path, RISKY + SINK_WITH_SECRETS)
    certs = tmp_path / "certs"
    certs.mkdir()
    _certificate(certs / "partner.crt", "partner soon", days_left=10)
    _certificate(certs / "old.crt", "partner gone", days_left=-1)
    (certs / "stray.key").write_text("-----BEGIN PRIVATE KEY-----\n", encoding="utf-8")
    (certs / "stray.key").chmod(0o644)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "province.token").write_text("t0ken\n", encoding="utf-8")
    (secrets / "province.token").chmod(0o640)
    (secrets / "gw-client.key").write_text("-----BEGIN PRIVATE KEY-----\n", encoding="utf-8")
    (secrets / "gw-client.key").chmod(0o604)

    result = CliRunner().invoke(main, ["check", "-c", str(config)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "push system 'forgotten' has no credentials configured: the API REFUSES every push" in out
    assert "push system 'open_door' accepts ANONYMOUS pushes" in out
    assert "push system 'rotating': its last valid token expires within 30 days" in out
    assert "the API listens on 0.0.0.0" in out and "WITHOUT TLS" in out
    assert "(CN=partner soon) expires in 9 day(s)" in out or "(CN=partner soon) expires in 10 day(s)" in out
    assert "(CN=partner gone) EXPIRED" in out
    assert "stray.key is readable by others (mode 644)" in out and "chmod 600" in out
    assert "secret of province: " in out and "province.token is readable by group (mode 640)" in out
    assert "gw-client.key is readable by others (mode 604)" in out
    assert "will CREATE a development seal key" in out
    strict = CliRunner().invoke(main, ["check", "--strict", "-c", str(config)])
    assert strict.exit_code == 1


def test_the_development_seal_key_and_ca_are_named_once_they_exist(tmp_path) -> None:
    config = _site(tmp_path, RISKY.replace('host = "0.0.0.0"', 'host = "127.0.0.1"'))
    init_dev_pki(tmp_path / "certs")  # the CA, the server certificate and the development seal key
    text = config.read_text().replace("[api]", '[api]\ntls_cert = "certs/server.crt"\ntls_key = "certs/server.key"\n'
                                               'client_ca = "certs/ca.crt"')
    config.write_text(text, encoding="utf-8")
    found = _warnings(config)
    assert any("sealed with the DEVELOPMENT seal key" in w for w in found)
    assert any("is the development CA made by `gateway certs init`" in w for w in found)
    assert not any("WITHOUT TLS" in w for w in found)


def test_a_production_shaped_configuration_has_no_warnings(tmp_path, monkeypatch) -> None:
    certs = tmp_path / "certs"
    pki = init_dev_pki(certs, seal_key=False)
    generate_seal_key(certs, common_name="烟台市行政审批服务局 audit seal", organization="烟台市行政审批服务局")
    client = issue_client_certificate(certs, "county_hall")
    # A real deployment trusts the counterparts' CA; copy ours under another name so it is not flagged as ours.
    ca = tmp_path / "partners-ca.pem"
    _certificate(ca, "Shandong Government Service CA", days_left=900)
    secret = tmp_path / "hmac.key"
    secret.write_text("k" * 64, encoding="utf-8")
    secret.chmod(0o600)
    config = _site(tmp_path, f"""\
[gateway]
adapters = ["push"]

[api]
host = "10.8.0.5"
tls_cert = "{pki.server.cert}"
tls_key = "{pki.server.key}"
client_ca = "{ca}"
client_certificates = "optional"

[sources.county_hall]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"

[sources.county_hall.auth]
client_certificate = {{ fingerprints = ["{client.fingerprint_text}"] }}
hmac = {{ keys = [{{ id = "k1", secret = {{ file = "{secret}" }} }}] }}
""")
    (certs / "ca.crt").unlink()  # only the partners' CA is trusted
    (certs / "ca.key").unlink()
    assert _warnings(config) == []


async def test_gateway_run_logs_the_same_warnings_and_says_when_it_creates_the_development_seal_key(
        tmp_path, caplog) -> None:
    config = _site(tmp_path, RISKY.replace('host = "0.0.0.0"', 'host = "127.0.0.1"'))
    caplog.set_level(logging.WARNING, logger="gateway")
    gw = Gateway(load_config(config))
    await gw.start()
    await gw.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "gateway"]
    assert any("push system 'forgotten' has no credentials configured" in m for m in messages)
    assert any("accepts ANONYMOUS pushes" in m for m in messages)
    assert any("created a DEVELOPMENT audit seal key" in m for m in messages)
    assert (tmp_path / "certs" / "audit-seal.key").exists()  # created, as before, for the demo
