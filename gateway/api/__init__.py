"""The gateway's HTTP API: inbound push endpoints (JSON, XML, SOAP), queries, health, metrics, OpenAPI.

Public surface: :func:`start_api` (called by ``Gateway.start`` when ``[api].enabled``),
:class:`ApiServer`, :func:`build_app` and :func:`openapi_document`.  The ``_`` modules may change.
"""

from gateway.api.server import ApiServer, build_app, openapi_document, start_api

__all__ = ["ApiServer", "build_app", "openapi_document", "start_api"]
