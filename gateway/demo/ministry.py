"""A simulated market-regulation ministry system (市场监管部门条线系统) speaking the provincial exchange SOAP envelope.

A real SOAP peer on loopback for the demo and the tests: aiohttp serving the shipped
``provincial-exchange.wsdl`` (one operation ``service``, the business service chosen by the
``serviceId`` header, business XML as text in ``ExchangeMessage/Body``, answers in
``<RESULT><STATUS/><DESC/><DATA/></RESULT>``). The gateway talks to it with zeep, as to any
province's exchange. Services:

=====================  =======================================================================
``exchange.<kind>``    take one record (``<EXCHANGEDATA>``): approval results to supervise, cases
                       and acceptances dispatched for 并联审批; ``Header/sn`` is the idempotency key
``records.query``      what it sends back, paged by ``MODIFIEDTIME`` (``>=``): supervision results
                       (``TYPE`` CF) and 并联审批 opinions (``TYPE`` YJ)
``reconcile.manifest`` 对账: what it received (KEY, DIGEST, AT) and sent (KIND, KEY, VERSION, AT) in a period
``reconcile.resend``   put records it sent back on its feed, so the gateway pulls them again
=====================  =======================================================================

Switches for what integration must survive: ``lose_next`` acknowledges records and silently
drops them; ``lose_outgoing`` logs records as sent that never reach the feed; ``fail_next``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web
from lxml import etree

from gateway.adapters import manifest_digest

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
EXCHANGE_NS = "urn:gov-exchange:provincial:v1"
_FEED_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # fixed width: the gateway compares watermarks as text


def china_iso(text: str) -> str:
    """A wire time ("2026-10-09 16:00:00") as the gateway's mappings store it ("2026-10-09T16:00:00+08:00")."""
    moment = datetime.fromisoformat(text.replace(" ", "T"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA)
    return moment.astimezone(CHINA).isoformat()


def gateway_key(item: Mapping[str, Any]) -> tuple[str, str, int]:
    """(kind, business key, version) of an item it sends, as the gateway's mapping names it."""
    version = int(item.get("VERSION") or 1)
    if item.get("TYPE") == "CF":
        return "supervision_result", str(item["CF_WSH"]), version
    if item.get("TYPE") == "YJ":
        return "process_step", f"{item['SBLSH']}|{item['SPHJDM']}|{china_iso(str(item['SPSJ']))}", version
    if item.get("TYPE") == "XK":
        return "approval_result", str(item["XK_WSH"]), version
    raise ValueError(f"unknown TYPE {item.get('TYPE')!r}")


@dataclass
class Received:
    key: str  # Header/sn: the gateway's idempotency key
    service: str
    at: float
    digest: str
    body: str  # the business XML as it came
    data: dict[str, str]  # the business XML read into a flat dict


@dataclass
class Sent:
    kind: str
    key: str
    version: int
    at: float
    item: dict[str, Any]
    on_feed: bool


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _fields(element: etree._Element) -> dict[str, str]:
    return {etree.QName(child).localname: (child.text or "") for child in element if isinstance(child.tag, str)}


def _xml(root: str, data: Mapping[str, Any]) -> str:
    def render(name: str, value: Any) -> str:
        if isinstance(value, Mapping):
            return f"<{name}>" + "".join(render(k, v) for k, v in value.items()) + f"</{name}>"
        if isinstance(value, list):
            return "".join(render(name, v) for v in value)
        return f"<{name}>{escape(_text(value))}</{name}>"

    return render(root, data)


class MarketMinistry:
    """The ministry's exchange endpoint on 127.0.0.1 (port 0 = any free port): ``url`` for the gateway."""

    name = "market-regulation ministry"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, path: str = "/exchange") -> None:
        self.host = host
        self.port = port
        self.path = path
        self.app = web.Application(client_max_size=16 * 1024 * 1024)
        self.app.router.add_post(path, self._soap)
        self.app.router.add_get(path, self._wsdl)
        self._runner: web.AppRunner | None = None
        self._lock = threading.Lock()
        self.received: dict[str, Received] = {}  # by idempotency key: what it kept
        self.lost: list[str] = []  # keys it acknowledged and dropped
        self.arrivals = 0  # every delivery that reached it, repeats included
        self.repeats = 0
        self.sent: list[Sent] = []
        self.requests: list[str] = []  # serviceId of each call
        self.resend_requests: list[list[dict[str, str]]] = []
        self._lose = 0
        self._lose_outgoing = 0
        self._fail: list[str] = []  # fault codes to answer the next calls with
        self._clock = 0.0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> MarketMinistry:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> MarketMinistry:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    # ------------------------------------------------------------------ what the tests steer

    def lose_next(self, count: int = 1) -> None:
        """Acknowledge the next ``count`` records as received and silently drop them."""
        self._lose += count

    def lose_outgoing(self, count: int = 1) -> None:
        """The next ``count`` records it publishes are logged as sent but never reach its feed."""
        self._lose_outgoing += count

    def fail_next(self, count: int = 1, *, code: str = "Server.Unavailable") -> None:
        self._fail.extend([code] * count)

    def publish(self, *items: Mapping[str, Any]) -> list[Sent]:
        """Records it sends the gateway (TYPE CF or YJ): on its feed for ``records.query``."""
        out = []
        with self._lock:
            for item in items:
                kind, key, version = gateway_key(item)
                lost = self._lose_outgoing > 0
                if lost:
                    self._lose_outgoing -= 1
                sent = Sent(kind, key, version, self._tick(), dict(item), on_feed=not lost)
                self.sent.append(sent)
                out.append(sent)
        return out

    def received_of(self, kind_type: str) -> list[dict[str, str]]:
        """The business documents it kept of one TYPE (XK, SQ, SL, CF), in arrival order."""
        return [r.data for r in sorted(self.received.values(), key=lambda r: r.at) if r.data.get("TYPE") == kind_type]

    def _tick(self) -> float:
        # Strictly increasing times, so the feed is ordered and no two records share a watermark.
        now = time.time()
        self._clock = max(now, self._clock + 0.000001)
        return self._clock

    # ------------------------------------------------------------------ HTTP

    async def _wsdl(self, request: web.Request) -> web.Response:
        text = resources.files("gateway_adapters.soap").joinpath("wsdl", "provincial-exchange.wsdl").read_text("utf-8")
        text = text.replace("http://localhost/exchange", self.url)
        return web.Response(text=text, content_type="text/xml")

    async def _soap(self, request: web.Request) -> web.Response:
        from gateway.formats import parse_xml_bytes

        raw = await request.read()
        try:
            envelope = parse_xml_bytes(raw)
        except Exception as exc:
            return self._fault("Client.Malformed", f"请求不是合法的 XML：{exc}")
        service = "".join(envelope.xpath("//*[local-name()='Header']/*[local-name()='serviceId']/text()")).strip()
        message = envelope.find(f"{{{SOAP_ENV}}}Body/{{{EXCHANGE_NS}}}ExchangeMessage")
        if message is None:
            return self._fault("Client.Malformed", "缺少 ExchangeMessage")
        header = message.find(f"{{{EXCHANGE_NS}}}Header")
        head = _fields(header) if header is not None else {}
        body_el = message.find(f"{{{EXCHANGE_NS}}}Body")
        body = body_el.text or "" if body_el is not None else ""
        self.requests.append(service)
        if self._fail:
            return self._fault(self._fail.pop(0), "系统繁忙，请稍后重试")
        try:
            business = parse_xml_bytes(body.encode("utf-8")) if body.strip() else None
        except Exception as exc:
            return self._answer(head, "1", f"业务报文不是合法的 XML：{exc}")
        if service.startswith("exchange."):
            return self._take(head, service, body, business)
        if service == "records.query":
            return self._query(head, business)
        if service == "reconcile.manifest":
            return self._manifest(head, business)
        if service == "reconcile.resend":
            return self._resend(head, business)
        return self._fault("Client.UnknownService", f"未知的服务 serviceId={service!r}")

    def _take(self, head: dict[str, str], service: str, body: str, business: Any) -> web.Response:
        key = head.get("sn", "")
        if not key:
            return self._answer(head, "1", "报文流水号 sn 不能为空")
        if business is None or etree.QName(business).localname != "EXCHANGEDATA":
            return self._answer(head, "1", "业务报文的根元素应为 EXCHANGEDATA")
        data = _fields(business)
        with self._lock:
            self.arrivals += 1
            known = self.received.get(key)
            if known is not None:
                self.repeats += 1
                return self._answer(head, "0", "已接收（重复报文）", {"RECEIPTNO": f"SCJG-{key[:12]}"})
            if self._lose > 0:
                self._lose -= 1
                self.lost.append(key)
            else:
                self.received[key] = Received(key, service, time.time(), manifest_digest(body), body, data)
        return self._answer(head, "0", "接收成功", {"RECEIPTNO": f"SCJG-{key[:12]}"})

    def _query(self, head: dict[str, str], business: Any) -> web.Response:
        query = _fields(business) if business is not None else {}
        since = query.get("SINCE") or ""
        page = max(1, int(query.get("PAGE") or 1))
        size = max(1, min(1000, int(query.get("PAGESIZE") or 100)))
        with self._lock:
            feed = [s for s in self.sent if s.on_feed]
        rows = sorted(((datetime.fromtimestamp(s.at, CHINA).strftime(_FEED_FORMAT), s) for s in feed),
                      key=lambda r: r[0])
        rows = [(stamp, s) for stamp, s in rows if stamp >= since]
        chunk = rows[(page - 1) * size: page * size]
        records = [{**s.item, "MODIFIEDTIME": stamp} for stamp, s in chunk]
        more = page * size < len(rows)
        return self._answer(head, "0", "查询成功", {"RECORDS": {"RECORD": records}, "HASMORE": "true" if more else "false",
                                                   "TOTAL": str(len(rows))})

    def _period(self, business: Any) -> tuple[float, float]:
        query = _fields(business) if business is not None else {}
        return (datetime.fromisoformat(query["FROM"]).timestamp(), datetime.fromisoformat(query["TO"]).timestamp())

    def _manifest(self, head: dict[str, str], business: Any) -> web.Response:
        try:
            start, end = self._period(business)
        except (KeyError, ValueError) as exc:
            return self._answer(head, "1", f"对账期间不正确：{exc}")
        when = lambda ts: datetime.fromtimestamp(ts, CHINA).isoformat(timespec="milliseconds")  # noqa: E731
        with self._lock:
            received = [{"KEY": r.key, "DIGEST": r.digest, "AT": when(r.at)} for r in self.received.values()
                        if start <= r.at < end]
            sent = [{"KIND": s.kind, "KEY": s.key, "VERSION": str(s.version), "AT": when(s.at)} for s in self.sent
                    if start <= s.at < end]
        return self._answer(head, "0", "对账清单", {"RECEIVED": {"ITEM": received}, "SENT": {"ITEM": sent},
                                                   "CANRESEND": "true"})

    def _resend(self, head: dict[str, str], business: Any) -> web.Response:
        wanted = [_fields(item) for item in business.iter("ITEM")] if business is not None else []
        self.resend_requests.append(wanted)
        keys = {(w.get("KIND"), w.get("KEY"), int(w.get("VERSION") or 1)) for w in wanted}
        with self._lock:
            again = [s for s in self.sent if (s.kind, s.key, s.version) in keys]
            for s in again:  # back on the feed, after everything the gateway has pulled so far
                s.at, s.on_feed = self._tick(), True
        return self._answer(head, "0", f"已重新发布 {len(again)} 条", {"REQUESTED": str(len(again))})

    # ------------------------------------------------------------------ envelopes

    def _answer(self, head: Mapping[str, str], status: str, desc: str, data: Mapping[str, Any] | None = None) -> web.Response:
        result = _xml("RESULT", {"STATUS": status, "DESC": desc, "DATA": dict(data or {})})
        reply_head = {"sender": head.get("receiver") or "SCJG-370600", "receiver": head.get("sender") or "HALL",
                      "sn": head.get("sn") or "", "securityType": "0"}
        envelope = (
            f'<?xml version="1.0" encoding="UTF-8"?><soap-env:Envelope xmlns:soap-env="{SOAP_ENV}">'
            f'<soap-env:Body><ex:ExchangeMessageResponse xmlns:ex="{EXCHANGE_NS}"><ex:Header>'
            + "".join(f"<ex:{k}>{escape(v)}</ex:{k}>" for k, v in reply_head.items())
            + f"</ex:Header><ex:Body>{escape(result)}</ex:Body></ex:ExchangeMessageResponse>"
            "</soap-env:Body></soap-env:Envelope>")
        return web.Response(body=envelope.encode("utf-8"), content_type="text/xml", charset="utf-8")

    def _fault(self, code: str, text: str) -> web.Response:
        envelope = (
            f'<?xml version="1.0" encoding="UTF-8"?><soap-env:Envelope xmlns:soap-env="{SOAP_ENV}"><soap-env:Body>'
            f"<soap-env:Fault><faultcode>soap-env:{escape(code)}</faultcode><faultstring>{escape(text)}</faultstring>"
            "</soap-env:Fault></soap-env:Body></soap-env:Envelope>")
        return web.Response(status=500, body=envelope.encode("utf-8"), content_type="text/xml", charset="utf-8")


