"""`gateway certs init / issue / show` and `gateway counterparts token / hmac-key / list`: files with private
modes, fingerprints that match the files, and printed configuration that a gateway loads and uses."""

from __future__ import annotations

import hashlib
import re
import shutil
import stat
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gateway.cli import main
from gateway.config import load_config
from gateway.security.counterparts import parse_name

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_certs_init_writes_a_ca_a_server_certificate_and_the_seal_key_with_private_modes(tmp_path) -> None:
    certs = tmp_path / "certs"
    code, out = run("certs", "init", "--dir", str(certs), "--host", "gateway.hall.local", "--host", "10.8.0.5")

    assert code == 0, out
    for key in ("ca.key", "server.key", "audit-seal.key"):
        assert mode(certs / key) == 0o600, key
    assert mode(certs) == 0o700
    server = x509.load_pem_x509_certificate((certs / "server.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gateway.hall.local"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.8.0.5"]
    assert 'client_ca = "' in out and "audit seal key" in out

    code, out = run("certs", "init", "--dir", str(certs))
    assert code != 0 and "--force" in out  # an existing CA is never replaced by accident


def test_certs_issue_prints_the_fingerprint_and_subject_of_the_file_it_wrote(tmp_path) -> None:
    certs = tmp_path / "certs"
    run("certs", "init", "--dir", str(certs))
    code, out = run("certs", "issue", "county_hall", "--dir", str(certs))

    assert code == 0, out
    cert_file, key_file = certs / "clients" / "county_hall.crt", certs / "clients" / "county_hall.key"
    assert mode(key_file) == 0o600
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    printed = re.search(r'fingerprints = \["([0-9A-F:]+)"\]', out).group(1)
    assert printed.replace(":", "").lower() == cert.fingerprint(hashes.SHA256()).hex()
    subject = re.search(r'subject = "([^"]+)"', out).group(1)
    assert parse_name(subject) == cert.subject
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes()))
    code, shown = run("certs", "show", str(cert_file))
    assert code == 0 and printed in shown and subject in shown


def test_the_printed_configuration_is_what_a_gateway_loads(tmp_path) -> None:
    site = tmp_path / "site"
    shutil.copytree(REPO / "mappings", site / "mappings")
    (site / "gateway.toml").write_text('[gateway]\nadapters = ["push"]\n', encoding="utf-8")
    config = str(site / "gateway.toml")
    _, init_out = run("certs", "init", "-c", config)
    _, issue_out = run("certs", "issue", "county_hall", "-c", config)
    _, token_out = run("counterparts", "token", "county_hall", "--days", "30", "--label", "first")
    token = re.search(r"securely\): (\S+)", token_out).group(1)
    entry = re.search(r"tokens = \[ …, (\{.*\}) \]", token_out).group(1)
    api = init_out.split("In gateway.toml:", 1)[1].split("Then give", 1)[0]
    binding = issue_out.split("In gateway.toml:", 1)[1]
    (site / "gateway.toml").write_text(
        '[gateway]\nadapters = ["push"]\n' + api
        + '\n[sources.county_hall]\nadapter = "push"\nmapping = "mappings/hall_platform.in.yaml"\n'
        + f"\n[sources.county_hall.auth]\ntokens = [{entry}]\n" + binding, encoding="utf-8")

    cfg = load_config(site / "gateway.toml")
    assert cfg.api.tls_cert == "certs/server.crt" and cfg.api.client_certificates == "optional"
    code, out = run("check", "-c", config)
    assert code == 0, out
    assert "no credentials" not in out
    code, listed = run("counterparts", "list", "-c", config)
    assert "token first: until" in listed and "client certificate: subject CN=county_hall" in listed
    assert hashlib.sha256(token.encode()).hexdigest() in (site / "gateway.toml").read_text()


def test_counterparts_hmac_key_writes_a_private_key_file_and_never_overwrites_one(tmp_path) -> None:
    key = tmp_path / "secrets" / "province.key"
    code, out = run("counterparts", "hmac-key", "province", "--out", str(key), "--id", "prov-2026")
    assert code == 0 and mode(key) == 0o600 and len(key.read_text().strip()) == 64
    assert 'id = "prov-2026"' in out and 'encoding = "hex"' in out
    code, out = run("counterparts", "hmac-key", "province", "--out", str(key))
    assert code != 0 and "exists" in out
