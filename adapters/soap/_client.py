"""One SOAP counterpart as a started zeep ``AsyncClient``: local WSDL, httpx with explicit
timeouts and TLS, WS-Security, and every failure turned into a classified error.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import types
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from lxml import etree
from zeep import AsyncClient, Settings
from zeep.exceptions import ExternalReferenceForbidden, TransportError
from zeep.helpers import serialize_object
from zeep.proxy import AsyncServiceProxy
from zeep.transports import AsyncTransport
from zeep.utils import get_media_type
from zeep.wsse.username import UsernameToken

from gateway.adapters import DeliveryError, current_correlation_id

from ._config import SecretError, SoapConnection, TlsSettings
from ._errors import classify
from ._template import to_plain
from ._wsse import WsseSecurity, X509Signer

log = logging.getLogger(__name__)


class SoapSetupError(Exception):
    """The adapter cannot start: a WSDL, certificate, secret or operation problem named in the message."""


class _LocalTransport(AsyncTransport):
    """zeep's httpx transport that reads WSDLs and XSDs only from local files and refuses
    HTTP error pages before zeep mistakes them for SOAP."""

    def __init__(self, client: httpx.AsyncClient, *, operation_timeout: float, load_timeout: float,
                 correlation_header: str = "X-Correlation-Id") -> None:
        # zeep would build a synchronous httpx client for fetching remote documents; this
        # transport never fetches any, so it gets a stand-in that only holds headers.
        super().__init__(
            client=client,
            wsdl_client=types.SimpleNamespace(headers={}),
            timeout=load_timeout,
            operation_timeout=operation_timeout,
        )
        self.correlation_header = correlation_header

    def load(self, url: str) -> bytes:
        parsed = urlparse(url)
        if parsed.scheme not in ("", "file"):
            raise ExternalReferenceForbidden(url)
        path = Path(parsed.path if parsed.scheme == "file" else url).expanduser()
        return path.read_bytes()

    async def post(self, address: str, message: bytes, headers: dict[str, str]) -> httpx.Response:
        # zeep's version logs whole envelopes at DEBUG, UsernameTokens and personal data included.
        cid = current_correlation_id()  # the delivered record's, or the page request's
        if cid is not None:
            headers = {**headers, self.correlation_header: cid}
        response = await self.client.post(address, content=message, headers=headers)
        log.debug("POST %s: HTTP %d, %d bytes", address, response.status_code, len(response.content))
        return response

    async def post_xml(self, address: str, envelope: etree._Element, headers: dict[str, str]) -> Any:
        response = await super().post_xml(address, envelope, headers)
        status = response.status_code
        media_type = get_media_type(response.headers.get("Content-Type", "text/xml"))
        # A SOAP reply is 200 (or 202 with no body); faults come as 500 (SOAP 1.1) or 400/500 (SOAP 1.2).
        # Anything else is a proxy, a gateway or a web server talking, not the service. The body
        # decides, not the Content-Type: some platforms label their SOAP answers text/html.
        soap_body = media_type == "multipart/related" or _looks_like_soap(response.content)
        if status == 202 and not response.content:
            return response
        if status not in (200, 400, 500) or not soap_body:
            raise TransportError(
                f"not a SOAP response (Content-Type {media_type or 'missing'})",
                status_code=status,
                content=response.content,
            )
        return response


_SOAP_START = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*(?:<!DOCTYPE[^\[>]*(?:\[.*?\])?\s*>\s*)?<(?:[A-Za-z_][\w.-]*:)?Envelope[\s>/]",
    re.S,
)


def _looks_like_soap(content: bytes) -> bool:
    """Whether a body starts like a SOAP envelope (a DOCTYPE is let through for zeep to refuse by name)."""
    return bool(_SOAP_START.match(content[:4096]))


def _ssl_context(tls: TlsSettings | None, what: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls and tls.ca_file else None)
    if tls is None:
        return context
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if tls.minimum_version == "TLSv1.3" else ssl.TLSVersion.TLSv1_2
    context.check_hostname = tls.check_hostname
    if tls.client_cert_file is not None:
        passphrase = (
            tls.client_key_passphrase.resolve(f"{what} tls.client_key_passphrase")
            if tls.client_key_passphrase
            else None
        )
        try:
            context.load_cert_chain(
                str(tls.client_cert_file),
                str(tls.client_key_file) if tls.client_key_file else None,
                password=passphrase,
            )
        except (ssl.SSLError, OSError) as exc:
            raise SoapSetupError(
                f"{what}: cannot load the client certificate {tls.client_cert_file} / key "
                f"{tls.client_key_file or '(in the certificate file)'}: {exc} "
                "(check the files and tls.client_key_passphrase)"
            ) from exc
    return context


def _wsse(config: SoapConnection, what: str) -> WsseSecurity | None:
    settings = config.wsse
    if settings is None:
        return None
    username_token = None
    if settings.username_token is not None:
        password = settings.username_token.password.resolve(f"{what} wsse.username_token.password")
        username_token = UsernameToken(
            settings.username_token.username,
            password,
            use_digest=settings.username_token.digest,
            zulu_timestamp=True,
        )
    signer = None
    if settings.signature is not None:
        sig = settings.signature
        passphrase = sig.key_passphrase.resolve(f"{what} wsse.signature.key_passphrase") if sig.key_passphrase else None
        try:
            signer = X509Signer(
                sig.key_file.read_bytes(),
                sig.cert_file.read_bytes(),
                passphrase,
                signature_method=sig.signature_method,
                digest_method=sig.digest_method,
                key_reference=sig.key_reference,
            )
        except Exception as exc:  # xmlsec and cryptography raise several unrelated types for a bad key
            raise SoapSetupError(
                f"{what}: cannot load the signing key {sig.key_file} with certificate {sig.cert_file}: {exc} "
                "(check the PEM files and wsse.signature.key_passphrase)"
            ) from exc
    response_cert = settings.verify_response_cert.read_bytes() if settings.verify_response_cert else None
    return WsseSecurity(
        username_token=username_token,
        signer=signer,
        timestamp_ttl_seconds=None if settings.timestamp_ttl is None else max(1, round(settings.timestamp_ttl)),
        response_cert_pem=response_cert,
    )


class SoapEndpoint:
    """A counterpart's SOAP port, ready to call once :meth:`start` has loaded the WSDL."""

    def __init__(self, system: str, config: SoapConnection) -> None:
        self.system = system
        self.config = config
        self._http: httpx.AsyncClient | None = None
        self._client: AsyncClient | None = None
        self._service: AsyncServiceProxy | None = None
        self._operations: dict[str, Any] = {}
        self.address: str | None = None
        t = config.timeouts
        self._timeouts_text = f"connect {t.connect:g}s, read {t.read:g}s, total {t.total:g}s"

    @property
    def what(self) -> str:
        return f"SOAP system {self.system!r}"

    async def start(self) -> None:
        """Resolve secrets, build TLS and WS-Security, and load the WSDL (in a thread: it blocks)."""
        config = self.config
        try:
            ssl_context = _ssl_context(config.tls, self.what)
            wsse = _wsse(config, self.what)
        except SecretError as exc:
            raise SoapSetupError(str(exc)) from exc
        t = config.timeouts
        self._http = httpx.AsyncClient(
            verify=ssl_context,
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool),
            limits=httpx.Limits(max_connections=config.max_connections, max_keepalive_connections=config.max_connections),
            # Proxy variables in the environment must not silently reroute exchange traffic.
            trust_env=False,
        )
        transport = _LocalTransport(self._http, operation_timeout=t.read, load_timeout=t.wsdl_load,
                                    correlation_header=config.correlation_header)
        self._http.headers.update({"User-Agent": "exchange-gateway-soap/1", **config.http_headers})
        wsdl_file = config.wsdl_file()
        settings = Settings(strict=True, forbid_external=True, forbid_dtd=True, forbid_entities=True)
        try:
            self._client = await asyncio.wait_for(
                asyncio.to_thread(AsyncClient, str(wsdl_file), wsse=wsse, transport=transport, settings=settings),
                timeout=t.wsdl_load,
            )
            self._service = self._bind(self._client, wsdl_file)
        except SoapSetupError:
            await self.close()
            raise
        except ExternalReferenceForbidden as exc:
            await self.close()
            raise SoapSetupError(
                f"{self.what}: WSDL {wsdl_file} refers to {exc.url}, which is not a local file; the SOAP adapter "
                "loads WSDLs and XSDs only from local files: save that document next to the WSDL and change "
                "the import's location to the file name"
            ) from exc
        except Exception as exc:
            await self.close()
            raise SoapSetupError(f"{self.what}: cannot load WSDL {wsdl_file}: {type(exc).__name__}: {exc}") from exc

    def _bind(self, client: AsyncClient, wsdl_file: Path) -> AsyncServiceProxy:
        services = client.wsdl.services
        if not services:
            raise SoapSetupError(f"{self.what}: WSDL {wsdl_file} declares no service")
        name = self.config.service or next(iter(services))
        service = services.get(name)
        if service is None:
            raise SoapSetupError(f"{self.what}: WSDL {wsdl_file} has no service {name!r} (it has {', '.join(services)})")
        port_name = self.config.port or next(iter(service.ports))
        port = service.ports.get(port_name)
        if port is None:
            raise SoapSetupError(
                f"{self.what}: service {name!r} in {wsdl_file} has no port {port_name!r} "
                f"(it has {', '.join(service.ports)})"
            )
        self._operations = dict(port.binding.all())
        self.address = self.config.endpoint or port.binding_options.get("address")
        if not self.address:
            raise SoapSetupError(f"{self.what}: port {port_name!r} in {wsdl_file} has no address; set 'endpoint'")
        return AsyncServiceProxy(client, port.binding, address=self.address)

    def check_operation(self, operation: str) -> None:
        operations = self._operations
        if operation not in operations:
            raise SoapSetupError(
                f"{self.what}: WSDL {self.config.wsdl_file()} has no operation {operation!r} "
                f"(it has {', '.join(sorted(operations))})"
            )

    def header_elements(self, headers: dict[str, Any]) -> dict[str, Any] | list[etree._Element] | None:
        """Rendered SOAP header values as zeep takes them: a dict for headers the WSDL declares,
        elements for ``{namespace}name`` keys it does not."""
        if not headers:
            return None
        if all(key.startswith("{") for key in headers):
            elements = []
            for key, value in headers.items():
                element = etree.Element(key)
                if value is not None:
                    element.text = str(value)
                elements.append(element)
            return elements
        return headers

    async def call(
        self, operation: str, arguments: dict[str, Any], soap_headers: dict[str, Any], *, about: str | None = None
    ) -> Any:
        """Call ``operation``; the response as plain dicts and lists, or a classified DeliveryError.

        ``about`` names what the call carries (a delivery, a page) for error messages.
        """
        assert self._service is not None, "start() first"
        where = f"{self.what} operation {operation!r} at {self.address}" + (f" ({about})" if about else "")
        headers = self.header_elements(soap_headers)
        try:
            async with asyncio.timeout(self.config.timeouts.total):
                if headers is None:
                    result = await self._service[operation](**arguments)
                else:
                    result = await self._service[operation](**arguments, _soapheaders=headers)
        except DeliveryError:
            raise
        except Exception as exc:
            raise classify(
                exc, where=where, policy=self.config.faults, timeouts=self._timeouts_text
            ) from exc
        return to_plain(serialize_object(result, target_cls=dict))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
