"""Shared set-up for the exchange tests: a gateway directory whose counterparts push (or drop files) and whose
sinks are drop folders, and builders for the records the hall, the ministry and the county send.

Records are handed to the running gateway's ingestor exactly as the push API hands them over;
the simulated counterparts on loopback (gateway/demo) are used by the end-to-end tests.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters import IngestOutcome, RawRecord
from gateway.app import Gateway
from gateway.config import load_config
from gateway.demo.generate import HALL_CREDIT_CODE, credit_code

REPO = Path(__file__).resolve().parents[1]
MAPPINGS = REPO / "mappings"

HALL_CODE = HALL_CREDIT_CODE  # 烟台市芝罘区行政审批服务局
MARKET_CODE = credit_code(random.Random("market"), "370600", prefix="11")  # 烟台市市场监督管理局


def holder_code(seed: str) -> str:
    """A valid 统一社会信用代码 of an enterprise, the same for the same seed."""
    return credit_code(random.Random(seed))

BASE = """\
[gateway]
name = "exchange-test"
store = "sqlite:///gateway.db"
adapters = ["push", "filedrop"]

[api]
enabled = false

[delivery]
poll_interval = "0.1s"
backoff_initial = "0.1s"

[supervision]
enabled = false
destinations = ["hall_platform"]

[audit]
seal = false              # not what these tests are about

[sources.hall_platform]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
auth = {{ anonymous = true }}

[sources.market_ministry]
adapter = "push"
mapping = "mappings/market_ministry.in.yaml"
auth = {{ anonymous = true }}

[sources.county_results]
adapter = "push"
mapping = "mappings/county_frontend.in.yaml"
auth = {{ anonymous = true }}

[sinks.hall_platform]
adapter = "filedrop"
mapping = "mappings/hall_platform.out.yaml"
path = "out/hall"
fsync = false

[sinks.market_ministry]
adapter = "filedrop"
mapping = "mappings/market_ministry.out.yaml"
path = "out/ministry"
fsync = false

[sinks.county_out]
adapter = "filedrop"
mapping = "mappings/county_frontend.out.yaml"
path = "out/county"
fsync = false

[exchange]
tick_interval = "{tick}"

[exchange.counterparts.county]
sources = ["county_results"]
sinks = ["county_out"]

[[routes]]
name = "licences-to-market-supervision"
kinds = ["approval_result"]
item_types = ["01"]
license_categories = ["普通", "特许"]
to = ["market_ministry"]

[[routes]]
name = "county-licences-to-the-county"
kinds = ["approval_result"]
regions = ["370612"]
to = ["county_out"]

[[routes]]
name = "supervision-results-to-the-hall"
kinds = ["supervision_result"]
to = ["hall_platform"]

