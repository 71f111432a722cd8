"""The SOAP 1.1 inbound endpoint (``POST /soap/{system}``) and its WSDL (``GET /soap/{system}?wsdl``).

One document/literal operation, ``submitRecords``: each ``<item>``'s child elements
become one payload dict for the system's inbound mapping.  Answers after commit with
a ``submitRecordsResponse``; a Client fault for input the counterpart must fix (its
detail lists every item's result: valid items of a mixed batch were committed); a
Server fault when nothing could be committed.  Envelopes are parsed with the
hostile-XML-safe parser: entity declarations are refused.  The counterpart authenticates
(``_push_auth``), with WS-Security where its configuration asks for it; a refusal is a
401 or 403 fault (``wsse:`` fault codes for WS-Security failures).
"""

from __future__ import annotations

import logging
from importlib.resources import files
from string import Template
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from aiohttp import web
from lxml import etree

from gateway.api._inbound import (
    ApiError,
    BatchResult,
    Item,
    PushTarget,
    check_kind,
    ingest_items,
    judged,
    parse_xml_document,
    push_target,
)
from gateway.api._push_auth import PushAuth
from gateway.api._web import CORRELATION_ID, GATEWAY, INBOUND, read_body, refuse_while_stopping
from gateway.app import STORE_FAILURES
from gateway.formats import element_to_dict

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.api.soap")

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
TNS = "urn:exchange-gateway:inbound:v1"
OPERATION = "submitRecords"
CONTENT_TYPE = "text/xml"
_XML_TYPES = ("text/xml", "application/xml")


def wsdl_text(system: str, address: str) -> str:
    """The WSDL template with this system's endpoint address filled in."""
    template = Template(files("gateway.api").joinpath("inbound.wsdl").read_text(encoding="utf-8"))
    return template.substitute(address=escape(address, {'"': "&quot;"}), system=escape(system))


class SoapFault(Exception):
    """A fault to answer; ``code`` is Client, Server or VersionMismatch (SOAP 1.1 fault codes)."""

    def __init__(self, code: str, message: str, results: BatchResult | None = None, http_status: int = 500) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.results = results
        self.http_status = http_status
        self.headers: dict[str, str] = {}


def _q(name: str) -> str:
    return f"{{{TNS}}}{name}"


def _text(parent: etree._Element, name: str, value: object) -> None:
    etree.SubElement(parent, _q(name)).text = str(value)


def _results(parent: etree._Element, batch: BatchResult) -> None:
    counts = batch.counts()
    _text(parent, "accepted", counts["accepted"])
    _text(parent, "duplicates", counts["duplicate"])
    _text(parent, "superseded", counts["superseded"])
    _text(parent, "quarantined", counts["quarantined"])
    for it in batch.items:
        el = etree.SubElement(parent, _q("item"))
        _text(el, "index", it.index)
        _text(el, "status", it.status)
        if it.receipt_id:
            _text(el, "receiptId", it.receipt_id)
        for rec in it.records:
            r = etree.SubElement(el, _q("record"))
            _text(r, "kind", rec.get("kind") or "")
            if rec.get("record_key") is not None:
                _text(r, "recordKey", rec["record_key"])
            _text(r, "status", rec.get("status") or "")
            if rec.get("receipt_id"):
                _text(r, "receiptId", rec["receipt_id"])
        for err in it.errors:
            e = etree.SubElement(el, _q("error"))
            if err.get("field"):
                _text(e, "field", err["field"])
            _text(e, "rule", err.get("rule") or "")
            if err.get("value") not in (None, ""):
                _text(e, "value", err["value"])
            _text(e, "message", err.get("message") or "")


def _envelope() -> tuple[etree._Element, etree._Element]:
    env = etree.Element(f"{{{SOAP11}}}Envelope", nsmap={"soapenv": SOAP11, "gw": TNS})
    body = etree.SubElement(env, f"{{{SOAP11}}}Body")
    return env, body


