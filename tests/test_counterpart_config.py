"""Counterpart credentials in gateway.toml: settings that cannot work are configuration errors that say why,
the HMAC contract is one definition shared by the REST sink and the push API, and the replay memory is bounded
without ever forgetting a value still inside its window."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import gateway_adapters.rest
from gateway.app import build
from gateway.config import ConfigError, config_from_dict
from gateway.security import request_signing
from gateway.security.counterparts import ReplayCache

REPO = Path(__file__).resolve().parents[1]
FP = "6D:D3:DA:B3:AF:A6:A5:7D:99:7C:A7:FD:EB:8B:73:42:4D:96:9A:17:F6:83:7E:BC:CC:49:F3:6D:F1:08:26:4A"


def _build(tmp_path: Path, sources: dict, api: dict | None = None) -> None:
    if not (tmp_path / "mappings").exists():
        shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    raw = {"gateway": {"adapters": ["push"]}, "api": api or {}, "sources": {
        name: {"adapter": "push", "mapping": "mappings/hall_platform.in.yaml", **options}
        for name, options in sources.items()}}
    build(config_from_dict(raw, base_dir=tmp_path, path=tmp_path / "gateway.toml"))


@pytest.mark.parametrize(("auth", "message"), [
    ({}, "configure at least one of client_certificate, tokens, hmac or wsse"),
    ({"anonymous": True, "tokens": [{"sha256": "ab" * 32}]}, "cannot be combined with tokens"),
    ({"tokens": [{"sha256": "not-a-hash"}]}, "is not a SHA-256 fingerprint"),
    ({"client_certificate": {"subject": "county_hall"}}, "is not an RFC 4514 distinguished name"),
    ({"client_certificate": {}}, "needs fingerprints, a subject, or both"),
    ({"hmac": {"keys": [{"id": "a", "secret": {"env": "X"}}, {"id": "a", "secret": {"env": "Y"}}]}},
     "hmac key ids must be unique"),
    ({"hmac": {"keys": [{"id": "a", "secret": {"env": "X"}}], "max_skew": "2h"}}, "between 1 second and 1 hour"),
    ({"tokens": [{"sha256": "ab" * 32, "value": "secret"}]}, "Extra inputs are not permitted"),
])
def test_credentials_that_cannot_work_are_configuration_errors(tmp_path, auth, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _build(tmp_path, {"county_hall": {"auth": auth}})


def test_a_client_certificate_binding_needs_a_client_ca(tmp_path) -> None:
    with pytest.raises(ConfigError, match="client_certificate: the API asks for client certificates only with"):
        _build(tmp_path, {"county_hall": {"auth": {"client_certificate": {"fingerprints": [FP]}}}})


def test_one_credential_bound_to_two_systems_is_refused(tmp_path) -> None:
    token = {"tokens": [{"sha256": "ab" * 32, "label": "shared"}]}
    with pytest.raises(ConfigError, match="token shared is also a token of system 'county_hall'"):
        _build(tmp_path, {"county_hall": {"auth": token}, "city_platform": {"auth": token}})


def test_kinds_must_be_kinds_the_mapping_produces(tmp_path) -> None:
    with pytest.raises(ConfigError, match="'evaluation' is not a kind its mapping hall_platform produces"):
        _build(tmp_path, {"county_hall": {"auth": {"anonymous": True}, "kinds": ["case", "evaluation"]}})
    with pytest.raises(ConfigError, match="unknown record kind"):
        _build(tmp_path, {"county_hall": {"auth": {"anonymous": True}, "kinds": ["licence"]}})


def test_an_unreadable_ws_security_certificate_is_named(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"auth.wsse.certificates: cannot read .*missing.pem"):
        _build(tmp_path, {"ministry": {"auth": {"wsse": {"certificates": ["certs/missing.pem"]}}}})


def test_the_rest_sink_and_the_push_api_sign_with_one_canonical_string() -> None:
    assert gateway_adapters.rest.canonical_string is request_signing.canonical_string
    assert gateway_adapters.rest.hmac_signature is request_signing.hmac_signature


def test_the_replay_memory_forgets_only_what_left_the_window_and_refuses_when_full() -> None:
    now = [0.0]
    cache = ReplayCache(ttl=600, max_entries=3, clock=lambda: now[0])
    assert [cache.first_use(n) for n in ("a", "b", "a")] == [True, True, False]
    assert cache.first_use("c") is True
    assert cache.first_use("d") is None  # full of nonces still inside their window: refuse, forget none
    now[0] += 601
    assert cache.first_use("a") is True and cache.first_use("d") is True  # the window passed: room again
