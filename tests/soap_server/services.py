"""The test counterpart's SOAP services (spyne): a paged records query, a submit operation
answering a RESULT, and the provincial exchange operation ``service``.

Behaviour the tests steer lives in :class:`Control`, found in the WSGI environ of each request.
"""

from __future__ import annotations

import base64
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from spyne import Application, Array, Boolean, ComplexModel, Fault, Integer, ServiceBase, Unicode, rpc
from spyne.protocol.soap import Soap11

RECORDS_NS = "urn:gateway-test:records"
EXCHANGE_NS = "urn:gov-exchange:provincial:v1"
CONTROL_KEY = "soap_test.control"


@dataclass
class Control:
    """What the tests set and read: data, fault and delay modes, security, and what arrived."""

    records: list[dict[str, Any]] = field(default_factory=list)
    fault_mode: str | None = None  # "client" | "server": every operation answers that fault
    delay_seconds: float = 0.0  # sleep before answering (slow mode)
    users: dict[str, str] = field(default_factory=dict)
    require_username_token: bool = False
    require_signature: bool = False
    client_cert_pem: bytes | None = None  # the certificate request signatures must verify against
    tamper_in_transit: bool = False  # alter the request Body before the checks, as a meddling proxy would
    response_key_pem: bytes | None = None  # sign responses with this key …
    response_cert_pem: bytes | None = None  # … and certificate
    # What arrived, for the tests to inspect.
    queries: list[dict[str, Any]] = field(default_factory=list)
    submissions: dict[str, dict[str, Any]] = field(default_factory=dict)
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    security_log: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _receipts: itertools.count = field(default_factory=lambda: itertools.count(1))

    def next_receipt(self, prefix: str) -> str:
        with self.lock:
            return f"{prefix}-{next(self._receipts):06d}"


def make_records(count: int, *, start: str = "2026-09-01 08:00:00", same_time_pairs: bool = True) -> list[dict]:
    """Deterministic records in ascending ``modifiedTime``; pairs share a timestamp to test boundaries."""
    import datetime as dt

    base = dt.datetime.fromisoformat(start)
    records = []
    for index in range(count):
        step = index // 2 if same_time_pairs else index
        records.append(
            {
                "id": f"R{index + 1:06d}",
                "caseNo": f"440300-2026-{index + 1:06d}",
                "applicant": f"申请人{index + 1}",
                "status": "1" if index % 3 else "2",
                "modifiedTime": (base + dt.timedelta(seconds=7 * step)).strftime("%Y-%m-%d %H:%M:%S"),
                "version": 1 + index % 2,
            }
        )
    return records


def _control(ctx: Any) -> Control:
    return ctx.transport.req_env[CONTROL_KEY]


def _injected_fault(control: Control) -> None:
    if control.fault_mode == "client":
        raise Fault(faultcode="Client.InvalidRequest", faultstring="请求参数不符合规范: caseNo 格式错误")
    if control.fault_mode == "server":
        raise Fault(faultcode="Server.Unavailable", faultstring="数据库暂时不可用, 请稍后重试")


def _select(control: Control, since: str | None) -> list[dict[str, Any]]:
    # ">= since": the boundary record is sent again after a restart and deduplicated downstream,
    # rather than lost when several records share the watermark.
    rows = [r for r in control.records if since is None or r["modifiedTime"] >= since]
    return sorted(rows, key=lambda r: (r["modifiedTime"], r["id"]))


# --------------------------------------------------------------------------- records service


class Record(ComplexModel):
    __namespace__ = RECORDS_NS
    _type_info = [
        ("id", Unicode),
        ("caseNo", Unicode),
        ("applicant", Unicode),
        ("status", Unicode),
        ("modifiedTime", Unicode),
        ("version", Integer),
    ]


class RecordPage(ComplexModel):
    __namespace__ = RECORDS_NS
    _type_info = [
        ("records", Array(Record)),
        ("page", Integer),
        ("total", Integer),
        ("hasMore", Boolean),
        ("nextToken", Unicode),
    ]


class ResultData(ComplexModel):
    __namespace__ = RECORDS_NS
    _type_info = [("receiptNo", Unicode)]


class Result(ComplexModel):
    __namespace__ = RECORDS_NS
    __type_name__ = "RESULT"
    _type_info = [("STATUS", Unicode), ("DESC", Unicode), ("DATA", ResultData)]


def _token(offset: int, since: str | None) -> str:
    return base64.urlsafe_b64encode(f"{offset}|{since or ''}".encode()).decode()


def _untoken(token: str) -> tuple[int, str | None]:
    offset, since = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
    return int(offset), since or None


