"""One duration syntax and one name per concept, core and adapters; what worked before still loads, with a warning.

`gateway check` also finds what would bite only at run time: a missing drop folder, two
sources sharing one watermark, a WSDL whose imported schema is missing, a mapping copied
without its code tables.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from gateway.cli import main
from gateway.config import ConfigError, config_from_dict, parse_duration
from gateway.durations import suggest
from gateway_adapters.filedrop import FiledropConfig
from gateway_adapters.rest import RestSourceConfig
from gateway_adapters.soap import SoapSourceConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("7d", 604800.0), ("250ms", 0.25), ("1.5m", 90.0), (" 10 s ", 10.0),
])
def test_durations_are_a_number_with_a_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", [True, -1, math.inf, math.nan, "5 minutes", "-5s", "", "1e3s"])
def test_what_is_not_a_duration_is_refused_with_the_syntax_to_use(bad: object) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(bad)


@pytest.mark.parametrize(("seconds", "text"), [(60, "1m"), (0.05, "50ms"), (90, "90s"), (86400, "1d"), (1.5, "1.5s")])
def test_the_suggested_spelling_of_a_bare_number_is_exact(seconds: float, text: str) -> None:
    assert suggest(seconds) == text and parse_duration(text) == pytest.approx(seconds)


def test_every_adapter_takes_its_poll_interval_under_one_name_and_in_the_duration_syntax(tmp_path: Path) -> None:
    ctx = {"base_dir": tmp_path}
    assert FiledropConfig.model_validate({"path": "drop", "poll_interval": "2s", "stable_for": "500ms"},
                                         context=ctx).poll_interval == 2.0
    rest = RestSourceConfig.model_validate({"url": "https://x.example/feed", "poll_interval": "5m",
                                            "timeouts": {"read": "10s"}, "retry": {"initial": "1s"}})
    assert (rest.poll_interval, rest.timeouts.read, rest.retry.initial) == (300.0, 10.0, 1.0)
    soap = SoapSourceConfig.model_validate({"wsdl": "builtin:provincial-exchange.wsdl", "timeouts": {"total": "1m"},
                                            "pull": {"operation": "service", "items_path": "a", "poll_interval": "1h"}})
    assert (soap.pull.poll_interval, soap.timeouts.total) == (3600.0, 60.0)


def test_old_adapter_key_names_and_bare_seconds_still_load_as_before(tmp_path: Path) -> None:
    ctx = {"base_dir": tmp_path}
    drop = FiledropConfig.model_validate({"path": "drop", "poll_interval": 2, "stability_seconds": 0.5}, context=ctx)
    assert (drop.poll_interval, drop.stable_for) == (2.0, 0.5)
    rest = RestSourceConfig.model_validate({"url": "https://x.example/feed", "interval": 30,
                                            "timeouts": {"sock_read": 7}})
    assert (rest.poll_interval, rest.timeouts.read) == (30.0, 7.0)
    soap = SoapSourceConfig.model_validate({
        "wsdl": "builtin:provincial-exchange.wsdl", "wsse": {"timestamp_ttl_seconds": 120},
        "pull": {"operation": "service", "items_path": "a", "interval_seconds": 45}})
    assert (soap.pull.poll_interval, soap.wsse.timestamp_ttl) == (45.0, 120.0)
    core = config_from_dict({"delivery": {"lease_seconds": 30}, "audit": {"seal_every_seconds": "2m"}},
                            base_dir=tmp_path)
    assert (core.delivery.lease_seconds, core.audit.seal_every_seconds) == (30.0, 120.0)


def test_the_back_fill_threshold_takes_the_same_syntax_and_its_iso_form_still_works_with_a_warning() -> None:
    from datetime import timedelta

    from gateway.durations import deprecated_settings
    from gateway.supervision import SupervisionConfig

    assert SupervisionConfig.model_validate({"backfill_threshold": "36h"}).backfill_threshold == timedelta(hours=36)
    assert SupervisionConfig.model_validate({"backfill_threshold": "P3D"}).backfill_threshold == timedelta(days=3)
    assert deprecated_settings(SupervisionConfig, {"backfill_threshold": "P3D"}, "supervision.rules") == [
        "supervision.rules.backfill_threshold = 'P3D': ISO 8601 durations are deprecated; write \"3d\""]


def test_a_setting_under_both_its_new_and_its_old_name_is_refused_naming_both(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="'poll_interval' and its deprecated name 'interval' are both set"):
        RestSourceConfig.model_validate({"url": "https://x.example/feed", "poll_interval": "1m", "interval": 60})
    with pytest.raises(ConfigError, match="'lease' and its deprecated name 'lease_seconds'"):
        config_from_dict({"delivery": {"lease": "1m", "lease_seconds": 60}}, base_dir=tmp_path)


def test_a_bad_duration_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"delivery": {"backoff_max": "five minutes"}}, base_dir=tmp_path)
    assert "delivery.backoff_max" in str(caught.value) and "not a duration" in str(caught.value)


# --------------------------------------------------------------------------- gateway check


def _gateway_dir(root: Path, sources: str) -> Path:
    shutil.copytree(REPO / "mappings", root / "mappings")
    config = root / "gateway.toml"
    config.write_text('[gateway]\nstore = "sqlite:///gateway.db"\n[api]\nenabled = false\n'
                      '[supervision]\nenabled = false\n' + sources, encoding="utf-8")
    return config


def _check(config: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", "-c", str(config)])
    return result.exit_code, result.output


def test_check_warns_about_each_deprecated_setting_and_says_what_to_write(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    config = _gateway_dir(tmp_path, """
[delivery]
lease_seconds = 30
poll_interval = "1s"
[sources.county]
adapter = "filedrop"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
path = "drop"
poll_interval = 2
stability_seconds = 0.5
[sources.market]
adapter = "rest"
mapping = "mappings/hall_platform.in.yaml"
url = "https://market.example/feed"
interval = 60
timeouts = { sock_read = "10s" }
""")
    code, out = _check(config)
    assert code == 0, out
    assert "OK (8 warning(s))" in out
    assert "delivery.lease_seconds: the name 'lease_seconds' is deprecated; call it 'lease'" in out
    assert 'delivery.lease_seconds = 30: a bare number of seconds is deprecated; write "30s"' in out
    assert 'sources.county.poll_interval = 2: a bare number of seconds is deprecated; write "2s"' in out
    assert "sources.county.stability_seconds: the name 'stability_seconds' is deprecated; call it 'stable_for'" in out
    assert "sources.market.interval: the name 'interval' is deprecated; call it 'poll_interval'" in out
    assert "sources.market.timeouts.sock_read: the name 'sock_read' is deprecated; call it 'read'" in out
    assert "delivery.poll_interval" not in out  # "1s" is today's form


def test_check_finds_a_missing_drop_folder(tmp_path: Path) -> None:
    config = _gateway_dir(tmp_path, """
