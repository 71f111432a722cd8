"""Serving the test SOAP services on 127.0.0.1 (port 0) from a thread: a threading wsgiref
server, optional TLS with client certificates, and a WSGI layer that applies the slow
mode, the WS-Security checks and response signing around spyne."""

from __future__ import annotations

import io
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from lxml import etree
from spyne.interface.wsdl import Wsdl11
from spyne.server.wsgi import WsgiApplication

from .services import CONTROL_KEY, Control, exchange_application, records_application
from .wssec import (
    NonceCache,
    SecurityFault,
    check_signature,
    check_username_token,
    fault_envelope,
    parse_envelope,
    sign_response,
)

RECORDS_PATH = "/records"
EXCHANGE_PATH = "/exchange"

StartResponse = Callable[..., Any]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    ssl_context: ssl.SSLContext | None = None

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        try:
            # The handshake runs in the request thread, so a client without a certificate fails alone.
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


def _tamper(body: bytes) -> bytes:
    """Change the first text inside the SOAP Body, as a meddling proxy would; the rest stays byte-identical."""
    envelope = parse_envelope(body)
    soap_body = envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
    for element in soap_body.iter():
        if element.text and element.text.strip():
            element.text = element.text + " (altered)"
            break
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


class _Router:
    """Mounts the two spyne applications and wraps them in the security layer."""

    def __init__(self, control: Control) -> None:
        self.control = control
        self.nonces = NonceCache()
        self.apps = {
            RECORDS_PATH: WsgiApplication(records_application()),
            EXCHANGE_PATH: WsgiApplication(exchange_application()),
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        control = self.control
        environ[CONTROL_KEY] = control
        app = self.apps.get(environ.get("PATH_INFO", ""))
        if app is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such service"]
        if environ["REQUEST_METHOD"] != "POST":
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        with control.lock:
            control.requests += 1
        if control.delay_seconds:
            time.sleep(control.delay_seconds)
        if control.tamper_in_transit:
            body = _tamper(body)
        if control.require_username_token or control.require_signature:
            try:
                self._check(body)
            except SecurityFault as fault:
                with control.lock:
                    control.security_log.append({"ok": False, "code": fault.code, "text": fault.text})
                payload = fault_envelope(fault.code, fault.text)
                start_response(
                    "500 Internal Server Error",
                    [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(payload)))],
                )
                return [payload]
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        if control.response_key_pem is None:
            return app(environ, start_response)
        return self._signed(app, environ, start_response)

    def _check(self, body: bytes) -> None:
        control = self.control
        try:
            envelope = parse_envelope(body)
        except etree.XMLSyntaxError as exc:
            raise SecurityFault("InvalidSecurity", f"request is not XML: {exc}") from exc
        entry: dict[str, Any] = {"ok": True}
        if control.require_username_token:
            entry["user"] = check_username_token(envelope, control.users, self.nonces)
        if control.require_signature:
            assert control.client_cert_pem is not None, "require_signature needs client_cert_pem"
            entry["signed"] = check_signature(envelope, control.client_cert_pem)
        with control.lock:
            control.security_log.append(entry)

    def _signed(self, app: WsgiApplication, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        payload = b"".join(app(environ, capture))
        envelope = parse_envelope(payload)
        assert self.control.response_key_pem is not None and self.control.response_cert_pem is not None
        sign_response(envelope, self.control.response_key_pem, self.control.response_cert_pem)
        signed = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(signed)))])
        return [signed]


class SoapTestServer:
    """The test counterpart on 127.0.0.1: ``with SoapTestServer() as server: server.url(...)``."""

    def __init__(self, control: Control | None = None, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.control = control or Control()
        self._router = _Router(self.control)
        self._server = _ThreadingServer(("127.0.0.1", 0), _QuietHandler)
        self._server.ssl_context = ssl_context
        self._server.set_app(self._router)
        self._thread: threading.Thread | None = None
        self.scheme = "https" if ssl_context else "http"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    @property
    def records_url(self) -> str:
        return self.url(RECORDS_PATH)

    @property
    def exchange_url(self) -> str:
        return self.url(EXCHANGE_PATH)

    def write_records_wsdl(self, path: Path) -> Path:
        """The records service's WSDL as spyne publishes it, saved as a local file for the client."""
        wsdl = Wsdl11(self._router.apps[RECORDS_PATH].app.interface)
        wsdl.build_interface_document(self.records_url)
        path.write_bytes(wsdl.get_interface_document())
        return path

    def start(self) -> SoapTestServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="soap-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SoapTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_tls_context(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    """TLS for the test server, requiring a client certificate issued by ``client_ca``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    context.load_verify_locations(cafile=str(client_ca))
    context.verify_mode = ssl.CERT_REQUIRED
    return context