def sink_config(url: str, *, name: str = "market_ministry") -> str:
    """The gateway.toml sections that deliver to, pull from and reconcile with the ministry at ``url``."""
    header = 'sender = "HALL-370602"\nreceiver = "SCJG-370600"\n'
    return f"""
[sources.{name}]                   # supervision results and 并联审批 opinions, pulled over SOAP
adapter = "soap"
mapping = "mappings/market_ministry.in.yaml"
wsdl = "builtin:provincial-exchange.wsdl"
endpoint = "{url}"
timeouts = {{ connect = "2s", read = "10s", total = "15s" }}

[sources.{name}.pull]
operation = "service"
soap_headers = {{ serviceId = "records.query" }}
query = {{ QUERY = {{ SINCE = "{{cursor}}", PAGE = "{{page}}", PAGESIZE = "{{page_size}}" }} }}
body_at = "Body"
body_as = "xml"
response_xml_at = "Body"
items_path = "RESULT.DATA.RECORDS.RECORD"
paging = {{ mode = "page", page_size = 200, has_more_path = "RESULT.DATA.HASMORE" }}
watermark_field = "MODIFIEDTIME"
initial_cursor = "2026-01-01 00:00:00.000000"
poll_interval = "300ms"

[sources.{name}.pull.request.Header]
{header}sn = "Q-{{cursor}}-{{page}}"

[sinks.{name}]                     # approval results to supervise, cases dispatched for 并联审批
adapter = "soap"
mapping = "mappings/market_ministry.out.yaml"
wsdl = "builtin:provincial-exchange.wsdl"
endpoint = "{url}"
timeouts = {{ connect = "2s", read = "10s", total = "15s" }}

[sinks.{name}.push]
operation = "service"
soap_headers = {{ serviceId = "exchange.{{kind}}" }}
body_at = "Body"
body_as = "xml"
response_xml_at = "Body"
status_path = "RESULT.STATUS"
success_values = ["0"]
message_path = "RESULT.DESC"
remote_id_path = "RESULT.DATA.RECEIPTNO"

[sinks.{name}.push.request.Header]
{header}item = "{{kind}}"
sn = "{{idempotency_key}}"

[sinks.{name}.reconcile]           # 对账 (gateway reconcile {name} --date D)
operation = "service"
soap_headers = {{ serviceId = "reconcile.manifest" }}
query = {{ QUERY = {{ FROM = "{{start}}", TO = "{{end}}" }} }}
body_at = "Body"
body_as = "xml"
response_xml_at = "Body"
status_path = "RESULT.STATUS"
message_path = "RESULT.DESC"
received_path = "RESULT.DATA.RECEIVED.ITEM"
sent_path = "RESULT.DATA.SENT.ITEM"
can_resend_path = "RESULT.DATA.CANRESEND"

[sinks.{name}.reconcile.request.Header]
{header}sn = "RC-{{start}}"

[sinks.{name}.reconcile.resend]
operation = "service"
soap_headers = {{ serviceId = "reconcile.resend" }}
query = {{ QUERY = {{ ITEM = "{{entries}}" }} }}
body_at = "Body"
body_as = "xml"
response_xml_at = "Body"
status_path = "RESULT.STATUS"
message_path = "RESULT.DESC"

[sinks.{name}.reconcile.resend.request.Header]
{header}sn = "RS-{{start}}"
"""


__all__ = ["MarketMinistry", "Received", "Sent", "china_iso", "gateway_key", "sink_config"]