def _serialise(env: etree._Element) -> bytes:
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def response_bytes(batch: BatchResult) -> bytes:
    env, body = _envelope()
    _results(etree.SubElement(body, _q("submitRecordsResponse")), batch)
    return _serialise(env)


def fault_bytes(fault: SoapFault) -> bytes:
    env, body = _envelope()
    wsse = fault.code.startswith("wsse:")
    el = etree.SubElement(body, f"{{{SOAP11}}}Fault", nsmap={"wsse": WSSE} if wsse else None)
    # faultcode and faultstring are unqualified in SOAP 1.1; the code is a QName in the envelope namespace
    # (or, for a WS-Security failure, in the wsse namespace, as WSS 1.1 section 12 defines).
    etree.SubElement(el, "faultcode").text = fault.code if wsse else f"soapenv:{fault.code}"
    etree.SubElement(el, "faultstring").text = fault.message
    if fault.code != "VersionMismatch":
        detail = etree.SubElement(etree.SubElement(el, "detail"), _q("submitRecordsFault"))
        _text(detail, "message", fault.message)
        if fault.results is not None:
            _results(etree.SubElement(detail, _q("results")), fault.results)
    return _serialise(env)


def _local(tag: object) -> str:
    text = str(tag)
    return text[text.index("}") + 1 :] if text.startswith("{") else text


def _children(parent: etree._Element, name: str) -> list[etree._Element]:
    """Children called ``name`` in the service namespace (or unqualified, as lenient clients send them)."""
    return [c for c in parent if isinstance(c.tag, str) and c.tag in (_q(name), name)]


def read_request(root: etree._Element) -> tuple[str | None, list[Item]]:
    """(kind, items) of a submitRecords envelope, or a SoapFault saying what is wrong with it."""
    if root.tag == f"{{{SOAP12}}}Envelope":
        raise SoapFault("VersionMismatch", "this endpoint speaks SOAP 1.1 (envelope namespace "
                                           f"{SOAP11}); a SOAP 1.2 envelope was sent")
    if root.tag != f"{{{SOAP11}}}Envelope":
        raise SoapFault("Client", f"the document is not a SOAP 1.1 envelope (its root is <{_local(root.tag)}>)")
    body = root.find(f"{{{SOAP11}}}Body")
    if body is None:
        raise SoapFault("Client", "the SOAP envelope has no Body")
    ops = [c for c in body if isinstance(c.tag, str)]
    if len(ops) != 1 or _local(ops[0].tag) != OPERATION or etree.QName(ops[0]).namespace not in (TNS, None):
        found = ", ".join(f"<{etree.QName(c).text}>" for c in ops) or "nothing"
        raise SoapFault("Client", f"the SOAP Body must hold one {{{TNS}}}{OPERATION} element; it holds {found}")
    op = ops[0]
    kind_el = _children(op, "kind")
    kind = ((kind_el[0].text or "").strip() or None) if kind_el else None
    items: list[Item] = []
    for i, el in enumerate(_children(op, "item")):
        raw = etree.tostring(el, encoding="UTF-8", with_tail=False)
        if not any(isinstance(c.tag, str) for c in el):
            items.append(Item(None, raw, f"item {i} has no child elements: each field of a record is one child "
                                         "element of <item>"))
            continue
        items.append(Item(element_to_dict(el), raw))
    if not items:
        raise SoapFault("Client", f"{OPERATION} carries no <item> elements")
    return kind, items


