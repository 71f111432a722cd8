"""`gateway exchange …` and `gateway reconcile` on the host, beside a running gateway."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner, Result
from exchange_support import (
    acceptance,
    case,
    completion,
    holder_code,
    licence,
    push,
    settle,
    site_fixture,  # noqa: F401 - the fixture, used as ``site``
    supervision_result,
)

from gateway.app import Gateway
from gateway.cli import main


async def gateway(site: Gateway, *args: str) -> Result:
    """The command as an operator types it, against the site's gateway.toml (in a thread: it runs its own loop)."""
    return await asyncio.to_thread(CliRunner().invoke, main, [*args, "-c", str(site.config.path)])


async def test_the_exchange_commands_show_the_chain_of_a_revoked_licence(site: Gateway):
    code = holder_code("cli")
    await push(site, "hall_platform", case("SB-CLI-1", holder=code), acceptance("SB-CLI-1"),
               completion("SB-CLI-1", "JY-CLI-1"), licence("SB-CLI-1", "JY-CLI-1", code))
    await push(site, "market_ministry", supervision_result("烟市监罚〔2026〕7号", code, licence_no="JY-CLI-1"),
               supervision_result("烟市监罚〔2026〕8号", code, licence_no="JY-ELSEWHERE", effect=None, kind="检查",
                                  case_no=None))
    await settle(site)
    shown = await gateway(site, "exchange", "licence", "JY-CLI-1")
    assert shown.exit_code == 0, shown.output
    assert "licence JY-CLI-1: revoked since 2026-11-20 by 烟市监罚〔2026〕7号" in shown.output
    assert "supervision_result 烟市监罚〔2026〕7号 v1 from market_ministry, case SB-CLI-1 (licence)" in shown.output
    links = await gateway(site, "exchange", "links", "--case", "SB-CLI-1", "--json")
    kinds = [json.loads(line)["kind"] for line in links.output.splitlines()]
    assert kinds == ["case", "acceptance", "completion", "approval_result", "supervision_result", "supervision_alert"]
    # the inspection naming a licence not seen yet waits for it, though its holder has another one
    unresolved = await gateway(site, "exchange", "links", "--unresolved")
    assert "烟市监罚〔2026〕8号" in unresolved.output and "licence JY-ELSEWHERE is not known yet" in unresolved.output
    missing = await gateway(site, "exchange", "licence", "JY-NONE")
    assert missing.exit_code == 1 and "no licence 'JY-NONE' is known" in missing.output
    health = await gateway(site, "exchange", "health", "--json")
    names = {h["counterpart"]: h for h in json.loads(health.output)}
    assert set(names) == {"county", "hall_platform", "market_ministry"}
    assert names["county"]["sources"] == ["county_results"] and names["county"]["sinks"] == ["county_out"]


async def test_gateway_reconcile_says_when_the_counterpart_cannot_be_asked(site: Gateway):
    result = await gateway(site, "reconcile", "county", "--date", "2026-11-29")
    assert result.exit_code == 3, result.output
    assert "county_out: reconciliation is not configured (reconcile.manifests)" in result.output
    kept = await gateway(site, "exchange", "reconciliations", "--json")
    (row,) = [json.loads(line) for line in kept.output.splitlines()]
    assert row["outcome"] == "unavailable" and row["triggered_by"].startswith("cli:os:")
    unknown = await gateway(site, "reconcile", "nobody")
    assert unknown.exit_code == 2 and "no counterpart 'nobody'" in unknown.output
    bad = await gateway(site, "reconcile", "county", "--from", "2026-11-29T00:00")
    assert bad.exit_code == 2 and "--from and --to together" in bad.output
