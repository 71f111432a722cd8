"""The two-way exchange on loopback: the hall platform (REST), the market-regulation ministry (SOAP) and the
county front-end machine (file drops), and a gateway directory wired to all three, both ways.

Used by ``gateway demo`` and the tests. Approval results go to the supervising departments the
routes choose (by 事项类型, 许可类别 and region); supervision results come back to the hall and to
the approving bureau; 食品经营许可 (XK00011) is approved in parallel (并联审批) by the market
regulator and the county health bureau; every counterpart offers reconciliation (对账).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.demo.counterparts import HallPlatform
from gateway.demo.county import CountyFrontEnd, frontend_config
from gateway.demo.ministry import MarketMinistry, sink_config
from gateway.shipped import copy_shipped_mappings

HALL_TOKEN = "demo-hall-platform-push-token-3f6e1b2a9c"  # the hall pushes with it; gateway.toml holds its SHA-256

ROUTES = """
[[routes]]                         # 审批结果推送: licences go to the market regulator to supervise
name = "licences-to-market-regulation"
kinds = ["approval_result"]
item_types = ["01"]
license_categories = ["普通", "特许", "认可", "核准", "登记"]
to = ["market_ministry"]

[[routes]]                         # the hall's licences in 牟平区 are supervised by the county's departments too
name = "county-licences-to-the-county"
kinds = ["approval_result"]
sources = ["hall_platform"]
regions = ["370612"]
to = ["county_out"]

[[routes]]                         # 监管结果 back to the approving side (the approving bureau gets it from the exchange)
name = "supervision-results-to-the-hall"
kinds = ["supervision_result"]
to = ["hall_platform"]

[[routes]]                         # departments' opinions on 并联审批 cases, for the hall's window
name = "opinions-to-the-hall"
kinds = ["process_step"]
sources = ["market_ministry", "county_results"]
to = ["hall_platform"]
"""

PARALLEL = """
[[exchange.parallel]]              # 并联审批: the hall accepts once, both departments get the case at once
name = "食品经营许可"
items = ["XK00011"]
lead = "hall_platform"
lead_department = "烟台市芝罘区行政审批服务局"
to = ["hall_platform"]

[[exchange.parallel.departments]]
name = "烟台市市场监督管理局"
system = "market_ministry"
time_limit = 5

[[exchange.parallel.departments]]
name = "牟平区卫生健康局"
system = "county_results"
sink = "county_out"
time_limit = 3
"""


def hall_sections(hall_url: str, *, token_sha256: str, auth: str | None = None, extra_sink: str = "") -> str:
    sink_auth = f"auth = {auth}\n" if auth else ""
    return f"""
[sources.hall_platform]            # the hall pushes cases, acceptances, completions and licences
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
accept = ["json"]
auth = {{ tokens = [{{ sha256 = "{token_sha256}", label = "hall" }}] }}

[sinks.hall_platform]              # everything the hall must know comes back over its REST API
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{hall_url}/api/records"
{sink_auth}{extra_sink}
[sinks.hall_platform.reconcile]
url = "{hall_url}/api/reconcile/manifest"
resend_url = "{hall_url}/api/reconcile/resend"
"""


class TwoWay:
    """Three simulated counterparts on loopback and the gateway.toml sections that reach them."""

    def __init__(self, root: Path, *, hall: HallPlatform | None = None, watch: bool = False) -> None:
        self.root = Path(root)
        self.hall = hall or HallPlatform()
        self.ministry = MarketMinistry()
        self.county: CountyFrontEnd | None = None
        self.watch = watch
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> TwoWay:
        if self.hall._runner is None:
            await self.hall.start()
        await self.ministry.start()
        drop = self.root / "drop"
        self.county = CountyFrontEnd(drop / "county-results", drop / "county-out", drop / "county-manifests")
        self._task = asyncio.get_running_loop().create_task(self.county.run(self._stopping))
        return self

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.ministry.stop()
        await self.hall.stop()

    def sections(self, *, hall_auth: str | None = None) -> str:
        """The sources, sinks, counterparts, routes and 并联审批 scheme of the three counterparts."""
        watch_hall = '\nwatch = { silence = "30m" }' if self.watch else ""
        watch_ministry = '\nwatch = { silence = "2h", expect_by = "10:00" }' if self.watch else ""
        return (
            hall_sections(self.hall.url, token_sha256=hashlib.sha256(HALL_TOKEN.encode()).hexdigest(), auth=hall_auth)
            + sink_config(self.ministry.url)
            + frontend_config("drop/county-results", "drop/county-out", "drop/county-manifests")
            + f"""
