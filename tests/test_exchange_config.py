"""[exchange] and the new route conditions: what a wrong configuration is told, naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from exchange_support import write_site

from gateway.app import build
from gateway.config import ConfigError, load_config


def _problems(tmp_path: Path, extra: str) -> str:
    config = load_config(write_site(tmp_path, extra))
    with pytest.raises(ConfigError) as caught:
        build(config)
    return "\n".join(caught.value.problems)


def _invalid(tmp_path: Path, extra: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write_site(tmp_path, extra))
    return "\n".join(caught.value.problems)


def test_route_codes_must_be_in_their_code_tables(tmp_path: Path):
    text = _problems(tmp_path, """
[[routes]]
name = "bad-codes"
kinds = ["approval_result"]
item_types = ["1", "01"]
license_categories = ["普通许可"]
to = ["market_ministry"]
""")
    assert "routes[3] (bad-codes).item_types: '1' not in code table item_type" in text
    assert "routes[3] (bad-codes).license_categories: '普通许可' not in code table license_category" in text


def test_parallel_departments_need_a_source_and_a_sink_that_renders_the_case(tmp_path: Path):
    text = _problems(tmp_path, """
[[exchange.parallel]]
name = "x"
items = ["XK"]
lead = "nobody"

[[exchange.parallel.departments]]
name = "卫健局"
system = "health_bureau"
sink = "hall_platform"
time_limit = 3
""")
    assert "exchange.parallel[0] (x).lead: 'nobody' is not a configured source" in text
    assert "exchange.parallel[0] (x).departments (卫健局).system: 'health_bureau' is not a configured source" in text


def test_a_department_sink_without_the_dispatched_kinds_is_refused(tmp_path: Path):
    # the county front-end mapping renders cases; a sink whose mapping does not render acceptances cannot take them
    text = _problems(tmp_path, """
[sinks.steps_only]
adapter = "filedrop"
mapping = "mappings/hall_platform.out.yaml"
path = "out/hall"

[[exchange.parallel]]
name = "x"
items = ["XK"]
dispatch_kinds = ["case", "evaluation"]

[[exchange.parallel.departments]]
name = "卫健局"
system = "county_results"
sink = "steps_only"
time_limit = 3
""")
    assert "sink 'steps_only' mapping" in text and "no output for kind(s) evaluation" in text


def test_counterparts_name_their_sources_and_sinks(tmp_path: Path):
    text = _problems(tmp_path, """
[exchange.counterparts.province]
sources = ["province_feed"]
sinks = ["province_out"]
reconcile = { via = "hall_platform" }
""")
    assert "exchange.counterparts.province.sources: 'province_feed' is not a configured source" in text
    assert "exchange.counterparts.province.sinks: 'province_out' is not a configured sink" in text
    assert "exchange.counterparts.province.reconcile.via: 'hall_platform' is not one of this counterpart's sinks" in text


def test_values_are_checked_where_they_are_read(tmp_path: Path):
    assert "not a time of day" in _invalid(tmp_path, """
[exchange.counterparts.market_ministry]
watch = { expect_by = "25:00" }
""")
    assert "exchange.versions.cases: not a record kind" in _invalid(tmp_path / "b", """
[exchange.versions.cases]
on_conflict = "keep_first"
""")
    assert "two departments answer through one system" in _invalid(tmp_path / "c", """
[[exchange.parallel]]
name = "x"
items = ["XK"]
departments = [{ name = "a", system = "market_ministry", time_limit = 1 },
               { name = "b", system = "market_ministry", time_limit = 1 }]
""")


def test_the_version_policy_reaches_every_kind_a_counterpart_sends(tmp_path: Path):
    config = load_config(write_site(tmp_path, """
[exchange.versions]
on_older = "quarantine"

[exchange.versions.approval_result]
on_conflict = "keep_first"
"""))
    table = config.exchange.versions.table()
    assert table["approval_result"] == ("keep_first", "quarantine")
    assert table["case"] == ("quarantine", "quarantine")
    assert "supervision_alert" not in table  # the gateway's own records keep the store's rule