class RecordsService(ServiceBase):
    @rpc(Unicode, Integer, Integer, Unicode, _returns=RecordPage)
    def QueryRecords(ctx, since, page, pageSize, token):  # noqa: N802,N803 - names are the wire contract
        control = _control(ctx)
        _injected_fault(control)
        size = pageSize or 100
        with control.lock:
            control.queries.append({"since": since, "page": page, "pageSize": pageSize, "token": token})
            if token:
                offset, since = _untoken(token)
            else:
                offset = ((page or 1) - 1) * size
            rows = _select(control, since)
        chunk = rows[offset : offset + size]
        more = offset + size < len(rows)
        return RecordPage(
            records=[Record(**row) for row in chunk],
            page=page,
            total=len(rows),
            hasMore=more,
            nextToken=_token(offset + size, since) if more else None,
        )

    @rpc(Unicode, Unicode, Unicode, Unicode, Unicode, _returns=Result, _out_variable_name="RESULT")
    def SubmitRecord(ctx, idempotencyKey, caseNo, kind, applicant, decision):  # noqa: N802,N803
        control = _control(ctx)
        _injected_fault(control)
        if not caseNo:
            raise Fault(faultcode="Client.MissingField", faultstring="caseNo 不能为空")
        if caseNo.startswith("REJECT"):
            return Result(STATUS="1", DESC=f"办件 {caseNo} 的事项编码不存在")
        if caseNo.startswith("BUSY"):
            return Result(STATUS="9", DESC="系统繁忙, 请稍后重试")
        with control.lock:
            known = control.submissions.get(idempotencyKey)
        if known is None:
            known = {
                "idempotencyKey": idempotencyKey,
                "caseNo": caseNo,
                "kind": kind,
                "applicant": applicant,
                "decision": decision,
                "receiptNo": control.next_receipt("R"),
            }
            with control.lock:
                control.submissions[idempotencyKey] = known
        return Result(STATUS="0", DESC="接收成功", DATA=ResultData(receiptNo=known["receiptNo"]))


# --------------------------------------------------------------------------- provincial exchange


class ExchangeHeader(ComplexModel):
    __namespace__ = EXCHANGE_NS
    _type_info = [
        ("sender", Unicode),
        ("receiver", Unicode),
        ("cc", Unicode),
        ("flow", Unicode),
        ("item", Unicode),
        ("sn", Unicode),
        ("securityType", Unicode),
        ("operator", Unicode),
    ]


class ExchangeMessageType(ComplexModel):
    __namespace__ = EXCHANGE_NS
    __type_name__ = "ExchangeMessageType"
    _type_info = [("Header", ExchangeHeader), ("Body", Unicode)]


def _result_xml(status: str, desc: str, data: etree._Element | None = None) -> str:
    result = etree.Element("RESULT")
    etree.SubElement(result, "STATUS").text = status
    etree.SubElement(result, "DESC").text = desc
    if data is not None:
        result.append(data)
    return etree.tostring(result, encoding="unicode")


def _service_id(ctx: Any) -> str | None:
    for element in ctx.in_header_doc or []:
        if etree.QName(element).localname == "serviceId":
            return (element.text or "").strip()
    return None


def _business_xml(text: str | None) -> etree._Element | None:
    if not text:
        return None
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        return etree.fromstring(text.encode("utf-8"), parser=parser)
    except etree.XMLSyntaxError:
        return None


class ExchangeService(ServiceBase):
    @rpc(
        ExchangeMessageType,
        _body_style="bare",
        _in_message_name="ExchangeMessage",
        _out_message_name="ExchangeMessageResponse",
        _returns=ExchangeMessageType,
    )
    def service(ctx, message):
        control = _control(ctx)
        _injected_fault(control)
        service_id = _service_id(ctx)
        header = message.Header
        reply_header = ExchangeHeader(
            sender=header.receiver if header else None,
            receiver=header.sender if header else None,
            sn=header.sn if header else None,
            securityType="0",
        )
        business = _business_xml(message.Body)
        entry = {
            "serviceId": service_id,
            "header": {name: getattr(header, name, None) for name in ExchangeHeader._type_info} if header else {},
            "body": message.Body,
        }
        with control.lock:
            control.exchanges.append(entry)
        if service_id == "approval.result.push":
            if business is None or business.tag != "APPROVEDATAINFO":
                body = _result_xml("2", "报文格式错误: Body 不是 APPROVEDATAINFO")
            else:
                data = etree.Element("DATA")
                etree.SubElement(data, "RECEIPTNO").text = control.next_receipt("GD")
                body = _result_xml("0", "接收成功", data)
        elif service_id == "records.query":
            query = business if business is not None and business.tag == "QUERY" else etree.Element("QUERY")
            since = query.findtext("SINCE") or None
            page = int(query.findtext("PAGE") or 1)
            size = int(query.findtext("PAGESIZE") or 100)
            with control.lock:
                control.queries.append({"since": since, "page": page, "pageSize": size, "token": None})
                rows = _select(control, since)
            chunk = rows[(page - 1) * size : page * size]
            data = etree.Element("DATA")
            etree.SubElement(data, "HASMORE").text = "true" if page * size < len(rows) else "false"
            records = etree.SubElement(data, "RECORDS")
            for row in chunk:
                record = etree.SubElement(records, "RECORD")
                for key, value in row.items():
                    etree.SubElement(record, key.upper()).text = str(value)
            body = _result_xml("0", "查询成功", data)
        else:
            raise Fault(faultcode="Client.UnknownService", faultstring=f"未知的 serviceId: {service_id!r}")
        return ExchangeMessageType(Header=reply_header, Body=body)


def records_application() -> Application:
    return Application(
        [RecordsService], tns=RECORDS_NS, name="RecordsApplication", in_protocol=Soap11(validator="lxml"),
        out_protocol=Soap11(),
    )


def exchange_application() -> Application:
    return Application(
        [ExchangeService], tns=EXCHANGE_NS, name="ExchangeApplication", in_protocol=Soap11(validator="lxml"),
        out_protocol=Soap11(),
    )