async def _submit(gw: Gateway, request: web.Request, target: PushTarget, auth: PushAuth) -> bytes:
    body = await read_body(request)
    await auth.body(body)
    try:
        root = await parse_xml_document(body, request.charset)
    except ApiError as exc:
        raise SoapFault("Client", exc.message) from None
    await auth.envelope(root)
    await auth.done()
    kind, items = read_request(root)
    items = [judged(i.payload, i.raw, target.limits) if i.payload is not None else i for i in items]
    if kind is not None:
        try:
            check_kind(target, kind)
        except ApiError as exc:
            raise SoapFault("Client", exc.message) from None
        await auth.kind(target, kind)
    await auth.items(target, items)
    try:
        batch = await ingest_items(gw, target, kind, items, f"POST /soap/{target.system}",
                                   correlation_id=request.get(CORRELATION_ID))
    except ApiError as exc:
        raise SoapFault("Client" if exc.status < 500 else "Server", exc.message) from None
    except STORE_FAILURES as exc:
        log.exception("SOAP push from %s: the store is unavailable", target.system)
        raise SoapFault("Server", f"the store is unavailable ({type(exc).__name__}); nothing of this "
                                  "request was committed: send it again") from None  # SOAP 1.1: faults are 500
    request[INBOUND] = batch
    if batch.http_status == 400:
        c = batch.counts()
        committed = len(batch.items) - c["quarantined"]
        raise SoapFault("Client", f"{c['quarantined']} of {len(batch.items)} items were refused and quarantined; "
                                  f"the other {committed} were committed (every item's result is in the detail)",
                        results=batch)
    return response_bytes(batch)


def _fault_response(fault: SoapFault) -> web.Response:
    return web.Response(status=fault.http_status, body=fault_bytes(fault), content_type=CONTENT_TYPE,
                        charset="utf-8", headers=fault.headers)


def _refusal_fault(exc: ApiError) -> SoapFault:
    """A counterpart refused (401/403): a Client fault, or the WS-Security fault code when WS-Security failed."""
    refusal = exc.refusal
    code = f"wsse:{refusal.wsse_code}" if refusal is not None and refusal.wsse_code else "Client"
    fault = SoapFault(code, exc.message, http_status=exc.status)
    fault.headers = dict(exc.headers)
    return fault


async def soap_post(request: web.Request) -> web.Response:
    """POST /soap/{system}: submitRecords."""
    gw = request.app[GATEWAY]
    system = request.match_info["system"]
    try:
        target = push_target(gw, system)
    except ApiError as exc:
        return _fault_response(SoapFault("Client", exc.message, http_status=404))
    try:
        auth = await PushAuth.begin(request, target, soap=True)
    except ApiError as exc:
        return _fault_response(_refusal_fault(exc))
    if "soap" not in target.accept:
        return _fault_response(SoapFault("Client", f"system {system!r} does not accept SOAP pushes "
                                                   f"(push config accept = {list(target.accept)})", http_status=415))
    if request.content_type not in _XML_TYPES:
        return _fault_response(SoapFault(
            "Client", f"Content-Type {request.content_type!r} is not SOAP 1.1; send text/xml", http_status=415))
    try:
        refuse_while_stopping(gw)
        return web.Response(body=await _submit(gw, request, target, auth), content_type=CONTENT_TYPE,
                            charset="utf-8")
    except SoapFault as fault:
        return _fault_response(fault)
    except ApiError as exc:
        if exc.refusal is not None:
            return _fault_response(_refusal_fault(exc))
        return _fault_response(SoapFault("Client" if exc.status < 500 else "Server", exc.message,
                                         http_status=exc.status))
    except Exception as exc:  # a fault of the gateway itself, still answered in SOAP
        log.exception("SOAP push from %s failed", system)
        return _fault_response(SoapFault("Server", f"internal error ({type(exc).__name__}); quote correlation id "
                                                   f"{request.get(CORRELATION_ID)} when reporting it"))


async def soap_get(request: web.Request) -> web.Response:
    """GET /soap/{system}?wsdl: the service description with this endpoint's address."""
    gw = request.app[GATEWAY]
    system = request.match_info["system"]
    target = push_target(gw, system)  # ApiError 404 for a system that does not push
    if "wsdl" not in request.query:
        raise ApiError(400, f"GET /soap/{system} serves the WSDL only: ask for /soap/{system}?wsdl; "
                            "records are submitted with POST")
    if "soap" not in target.accept:
        raise ApiError(404, f"system {system!r} does not accept SOAP pushes (push config accept = "
                            f"{list(target.accept)})")
    address = f"{request.scheme}://{request.host}/soap/{system}"
    return web.Response(text=wsdl_text(system, address), content_type=CONTENT_TYPE, charset="utf-8")