[sources.county]
adapter = "filedrop"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
path = "drop/not-mounted"
""")
    code, out = _check(config)
    assert code == 2
    assert f"sources.county.path: folder {tmp_path / 'drop/not-mounted'} does not exist" in out


def test_check_finds_two_sources_reading_one_drop_folder(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    config = _gateway_dir(tmp_path, """
[sources.county]
adapter = "filedrop"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
path = "drop"
[sources.county_again]
adapter = "filedrop"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
path = "./drop"
""")
    code, out = _check(config)
    assert code == 2 and "sources.county.path and sources.county_again.path are the same folder" in out


def test_two_pull_sources_with_one_cursor_name_are_refused_by_check_and_run(tmp_path: Path) -> None:
    config = _gateway_dir(tmp_path, """
[sources.market_a]
adapter = "rest"
mapping = "mappings/hall_platform.in.yaml"
url = "https://a.example/feed"
cursor = { name = "market-feed" }
[sources.market_b]
adapter = "rest"
mapping = "mappings/hall_platform.in.yaml"
url = "https://b.example/feed"
cursor = { name = "market-feed" }
""")
    code, out = _check(config)
    assert code == 2
    assert "sources market_a, market_b: all store their watermark as cursor 'market-feed'" in out
    result = CliRunner().invoke(main, ["run", "-c", str(config)])
    assert result.exit_code == 2 and "cursor 'market-feed'" in result.output


def test_two_soap_pull_sources_of_one_operation_get_distinct_default_cursors(tmp_path: Path) -> None:
    pull = 'pull = { operation = "service", items_path = "RESULT.DATA.RECORDS.RECORD" }'
    config = _gateway_dir(tmp_path, f"""
[sources.province_a]
adapter = "soap"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
wsdl = "builtin:provincial-exchange.wsdl"
{pull}
[sources.province_b]
adapter = "soap"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
wsdl = "builtin:provincial-exchange.wsdl"
{pull}
""")
    code, out = _check(config)
    assert code == 0, out
    from gateway.app import build
    from gateway.config import load_config

    comp = build(load_config(config))
    names = {name: cfg.facts(name).cursors for name, cfg in comp.source_configs.items()}
    assert names == {"province_a": ("soap:province_a:service",), "province_b": ("soap:province_b:service",)}


def test_check_finds_a_schema_the_wsdl_imports_but_that_was_not_copied(tmp_path: Path) -> None:
    wsdl_dir = tmp_path / "wsdl"
    wsdl_dir.mkdir()
    text = (REPO / "adapters/soap/wsdl/provincial-exchange.wsdl").read_text(encoding="utf-8")
    # The same service description, with its types moved to a schema file that is not there.
    text = text.replace("<wsdl:types>", '<wsdl:types><xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
                        '<xsd:import namespace="urn:x" schemaLocation="types/exchange.xsd"/></xsd:schema>', 1)
    (wsdl_dir / "exchange.wsdl").write_text(text, encoding="utf-8")
    config = _gateway_dir(tmp_path, """
[sources.province]
adapter = "soap"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
wsdl = "wsdl/exchange.wsdl"
pull = { operation = "service", items_path = "RESULT.DATA.RECORDS.RECORD" }
""")
    code, out = _check(config)
    assert code == 2
    assert "sources.province.wsdl: exchange.wsdl imports 'types/exchange.xsd'" in out
    assert "copy the WSDL together with every file it imports" in out


def test_check_finds_a_mapping_copied_without_its_code_tables(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    config = _gateway_dir(tmp_path, """
[sources.county]
adapter = "filedrop"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
path = "drop"
""")
    shutil.rmtree(tmp_path / "mappings" / "codetables")
    code, out = _check(config)
    assert code == 2
    assert "sources.county.mapping:" in out and "provincial." in out
