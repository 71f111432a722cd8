"""Shared set-up for the console tests: a real gateway with a hall push source, a hall sink that refuses
everything (so dead letters exist), and records that make red and yellow cards.

Fixtures and builders only; test modules import what they use.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.app import Gateway
from gateway.config import load_config
from gateway.schema.identifiers import credit_code_check_char, org_code_check_char
from gateway.store.cases import CaseQuery
from tests.test_api_support import ID_NO, MAPPINGS, PUSH_AUTH, PUSH_TOKEN, case_item

# A 统一社会信用代码 whose embedded 组织机构代码 and own check character both hold (GB 32100, GB 11714).
CREDIT_BODY = "91370602" + "MA3C4L7H" + org_code_check_char("MA3C4L7H")
CREDIT_CODE = CREDIT_BODY + credit_code_check_char(CREDIT_BODY)

CHINA = timezone(timedelta(hours=8))

CONFIG = """\
[gateway]
name = "console-test"
store = "sqlite:///gateway.db"
adapters = ["push", "rest"]

[api]
port = 0

[delivery]
poll_interval = "100ms"
backoff_initial = "100ms"
max_attempts = 1

[supervision]
tick_interval = "1h"

[sources.hall_platform]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
auth = {{ tokens = [{{ sha256 = "{token_sha256}", label = "test" }}] }}

[sinks.city_platform]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{refusing_url}"

[[routes]]
name = "hall-to-city"
sources = ["hall_platform"]
kinds = ["case"]
to = ["city_platform"]
"""


def write_console_dir(root: Path, refusing_url: str) -> Path:
    shutil.copytree(MAPPINGS, root / "mappings")
    config = root / "gateway.toml"
    config.write_text(CONFIG.format(token_sha256=hashlib.sha256(PUSH_TOKEN.encode()).hexdigest(),
                                    refusing_url=refusing_url), encoding="utf-8")
    return config


async def refusing_server() -> tuple[web.AppRunner, str]:
    """A city platform on loopback that refuses every record (400): each delivery to it is a dead letter."""
    async def refuse(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"error": "字段 itemCode 不在事项目录中"}, status=400)

    app = web.Application()
    app.router.add_post("/{tail:.*}", refuse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}/api/records"


async def console_gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    runner, url = await refusing_server()
    gw = Gateway(load_config(write_console_dir(tmp_path, url)))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()
        await runner.cleanup()


def finish_item(case_no: str, finish_time: str, **fields: Any) -> dict[str, Any]:
    """A 办结 as the hall platform pushes it (dataType FINISH), with a licence."""
    item = {"dataType": "FINISH", "caseNo": case_no, "itemCode": "3706000001", "deptName": "烟台市芝罘区行政审批服务局",
            "handler": "王五", "result": "CERTIFIED", "finishTime": finish_time,
            "license": {"name": "食品经营许可证", "no": f"JY{case_no[-4:]}"}}
    item.update(fields)
    return item


def accept_item(case_no: str, accept_time: str, days: int = 5) -> dict[str, Any]:
    return {"dataType": "ACCEPT", "caseNo": case_no, "itemCode": "3706000001", "deptName": "烟台市芝罘区行政审批服务局",
            "handler": "王五", "status": "ACCEPTED", "acceptTime": accept_time, "promiseDays": days, "promiseUnit": "g"}


def scenario() -> list[dict[str, Any]]:
    """Cases that show every part of the console.

    - SL-RED-0001: a person's case, accepted in 2026-09 with 5 working days, never completed: overdue, a red card;
    - SL-OUT-0002: an enterprise's case completed with no acceptance: outside the system (体外循环), red;
    - SL-OK-0003: applied for, accepted and completed minutes ago, on time, with a licence;
    - SL-BAD-0004: an ID number whose check character is wrong: quarantined.
    """
    return [
        case_item("SL-RED-0001", submitTime="2026-09-28 09:00:00", regionCode="370602", deptName="芝罘区市场监管局"),
        accept_item("SL-RED-0001", "2026-09-29 10:00:00"),
        case_item("SL-OUT-0002", applicantType="ENTERPRISE", applicantName="烟台海鲜贸易有限公司", applicantIdType="20",
                  applicantIdNo=CREDIT_CODE, contactName="李四", submitTime="2026-10-08 09:00:00", regionCode="370613",
                  itemCode="3706000002", itemName="酒类经营许可", deptName="莱山区行政审批服务局"),
        finish_item("SL-OUT-0002", "2026-10-09 16:00:00", itemCode="3706000002"),
        case_item("SL-OK-0003", submitTime=_ago(3), regionCode="370602", deptName="芝罘区市场监管局",
                  applicantName="赵六"),
        accept_item("SL-OK-0003", _ago(2)),
        finish_item("SL-OK-0003", _ago(1)),
        # An ID number with a wrong check character: quarantined, for the quarantine page.
        case_item("SL-BAD-0004", id_no="110105194912310021", submitTime=_ago(3)),
    ]


def _ago(minutes: int) -> str:
    return (datetime.now(CHINA) - timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def this_month() -> str:
    """The month SL-OK-0003 was applied for and completed in (China time)."""
    return datetime.now(CHINA).strftime("%Y-%m")


async def push(http: aiohttp.ClientSession, gw: Gateway, items: list[dict[str, Any]]) -> dict[str, Any]:
    assert gw.api is not None
    async with http.post(gw.api.url + "/api/v1/inbound/hall_platform", json=items, headers=PUSH_AUTH) as r:
        body = await r.json()
        # 400 names the quarantined items; the others were committed all the same.
        assert r.status in (200, 202, 400) and body["committed"] is True, body
        return body


async def until(predicate: Any, timeout: float = 20.0) -> Any:
    """Poll ``predicate`` (a coroutine function) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {predicate.__name__}")
        await asyncio.sleep(0.1)


async def load_scenario(http: aiohttp.ClientSession, gw: Gateway) -> None:
    """Push the scenario and wait until the index holds its cases with their cards and the dead letter exists."""
    await push(http, gw, scenario())
    store: Any = gw.store

    async def indexed() -> bool:
        rows, _, _ = await store.search_cases(CaseQuery(limit=10))
        by_no = {r["case_no"]: r for r in rows}
        return (len(by_no) == 3 and by_no["SL-RED-0001"]["warning"] == 2 and by_no["SL-OUT-0002"]["warning"] == 2
                and by_no["SL-OK-0003"]["status"] == "completed")

    async def dead_letter() -> bool:
        return bool(await store.list_deliveries(state="dead", limit=5))

    await until(indexed)
    await until(dead_letter)


__all__ = ["CREDIT_CODE", "ID_NO", "console_gateway", "load_scenario", "push", "scenario", "this_month", "until"]
