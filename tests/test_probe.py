"""``gateway probe``: the container's HEALTHCHECK asks /readyz where gateway.toml says the API listens."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_api_support import gw_fixture, write_gateway_dir  # noqa: F401
from trust_support import make_pki, set_secrets, write_site

from gateway.app import Gateway
from gateway.config import config_from_dict, load_config
from gateway.observability.probe import probe_command, probe_url


def pin_port(config: Path, port: int) -> None:
    """The running gateway took a free port (port = 0); write it down as an operator would have."""
    text = config.read_text(encoding="utf-8")
    config.write_text(re.sub(r"(?m)^port = 0$", f"port = {port}", text, count=1), encoding="utf-8")


def port_of(gw: Gateway) -> int:
    return int(gw.api.url.rsplit(":", 1)[1])


async def run_probe(*args: str) -> Result:
    # urllib blocks: off the event loop that serves the gateway under test
    return await asyncio.to_thread(CliRunner().invoke, probe_command, list(args))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_probe_exits_0_when_ready_and_1_with_the_reasons_when_not(gw: Gateway, tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    pin_port(config, port_of(gw))
    ready = await run_probe("-c", str(config))
    assert ready.exit_code == 0, ready.output
    assert ready.output == f"http://127.0.0.1:{port_of(gw)}/readyz: 200 ready\n"
    assert (await run_probe("-c", str(config), "--quiet")).output == ""

    gw.stopping.set()
    stopping = await run_probe("-c", str(config))
    assert stopping.exit_code == 1
    assert stopping.output == f"http://127.0.0.1:{port_of(gw)}/readyz: 503 stopping: finishing what is in flight\n"
    alive = await run_probe("-c", str(config), "--alive")  # the process still answers
    assert alive.exit_code == 0 and alive.output == f"http://127.0.0.1:{port_of(gw)}/healthz: 200 alive\n"


async def test_probe_reaches_a_tls_api_trusting_exactly_its_configured_certificate(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    set_secrets(monkeypatch)
    pki = make_pki(tmp_path)
    config = write_site(tmp_path, pki, client_certificates="optional")
    gw = Gateway(load_config(config))
    await gw.start()
    try:
        pin_port(config, port_of(gw))
        result = await run_probe("-c", str(config))
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"https://127.0.0.1:{port_of(gw)}/readyz: 200")
        # a certificate the same CA issued to a counterpart is not the API's own: not trusted
        text = config.read_text(encoding="utf-8").replace(f'tls_cert = "{pki.server.cert}"',
                                                           f'tls_cert = "{pki.county.cert}"')
        config.write_text(text, encoding="utf-8")
        refused = await run_probe("-c", str(config))
        assert refused.exit_code == 1 and "CERTIFICATE_VERIFY_FAILED" in refused.output
    finally:
        await gw.stop()


def test_probe_cannot_pass_mutual_tls_that_requires_a_client_certificate_and_says_what_to_set(
        tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    config = write_site(tmp_path, pki, client_certificates="required")
    pin_port(config, 8443)
    result = CliRunner().invoke(probe_command, ["-c", str(config)])
    assert result.exit_code == 2
    assert "[api] client_certificates = \"required\" refuses any connection without a client certificate" \
           in result.output and "set it to \"optional\"" in result.output


def test_probe_of_a_gateway_that_is_not_there_fails_with_no_answer(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(f"[api]\nport = {port}\n", encoding="utf-8")
    result = CliRunner().invoke(probe_command, ["-c", str(config), "--timeout", "2s"])
    assert result.exit_code == 1
    assert result.output.startswith(f"http://127.0.0.1:{port}/readyz: - no answer: ")


@pytest.mark.parametrize(("api", "why"), [
    ("port = 0", "[api] port = 0 picks a free port at start; set a port to probe it"),
    ("enabled = false", "[api] enabled = false, so there is no /readyz to probe"),
])
def test_probe_refuses_to_guess_where_an_unreachable_api_is(tmp_path: Path, api: str, why: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f"[api]\n{api}\n", encoding="utf-8")
    result = CliRunner().invoke(probe_command, ["-c", str(config)])
    assert result.exit_code == 2 and why in result.output


def test_the_api_host_defaults_to_loopback_and_to_gateway_api_host_where_the_environment_sets_it(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("GATEWAY_API_HOST", raising=False)
    assert config_from_dict({}, base_dir=tmp_path).api.host == "127.0.0.1"
    monkeypatch.setenv("GATEWAY_API_HOST", "0.0.0.0")  # as the container image sets it
    assert config_from_dict({}, base_dir=tmp_path).api.host == "0.0.0.0"
    assert config_from_dict({"api": {"port": 9000}}, base_dir=tmp_path).api.host == "0.0.0.0"
    assert config_from_dict({"api": {"host": "127.0.0.1"}}, base_dir=tmp_path).api.host == "127.0.0.1"  # file wins
    config = tmp_path / "gateway.toml"
    config.write_text("[api]\nport = 8080\n", encoding="utf-8")
    assert probe_url(config) == ("http://127.0.0.1:8080/readyz", None)  # a wildcard is probed on loopback
    config.write_text('[api]\nport = 8080\nhost = "::"\n', encoding="utf-8")
    assert probe_url(config, "/healthz") == ("http://[::1]:8080/healthz", None)


def test_gateway_check_warns_when_the_file_puts_the_api_on_loopback_where_the_environment_wants_it_reachable(
        tmp_path: Path, monkeypatch) -> None:
    from gateway.checks import container_findings

    monkeypatch.setenv("GATEWAY_API_HOST", "0.0.0.0")  # as the container image sets it
    pinned = config_from_dict({"api": {"host": "127.0.0.1"}}, base_dir=tmp_path)
    assert container_findings(pinned) == [
        "api.host = '127.0.0.1' in the configuration overrides GATEWAY_API_HOST=0.0.0.0: inside a container "
        "nothing outside it reaches the API; leave host out, or write the address to listen on (docs/container.md)"]
    assert container_findings(config_from_dict({}, base_dir=tmp_path)) == []
    assert container_findings(config_from_dict({"api": {"host": "10.1.2.3"}}, base_dir=tmp_path)) == []
    monkeypatch.delenv("GATEWAY_API_HOST")
    assert container_findings(pinned) == []  # outside the image loopback is the safe default, not a mistake
