"""A real SOAP counterpart for the SOAP adapter's tests and benchmark (spyne over wsgiref, loopback only)."""

from .certs import Pki, generate_pki
from .server import EXCHANGE_PATH, RECORDS_PATH, SoapTestServer, server_tls_context
from .services import EXCHANGE_NS, RECORDS_NS, Control, make_records

__all__ = [
    "EXCHANGE_NS",
    "EXCHANGE_PATH",
    "RECORDS_NS",
    "RECORDS_PATH",
    "Control",
    "SoapTestServer",
    "Pki",
    "generate_pki",
    "make_records",
    "server_tls_context",
]