{extra}
"""


def write_site(root: Path, extra: str = "", *, tick: str = "0.2s") -> Path:
    shutil.copytree(MAPPINGS, root / "mappings", dirs_exist_ok=True)
    for sub in ("hall", "ministry", "county"):
        (root / "out" / sub).mkdir(parents=True, exist_ok=True)
    config = root / "gateway.toml"
    config.write_text(BASE.format(extra=extra, tick=tick), encoding="utf-8")
    return config


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = Gateway(load_config(write_site(tmp_path)))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def push(gw: Gateway, system: str, *items: dict[str, Any]) -> list[IngestOutcome]:
    """Items committed as the push API commits them (one transaction, receipts after commit)."""
    assert gw.ingestor is not None
    raws = [RawRecord(system, item, f"test {system} item {i}", json.dumps(item, ensure_ascii=False).encode())
            for i, item in enumerate(items)]
    return await gw.ingestor.ingest(system, raws)


async def settle(gw: Gateway) -> None:
    """Let the exchange follower fold everything committed so far."""
    assert gw.exchange is not None
    await gw.exchange.drain()


# --------------------------------------------------------------------------- what the counterparts send


def case(case_no: str, *, item_code: str = "XK00011", region: str = "370602", version: int = 1,
         holder: str | None = None) -> dict[str, Any]:
    """A 办件 from the hall platform (an enterprise applicant: its credit code is its ID)."""
    code = holder or credit_code(random.Random(case_no))
    return {"dataType": "CASE", "caseNo": case_no, "itemCode": item_code, "itemName": "食品经营许可",
            "applicantType": "ENTERPRISE", "applicantName": "烟台鲁东食品有限公司", "applicantIdType": "20",
            "applicantIdNo": code, "submitTime": "2026-09-28 09:00:00", "regionCode": region, "version": version}


def acceptance(case_no: str, *, at: str = "2026-09-29 10:00:00", item_code: str | None = None) -> dict[str, Any]:
    item = {"dataType": "ACCEPT", "caseNo": case_no, "deptName": "烟台市芝罘区行政审批服务局", "handler": "王五",
            "status": "ACCEPTED", "acceptTime": at}
    if item_code:
        item["itemCode"] = item_code
    return item


def completion(case_no: str, licence_no: str) -> dict[str, Any]:
    return {"dataType": "FINISH", "caseNo": case_no, "deptName": "烟台市芝罘区行政审批服务局", "result": "APPROVED",
            "license": {"name": "食品经营许可证", "no": licence_no}, "finishTime": "2026-10-12 15:00:00"}


def licence(case_no: str | None, licence_no: str, holder_code: str, *, decision: str | None = None,
            item_type: str = "01", category: str = "GENERAL", region: str = "370602", version: int = 1) -> dict[str, Any]:
    """An approval result (许可决定) from the hall, as the 双公示 licence list has it."""
    item: dict[str, Any] = {
        "dataType": "LICENSE", "decisionNo": decision or f"芝审批许〔2026〕{licence_no[-4:]}号",
        "itemCode": "XK00011", "itemType": item_type, "regionCode": region,
        "holder": {"name": "烟台鲁东食品有限公司", "category": "ORG", "creditCode": holder_code},
        "category": category, "licenseName": "食品经营许可证", "licenseNo": licence_no, "content": "预包装食品销售",
        "decisionDate": "2026-10-12", "validFrom": "2026-10-12", "validTo": "2031-10-11",
        "authority": "烟台市芝罘区行政审批服务局", "authorityCode": HALL_CODE, "version": version}
    if case_no:
        item["caseNo"] = case_no
    return item


def county_licence(case_no: str, licence_no: str, holder_code: str, *, decision: str) -> dict[str, Any]:
    """An approval result of the county's own approval bureau, as its front-end machine carries it (TYPE XK)."""
    return {"TYPE": "XK", "XK_WSH": decision, "SBLSH": case_no, "SXBM": "XK00011", "SXLX": "01", "XZQHDM": "370612",
            "XK_XDR_MC": "烟台博远食品有限公司", "XK_XDR_LB": "法人及非法人组织", "XK_XDR_SHXYM": holder_code,
            "XK_XKLB": "普通", "XK_XKZS": "食品经营许可证", "XK_XKBH": licence_no, "XK_NR": "热食类食品制售",
            "XK_JDRQ": "2026-10-15", "XK_YXQZ": "2026-10-15", "XK_YXQJZ": "2031-10-14",
            "XK_XKJG": "烟台市牟平区行政审批服务局", "XK_XKJGDM": HALL_CODE, "VERSION": "1"}


def supervision_result(decision: str, holder_code: str, *, licence_no: str | None = None, kind: str = "吊销",
                       effect: str | None = "吊销", case_no: str | None = None, version: int = 1,
                       affected_text: str | None = None) -> dict[str, Any]:
    """A supervision result (监管结果) as the market-regulation ministry's records.query returns it."""
    item: dict[str, Any] = {
        "TYPE": "CF", "CF_WSH": decision, "CF_JGLX": kind, "CF_XDR_MC": "烟台鲁东食品有限公司",
        "CF_XDR_LB": "法人及非法人组织", "CF_XDR_SHXYM": holder_code, "CF_WFXW": "销售过期食品",
        "CF_NR": f"{kind}食品经营许可证", "CF_JDRQ": "2026-11-20", "CF_CFJG": "烟台市市场监督管理局",
        "CF_CFJGDM": MARKET_CODE, "VERSION": str(version)}
    if licence_no:
        item["CF_XKBH"] = licence_no
    if effect:
        item["CF_XKYX"] = effect
    if case_no:
        item["SBLSH"] = case_no
    if affected_text:
        item["CF_NR_ZKDX"] = affected_text
    return item


def opinion(case_no: str, *, department: str, at: str, action: str = "同意",
            text: str = "符合条件，同意") -> dict[str, Any]:
    """A department's opinion on a case of 并联审批 (TYPE YJ)."""
    return {"TYPE": "YJ", "SBLSH": case_no, "SXBM": "XK00011", "SPHJDM": "2", "SPHJMC": "部门审查",
            "SPBMMC": department, "SPRXM": "李四", "SPYJ": text, "SPSJ": at, "YWDZ": action}


def rows(gw: Gateway, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the store as an operator would (a separate connection)."""
    import sqlite3

    from gateway.store import sqlite_path

    conn = sqlite3.connect(sqlite_path(gw.config.gateway.store, gw.config.base_dir))
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def audit_actions(gw: Gateway, action: str) -> list[dict[str, Any]]:
    entries = [json.loads(bytes(b)) for (b,) in rows(gw, "SELECT body FROM audit ORDER BY seq")]
    return [e for e in entries if e["action"] == action]
