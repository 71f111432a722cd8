"""The demo's provincial integrated platform (省一体化政务服务平台): a paged REST feed the gateway pulls with the
rest adapter's pull mode, and the cases on it that make electronic supervision speak up by themselves.

The feed serves the platform's approval data as JSON objects with the provincial exchange's field names
(SPSHENQIN 申请, SPSHOULI 受理, SPBANJIE 办结), ordered by GXSJ (更新时间), so the shipped
``provincial_approvedatainfo.in.yaml`` mapping reads it as it reads the XML the county drops.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from gateway.demo.counterparts import PagedFeed
from gateway.demo.generate import HALL_CREDIT_CODE, case_fields
from gateway.supervision.calendar import WorkCalendar

__all__ = ["PROVINCE_TOKEN", "SILENCE", "ProvincialPlatform", "Scenario", "province_sections", "provincial_items"]

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
PROVINCE_TOKEN = "demo-provincial-platform-feed-token-8d41c7"  # the gateway reads it from secrets/province.token
SILENCE = 3  # seconds without an item before the provincial platform's watchdog fires (demo scale)
CASE_BASE = 900_000  # provincial case numbers never collide with the county drop's


def province_sections(url: str, *, token_file: str = "secrets/province.token") -> str:
    """The gateway.toml sections that pull the provincial platform's feed and watch it."""
    return f"""
[sources.provincial_platform]      # 省一体化政务服务平台: the gateway pulls its approval-data feed (REST, paged)
adapter = "rest"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
url = "{url}/api/v1/approvedata"
items_path = "items"
poll_interval = "500ms"
auth = {{ type = "bearer", token = {{ file = "{token_file}" }} }}
cursor = {{ mode = "since", param = "since", field = "GXSJ", inclusive = false }}  # GXSJ never repeats
pagination = {{ mode = "page", page_size = 50, page_param = "page", size_param = "page_size" }}

[exchange.counterparts.provincial_platform]
watch = {{ silence = "{SILENCE}s" }}          # demo scale: a real feed gets minutes or hours

[[routes]]                         # the province's cases reach the hall's window too
name = "province-to-hall"
sources = ["provincial_platform"]
to = ["hall_platform"]
"""


@dataclass
class Scenario:
    """What the provincial feed holds on purpose, for the demo's summary."""

    ordinary: list[str] = field(default_factory=list)
    holiday: str = ""  # accepted before 国庆, completed after it, inside its working-day limit
    holiday_text: str = ""
    red: str = ""  # accepted long ago, never completed: 红牌
    yellow: str = ""  # 80 % of its limit used: 黄牌
    outside: str = ""  # completed without ever being accepted: 体外循环


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _working_days_before(calendar: WorkCalendar, day: date, n: int) -> date:
    """The working day ``n`` working days before ``day`` (weekends, holidays and 调休 as the calendar says)."""
    while n > 0:
        day -= timedelta(days=1)
        if calendar.is_workday(day):
            n -= 1
    return day


def _working_days_after(calendar: WorkCalendar, day: date, n: int) -> date:
    while n > 0:
        day += timedelta(days=1)
        if calendar.is_workday(day):
            n -= 1
    return day


def _case(i: int, rng: random.Random, submitted: datetime, limit: int) -> dict[str, str]:
    fields = case_fields(CASE_BASE + i, rng, submitted_from=submitted, spread_minutes=1)
    fields["SBLSH"] = f"37069{CASE_BASE + i:011d}"
    fields.update(CNSX=str(limit), CNSXDW="G", SLBMMC="烟台市芝罘区行政审批服务局")
    return fields


def _acceptance(case: dict[str, str], accepted: datetime, due: date, rng: random.Random) -> dict[str, str]:
    return {"SBLSH": case["SBLSH"], "SXBM": case["SXBM"], "SLBMMC": "烟台市芝罘区行政审批服务局",
            "SLBMZZJGDM": HALL_CREDIT_CODE, "BLRXM": rng.choice(["刘敏", "陈静", "赵磊"]), "SLZTDM": "1",
            "SLWSBH": f"芝审受〔{accepted:%Y}〕{rng.randrange(1000, 9999)}号", "SLSJ": _stamp(accepted),
            "CNBJSJ": f"{due:%Y-%m-%d} 17:00:00"}


def _completion(case: dict[str, str], completed: datetime) -> dict[str, str]:
    return {"SBLSH": case["SBLSH"], "SXBM": case["SXBM"], "BJBMMC": "烟台市芝罘区行政审批服务局",
            "BJBMZZJGDM": HALL_CREDIT_CODE, "BJRXM": "孙丽", "BJJGDM": "6", "BJJGMS": "准予许可",
            "BJSJ": _stamp(completed)}


