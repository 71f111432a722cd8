"""SOAP adapter plugin: pull records from, and deliver records to, SOAP counterparts (zeep on httpx).

Provincial exchange envelopes, WS-Security and mutual TLS are configuration; see README.md beside
this file. The names below are the public API; the underscored modules may change.
"""

from __future__ import annotations

from gateway.adapters import Adapter

from ._client import SoapEndpoint, SoapSetupError
from ._config import (
    BUILTIN_WSDL_DIR,
    CallSettings,
    FaultPolicy,
    NoPaging,
    PageNumberPaging,
    PullSettings,
    PushSettings,
    SecretRef,
    SignatureSettings,
    SoapConnection,
    SoapSinkConfig,
    SoapSourceConfig,
    Timeouts,
    TlsSettings,
    TokenPaging,
    UsernameTokenSettings,
    WsseSettings,
)
from ._errors import PermanentSoapFault, RetryableSoapFault
from ._sink import SoapSink
from ._source import PullReport, SoapSource

__version__ = "1.0.0"

PROVINCIAL_EXCHANGE_WSDL = BUILTIN_WSDL_DIR / "provincial-exchange.wsdl"
"""The shipped WSDL of the provincial exchange envelope (``wsdl = "builtin:provincial-exchange.wsdl"``)."""


def make_source(system: str, config: SoapSourceConfig) -> SoapSource:
    return SoapSource(system, config)


def make_sink(system: str, config: SoapSinkConfig) -> SoapSink:
    return SoapSink(system, config)


ADAPTER = Adapter(
    name="soap",
    version=__version__,
    description="SOAP 1.1/1.2 pull and push via zeep: local WSDLs, paging with a persisted watermark, "
    "provincial exchange envelopes, WS-Security (UsernameToken digest, RSA-SHA256 signatures), mutual TLS",
    source_config=SoapSourceConfig,
    sink_config=SoapSinkConfig,
    make_source=make_source,
    make_sink=make_sink,
)

__all__ = [
    "ADAPTER",
    "BUILTIN_WSDL_DIR",
    "PROVINCIAL_EXCHANGE_WSDL",
    "CallSettings",
    "FaultPolicy",
    "NoPaging",
    "PageNumberPaging",
    "PermanentSoapFault",
    "PullReport",
    "PullSettings",
    "PushSettings",
    "RetryableSoapFault",
    "SecretRef",
    "SignatureSettings",
    "SoapConnection",
    "SoapEndpoint",
    "SoapSetupError",
    "SoapSink",
    "SoapSinkConfig",
    "SoapSource",
    "SoapSourceConfig",
    "Timeouts",
    "TlsSettings",
    "TokenPaging",
    "UsernameTokenSettings",
    "WsseSettings",
    "make_sink",
    "make_source",
]