[exchange.counterparts.hall_platform]
reconcile = {{ at = "01:30" }}{watch_hall}

[exchange.counterparts.market_ministry]
reconcile = {{ at = "01:40" }}{watch_ministry}
""" + ROUTES + PARALLEL)

    def write_site(self, header: str, *, hall_auth: str | None = None) -> Path:
        """A gateway directory: the project's mappings and ``header`` (the [gateway], [api] … sections) + ours."""
        copy_shipped_mappings(self.root / "mappings")
        config = self.root / "gateway.toml"
        config.write_text(header + self.sections(hall_auth=hall_auth), encoding="utf-8")
        return config

    def connect(self, api_url: str, **options: Any) -> None:
        """The hall pushes to the running gateway's API with its token."""
        self.hall.connect_gateway(f"{api_url}/api/v1/inbound/hall_platform",
                                  headers={"Authorization": f"Bearer {HALL_TOKEN}"}, **options)


TEST_HEADER = """\
[gateway]
name = "two-way"
store = "sqlite:///gateway.db"
adapters = ["filedrop", "rest", "soap", "push"]

[api]
host = "127.0.0.1"
port = 0

[delivery]
max_attempts = 8
backoff_initial = "0.1s"
backoff_max = "1s"
poll_interval = "0.1s"

[supervision]
enabled = false
destinations = ["hall_platform"]

[audit]
seal = false

[exchange]
tick_interval = "0.3s"
"""

__all__ = ["HALL_TOKEN", "TEST_HEADER", "Act2", "TwoWay", "demo_sections", "hall_sections", "second_act"]


# --------------------------------------------------------------------------- the demo's second act

DEMO_PARALLEL_ITEM = "XK00301"  # 食品生产许可: approved in parallel (the county drop's cases are not)


def demo_sections(ministry_url: str) -> str:
    """What `gateway demo` adds to its configuration: the ministry, the county's return channel, the rules."""
    parallel = PARALLEL.replace('items = ["XK00011"]', f'items = ["{DEMO_PARALLEL_ITEM}"]').replace(
        'name = "食品经营许可"', 'name = "食品生产许可"')
    return (sink_config(ministry_url)
            + frontend_config("drop/county-results", "drop/county-out", "drop/county-manifests")
            .replace('sinks = ["county_out"]\n', 'sinks = ["county_out"]\nwatch = { silence = "30m" }\n')
            + """
[exchange.counterparts.hall_platform]
watch = { silence = "30m" }
reconcile = { at = "01:30" }

[exchange.counterparts.market_ministry]
watch = { silence = "2h" }
reconcile = { at = "01:40" }
""" + ROUTES + parallel)


@dataclass
class Act2:
    """What the demo's second act did, for its summary."""

    licences: int = 0
    to_ministry: int = 0
    to_county: int = 0
    results: int = 0
    revoked: str | None = None
    suspended: str | None = None
    notices: int = 0
    parallel_case: str | None = None
    late_department: str | None = None
    combined: bool = False
    reconciled: dict[str, str] = field(default_factory=dict)
    lost_and_repaired: int = 0