def provincial_items(n_ordinary: int, *, now: datetime | None = None, calendar: WorkCalendar | None = None,
                     seed: int = 37) -> tuple[list[dict[str, Any]], Scenario]:
    """Today's business on the provincial platform (``n_ordinary`` cases submitted in the last two hours,
    accepted, some completed) and four cases that need no staging for supervision to notice them."""
    calendar = calendar or WorkCalendar.default()
    now = (now or datetime.now(CHINA)).astimezone(CHINA).replace(tzinfo=None)
    rng = random.Random(seed)
    scenario = Scenario()
    items: list[dict[str, Any]] = []
    for i in range(n_ordinary):
        submitted = now - timedelta(minutes=rng.randrange(30, 120))
        case = _case(i, rng, submitted, 20)
        accepted = submitted + timedelta(minutes=rng.randrange(5, 25))
        item: dict[str, Any] = {"SPSHENQIN": case, "SPSHOULI": _acceptance(
            case, accepted, _working_days_after(calendar, accepted.date(), 20), rng)}
        if i % 3 == 2:
            item["SPBANJIE"] = _completion(case, accepted + timedelta(minutes=rng.randrange(2, 20)))
        items.append(item)
        scenario.ordinary.append(case["SBLSH"])
    # 国庆 2026: accepted on 9-29 with 5 working days; 9-30, 10-08, 10-09, 10-10 (a 调休 Saturday) and 10-12
    # are the five, so completing on 10-12 is on time although two weeks went by.
    case = _case(n_ordinary, rng, datetime(2026, 9, 28, 15, 10), 5)
    accepted = datetime(2026, 9, 29, 9, 30)
    due = _working_days_after(calendar, accepted.date(), 5)
    items.append({"SPSHENQIN": case, "SPSHOULI": _acceptance(case, accepted, due, rng),
                  "SPBANJIE": _completion(case, datetime(2026, 10, 12, 16, 0))})
    scenario.holiday = case["SBLSH"]
    scenario.holiday_text = f"accepted 2026-09-29 with 5 working days, due {due}, completed 2026-10-12: on time"
    # 红牌: accepted 16 working days ago with a 10-working-day limit, still open
    accepted = datetime.combine(_working_days_before(calendar, now.date(), 16), datetime.min.time()).replace(hour=10)
    case = _case(n_ordinary + 1, rng, accepted - timedelta(hours=2), 10)
    items.append({"SPSHENQIN": case, "SPSHOULI": _acceptance(
        case, accepted, _working_days_after(calendar, accepted.date(), 10), rng)})
    scenario.red = case["SBLSH"]
    # 黄牌: accepted 8 working days ago with 10: 80 % used
    accepted = datetime.combine(_working_days_before(calendar, now.date(), 8), datetime.min.time()).replace(hour=10)
    case = _case(n_ordinary + 2, rng, accepted - timedelta(hours=1), 10)
    items.append({"SPSHENQIN": case, "SPSHOULI": _acceptance(
        case, accepted, _working_days_after(calendar, accepted.date(), 10), rng)})
    scenario.yellow = case["SBLSH"]
    # 体外循环: submitted this morning and completed, with no acceptance ever recorded
    submitted = now - timedelta(minutes=50)
    case = _case(n_ordinary + 3, rng, submitted, 20)
    items.append({"SPSHENQIN": case, "SPBANJIE": _completion(case, submitted + timedelta(minutes=30))})
    scenario.outside = case["SBLSH"]
    return items, scenario


class ProvincialPlatform(PagedFeed):
    """The provincial platform's approval-data feed: ``GET /api/v1/approvedata?since=&page=&page_size=``,
    bearer token, ordered by GXSJ (更新时间, microseconds, so every item has its own)."""

    name = "provincial platform"

    def __init__(self, **service: Any) -> None:
        super().__init__(pagination="page", since_field="GXSJ", since_inclusive=False, path="/api/v1/approvedata",
                         bearer_token=PROVINCE_TOKEN, **service)
        self._last = datetime.min

    def publish(self, items: list[dict[str, Any]]) -> None:
        """Put items on the feed now (each stamped with a strictly increasing 更新时间)."""
        stamped = []
        for item in items:
            moment = max(datetime.now(CHINA).replace(tzinfo=None), self._last + timedelta(microseconds=1))
            self._last = moment
            stamped.append({**item, "GXSJ": moment.strftime("%Y-%m-%dT%H:%M:%S.%f")})
        self.append(stamped)
