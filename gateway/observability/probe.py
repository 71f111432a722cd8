"""``gateway probe``: ask a running gateway's ``/readyz`` (or ``/healthz``) and exit 0 only when it answers 200.

For container health checks and service managers: standard library only, no curl in the image.
It finds the API where ``gateway.toml`` says it listens (a wildcard address is probed on
loopback) and, when the API speaks TLS, trusts exactly the certificate ``[api] tls_cert`` names.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import click

from gateway.durations import parse_duration

__all__ = ["ProbeError", "ProbeResult", "probe", "probe_command", "probe_url"]

WILDCARDS = {"", "0.0.0.0", "::", "*"}


class ProbeError(Exception):
    """The probe cannot even be attempted: say what to configure."""


@dataclass(frozen=True)
class ProbeResult:
    url: str
    status: int | None  # None: no HTTP answer at all
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == 200


def probe_url(config_path: Path, path: str = "/readyz") -> tuple[str, ssl.SSLContext | None]:
    """The URL of ``path`` on the API ``config_path`` configures, and the TLS context to reach it with."""
    from gateway.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise ProbeError(f"configuration error in {exc}") from None
    api = config.api
    if not api.enabled:
        raise ProbeError(f"{config_path}: [api] enabled = false, so there is no /readyz to probe")
    if api.port == 0:
        raise ProbeError(f"{config_path}: [api] port = 0 picks a free port at start; set a port to probe it "
                         "(or pass --url)")
    host = api.host
    if host in WILDCARDS:
        host = "::1" if host == "::" else "127.0.0.1"
    netloc = f"[{host}]:{api.port}" if ":" in host else f"{host}:{api.port}"
    if not api.tls_cert:
        return f"http://{netloc}{path}", None
    if api.client_ca and api.client_certificates == "required":
        raise ProbeError(f"{config_path}: [api] client_certificates = \"required\" refuses any connection without "
                         "a client certificate, a health probe's too; set it to \"optional\" (a counterpart that "
                         "presents one is still verified, and push systems authenticate per system)")
    # The address we dial (loopback) is rarely in the certificate: trust the configured certificate itself,
    # as the one end of the chain, instead of a name.
    context = ssl.create_default_context(cafile=str(config.resolve(api.tls_cert)))
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return f"https://{netloc}{path}", context


def probe(url: str, *, timeout: float, context: ssl.SSLContext | None = None) -> ProbeResult:
    """GET ``url`` once; a 503's reasons (``/readyz`` lists them) become the detail."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "gateway-probe"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            return ProbeResult(url, response.status, _summary(response.read()))
    except urllib.error.HTTPError as exc:
        return ProbeResult(url, exc.code, _summary(exc.read()))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return ProbeResult(url, None, f"no answer: {reason}")


def _summary(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(doc, dict):
        if doc.get("reasons"):
            return "; ".join(str(r) for r in doc["reasons"])
        return str(doc.get("status", ""))
    return ""


@click.command("probe")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=lambda: os.environ.get("GATEWAY_CONFIG", "gateway.toml"),
              show_default="$GATEWAY_CONFIG or gateway.toml", help="The gateway.toml of the gateway to probe.")
@click.option("--url", help="Probe this URL instead of the one the configuration gives.")
@click.option("--alive", is_flag=True, help="Probe /healthz (the process answers) instead of /readyz.")
@click.option("--timeout", default="3s", show_default=True, help="How long to wait for the answer.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing when ready.")
def probe_command(config_path: Path, url: str | None, alive: bool, timeout: str, quiet: bool) -> None:
    """Exit 0 when the gateway's /readyz answers 200, 1 with its reasons when not (2: cannot probe).

    For HEALTHCHECK in the container image and for service managers: it reads where the API
    listens from the configuration, so nothing else (no curl) is needed.
    """
    path = "/healthz" if alive else "/readyz"
    context = None
    try:
        if url is None:
            url, context = probe_url(config_path, path)
        seconds = parse_duration(timeout)
    except (ProbeError, ValueError) as exc:
        click.echo(f"cannot probe: {exc}", err=True)
        sys.exit(2)
    result = probe(url, timeout=seconds, context=context)
    if result.ok:
        if not quiet:
            click.echo(f"{result.url}: {result.status} {result.detail}".rstrip())
        return
    status = result.status if result.status is not None else "-"
    click.echo(f"{result.url}: {status} {result.detail}".rstrip(), err=True)
    sys.exit(1)
