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
import shutil
from pathlib import Path
from typing import Any

from gateway.demo.counterparts import HallPlatform
from gateway.demo.county import CountyFrontEnd, frontend_config
from gateway.demo.ministry import MarketMinistry, sink_config

MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "mappings"
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
        shutil.copytree(MAPPINGS_DIR, self.root / "mappings", dirs_exist_ok=True)
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

[exchange]
tick_interval = "0.3s"
"""

__all__ = ["HALL_TOKEN", "TEST_HEADER", "TwoWay", "hall_sections"]
