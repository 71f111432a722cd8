"""The `gateway` command: check names every problem, ingest shows and resumes, configuration changes are audited."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner
from e2e_site import Site

from gateway.app import Gateway
from gateway.cli import main


def _site(tmp_path) -> Site:
    return Site(tmp_path, "http://127.0.0.1:9/api/records")


def test_check_passes_a_good_configuration_and_describes_it(tmp_path) -> None:
    site = _site(tmp_path)
    result = CliRunner().invoke(main, ["check", "-c", str(site.config_path)])
    assert result.exit_code == 0, result.output
    assert "source county_drop: adapter filedrop, mapping provincial_approvedatainfo@2" in result.output
    assert "route  everything-to-the-hall" in result.output


def test_check_lists_every_problem_and_exits_non_zero(tmp_path) -> None:
    site = _site(tmp_path)
    text = site.config_path.read_text(encoding="utf-8")
    text = text.replace('adapter = "rest"', 'adapter = "carrier_pigeon"')
    text = text.replace("mappings/shuanggongshi_xk.in.yaml", "mappings/missing.in.yaml")
    text += '\n[[routes]]\nname = "typo"\nkinds = ["casee"]\nto = ["hall_platform"]\n'
    site.config_path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["check", "-c", str(site.config_path)])
    assert result.exit_code == 2
    out = result.output
    assert "sinks.hall_platform: adapter 'carrier_pigeon' is not installed" in out
    assert "sources.licences.mapping:" in out and "missing.in.yaml" in out and "cannot read" in out
    assert "no output for kind(s) casee" not in out  # an unknown kind is said once
    assert "routes[1] (typo): unknown record kind 'casee'" in out


def test_check_names_a_route_to_a_sink_that_does_not_exist(tmp_path) -> None:
    site = _site(tmp_path)
    site.config_path.write_text(site.config_path.read_text(encoding="utf-8")
                                + '\n[[routes]]\nname = "lost"\nto = ["nowhere"]\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["check", "-c", str(site.config_path)])
    assert result.exit_code == 2
    assert "destination 'nowhere' is not a configured sink" in result.output


def test_ingest_reports_counts_and_a_second_run_resumes_past_the_end(tmp_path) -> None:
    site = _site(tmp_path)
    (path,) = site.drop_cases(30, bad_every=10)
    target = tmp_path / "batch.xml"
    path.rename(target)
    runner = CliRunner()
    first = runner.invoke(main, ["ingest", "-c", str(site.config_path), "--system", "county_drop", str(target)])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output.strip().splitlines()[-1])
    assert summary["items"] == 30 and summary["accepted"] == 27 and summary["quarantined"] == 3
    again = runner.invoke(main, ["ingest", "-c", str(site.config_path), "--system", "county_drop", str(target)])
    summary = json.loads(again.output.strip().splitlines()[-1])
    assert summary["resumed_after"] == 30 and "accepted" not in summary
    forced = runner.invoke(main, ["ingest", "-c", str(site.config_path), "--system", "county_drop", "--again",
                                  str(target)])
    summary = json.loads(forced.output.strip().splitlines()[-1])
    assert summary["duplicate"] == 27 and summary["quarantined"] == 3
    assert site.scalar("SELECT count(*) FROM records") == 27
    status = runner.invoke(main, ["status", "-c", str(site.config_path), "--json"])
    counts = json.loads(status.output)
    assert counts["records"] == 27 and counts["pending"] == 27 and counts["duplicates"] == 27


def test_a_configuration_change_is_audited_once_per_change(tmp_path) -> None:
    site = _site(tmp_path)

    async def start_and_stop() -> None:
        gw = Gateway(site.config(), run_sources=False, run_delivery=False)
        await gw.start()
        await gw.stop()

    asyncio.run(start_and_stop())
    asyncio.run(start_and_stop())
    assert site.audit_count("config_changed") == 1
    site.config_path.write_text(site.config_path.read_text(encoding="utf-8").replace(
        "concurrency = 8", "concurrency = 9"), encoding="utf-8")
    asyncio.run(start_and_stop())
    rows = site.audit_bodies("config_changed")
    assert len(rows) == 2 and rows[1]["detail"]["previous"] == rows[0]["detail"]["sha256"]