async def second_act(gw: Any, hall: HallPlatform, ministry: MarketMinistry, county: CountyFrontEnd,
                     echo: Callable[[str], None], timeout: float = 60.0) -> Act2:
    """Both directions: licences out to the supervisors, their results back, a 并联审批 case, 对账."""
    from datetime import datetime, time, timedelta, timezone

    from gateway.demo.generate import HALL_CREDIT_CODE, credit_code

    china = timezone(timedelta(hours=8))
    now = datetime.now(china)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S")
    act = Act2()
    done_cases = [b for b in hall.records.values() if isinstance(b, dict) and b.get("dataType") == "CASE"]
    chosen = [c for c in done_cases if c.get("itemCode") == "XK00023"][:6] or done_cases[:6]
    rng = random.Random(2026)
    licences = []
    for n, c in enumerate(chosen):
        # the second one is a licence in 牟平区: its approval result also goes to the county's departments
        region = "370612" if n == 1 else c.get("regionCode") or "370602"
        holder = credit_code(rng, region)
        number = f"JY{c['caseNo'][-8:]}"
        licences.append((c["caseNo"], number, holder))
        await hall.push(
            {"dataType": "FINISH", "caseNo": c["caseNo"], "deptName": "烟台市芝罘区行政审批服务局", "result": "APPROVED",
             "license": {"name": "公共场所卫生许可证", "no": number}, "finishTime": stamp},
            {"dataType": "LICENSE", "decisionNo": f"芝审批许〔2026〕{n + 1:04d}号", "caseNo": c["caseNo"],
             "itemCode": c.get("itemCode"), "itemType": "01", "regionCode": region,
             "holder": {"name": f"烟台演示企业{n + 1}有限公司", "category": "ORG", "creditCode": holder},
             "category": "GENERAL", "licenseName": "公共场所卫生许可证", "licenseNo": number, "content": "住宿、餐饮",
             "decisionDate": stamp[:10], "validFrom": stamp[:10], "validTo": "2031-12-31",
             "authority": "烟台市芝罘区行政审批服务局", "authorityCode": HALL_CREDIT_CODE})
    act.licences = len(licences)
    echo(f"act 2: the hall issued {len(licences)} licences; approval results go to the market regulator (SOAP)"
         " and, for 牟平区, to the county (files)")
    county_wanted = 1 if len(licences) > 1 else 0
    await _until(lambda: len(ministry.received_of("XK")) >= len(licences)
                 and len(county.received_of("XK")) >= county_wanted, timeout)
    act.to_ministry, act.to_county = len(ministry.received_of("XK")), len(county.received_of("XK"))
    if licences:
        case_no, number, holder = licences[0]
        ministry.publish({"TYPE": "CF", "CF_WSH": "烟市监罚〔2026〕188号", "CF_JGLX": "吊销", "CF_XDR_MC": "烟台演示企业1有限公司",
                          "CF_XDR_LB": "法人及非法人组织", "CF_XDR_SHXYM": holder, "CF_NR": "吊销公共场所卫生许可证",
                          "CF_XKBH": number, "CF_XKYX": "吊销", "CF_JDRQ": stamp[:10], "CF_CFJG": "烟台市市场监督管理局",
                          "CF_CFJGDM": HALL_CREDIT_CODE})
        act.revoked = number
    if len(licences) > 1:
        _, number, holder = licences[1]
        county.send({"TYPE": "CF", "CF_WSH": "芝卫罚〔2026〕12号", "CF_JGLX": "暂扣", "CF_XDR_MC": "烟台演示企业2有限公司",
                     "CF_XDR_LB": "法人及非法人组织", "CF_XDR_SHXYM": holder, "CF_NR": "暂扣许可证三个月",
                     "CF_XKBH": number, "CF_XKYX": "暂扣", "CF_JDRQ": stamp[:10], "CF_CFJG": "芝罘区卫生健康局",
                     "CF_CFJGDM": HALL_CREDIT_CODE})
        act.suspended = number
    for n, (_, number, holder) in enumerate(licences[2:4]):
        ministry.publish({"TYPE": "CF", "CF_WSH": f"烟市监检〔2026〕{n + 30}号", "CF_JGLX": "检查",
                          "CF_XDR_MC": f"烟台演示企业{n + 3}有限公司", "CF_XDR_LB": "法人及非法人组织", "CF_XDR_SHXYM": holder,
                          "CF_NR": "日常检查，未发现问题", "CF_XKBH": number, "CF_XKYX": "无", "CF_JDRQ": stamp[:10],
                          "CF_CFJG": "烟台市市场监督管理局", "CF_CFJGDM": HALL_CREDIT_CODE})
    act.results = (1 if act.revoked else 0) + (1 if act.suspended else 0) + len(licences[2:4])
    notices_wanted = (1 if act.revoked else 0) + (1 if act.suspended else 0)
    # 并联审批: a 食品生产许可 case the hall accepted four working days ago (the hall entered it only now),
    # answered at once by the market regulator (5 working days) and late by the county health bureau (3)
    case_no = f"SB{now:%Y%m%d}9999"
    act.parallel_case = case_no
    accepted = _working_days_ago(now, 4).strftime("%Y-%m-%d 09:40:00")
    await hall.push(
        {"dataType": "CASE", "caseNo": case_no, "itemCode": DEMO_PARALLEL_ITEM, "itemName": "食品生产许可",
         "applicantType": "ENTERPRISE", "applicantName": "烟台演示食品有限公司", "applicantIdType": "20",
         "applicantIdNo": credit_code(rng), "submitTime": accepted[:11] + "09:05:00", "regionCode": "370602"},
        {"dataType": "ACCEPT", "caseNo": case_no, "deptName": "烟台市芝罘区行政审批服务局", "status": "ACCEPTED",
         "acceptTime": accepted})
    await _until(lambda: any(d.get("SBLSH") == case_no for d in ministry.received_of("SQ"))
                 and any(d.get("SBLSH") == case_no for d in county.received_of("SQ")), timeout)
    echo(f"act 2: 并联审批 case {case_no} (accepted {accepted[:10]}) dispatched at once to the market regulator "
         "(SOAP) and the county (files)")
    ministry.publish({"TYPE": "YJ", "SBLSH": case_no, "SXBM": DEMO_PARALLEL_ITEM, "SPHJDM": "2", "SPHJMC": "部门审查",
                      "SPBMMC": "烟台市市场监督管理局", "SPRXM": "孙七", "SPYJ": "生产场所符合要求", "SPSJ": stamp, "YWDZ": "通过"})

    def at_hall(data_type: str) -> list[dict[str, Any]]:
        return [b for b in hall.records.values() if isinstance(b, dict) and b.get("dataType") == data_type]

    def alerts_at_hall(prefix: str) -> list[dict[str, Any]]:
        return [a for a in at_hall("ALERT") if str(a.get("alertType", "")).startswith(prefix)]

    # the county's 3 working days are over: the exchange's deadline tick reports it to the hall (red)
    await _until(lambda: bool(alerts_at_hall("parallel_late")), timeout)
    act.late_department = "牟平区卫生健康局"
    echo(f"act 2: {act.late_department} is past its 3 working days on {case_no}: a parallel_late alert reached "
         "the hall; it answers now")
    county.send({"TYPE": "YJ", "SBLSH": case_no, "SXBM": DEMO_PARALLEL_ITEM, "SPHJDM": "2", "SPHJMC": "部门审查",
                 "SPBMMC": "牟平区卫生健康局", "SPRXM": "周八", "SPYJ": "从业人员健康证齐全", "SPSJ": stamp, "YWDZ": "通过"})
    await _until(lambda: len(alerts_at_hall("licence_")) >= notices_wanted and len(at_hall("PENALTY")) >= act.results
                 and any(s.get("meta", {}).get("sourceSystem") == "exchange" for s in at_hall("STEP")), timeout)
    act.notices = len(alerts_at_hall("licence_"))
    act.combined = True
    # 对账: the ministry silently lost one licence; today's reconciliation finds it and sends it again
    assert gw.exchange is not None
    start = datetime.combine(now.date(), time(0), china)
    lost = next((k for k, r in ministry.received.items() if r.data.get("TYPE") == "XK"), None)
    if lost is not None:
        del ministry.received[lost]  # acknowledged once, gone from its database since
    for name in ("hall_platform", "market_ministry", "county"):
        result = await gw.exchange.reconcile(name, start, start + timedelta(days=1), triggered_by="demo")
        act.reconciled[name] = result["outcome"]
        act.lost_and_repaired += int(result.get("summary", {}).get("resent", 0))
    await _until(lambda: len(ministry.received_of("XK")) >= len(licences), timeout)
    return act


def _working_days_ago(now: Any, n: int) -> Any:
    """The date ``n`` working days before ``now`` by the gateway's calendar (weekends, holidays, 调休)."""
    from datetime import timedelta

    from gateway.supervision.calendar import WorkCalendar

    calendar, day = WorkCalendar.default(), now.date()
    while n > 0:
        day -= timedelta(days=1)
        n -= calendar.is_workday(day)
    return day


async def _until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the demo's second act did not finish in time")
        await asyncio.sleep(0.1)
