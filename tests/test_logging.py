"""Log lines: JSON objects through structlog for every logger, readable on a terminal, masked, with correlation ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from test_api_support import ID_NO, PHONE, gw_fixture, write_gateway_dir  # noqa: F401

from gateway.app import Gateway
from gateway.config import ConfigError, config_from_dict, load_config
from gateway.observability import correlation
from gateway.observability.logs import configure_logging, resolve_format


@pytest.fixture
def log_lines(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[str]]]:
    """The gateway's log set-up writing to this test's stderr; the lines written so far."""
    root = logging.getLogger()
    level = root.level

    def lines() -> list[str]:
        return [line for line in capsys.readouterr().err.splitlines() if line.strip()]

    yield lines
    for handler in list(root.handlers):
        if getattr(handler, "_gateway_log", False):
            root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def _json(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def test_stdlib_calls_become_json_objects_with_their_extra_fields_as_keys(log_lines) -> None:
    assert configure_logging(fmt="json", level="INFO") == "json"
    logging.getLogger("adapters.example").info("file %s read", "县区-0001.xml", extra={"items": 3, "system": "county"})
    (line,) = _json(log_lines())
    assert list(line)[:4] == ["timestamp", "level", "logger", "event"]
    assert line["level"] == "info" and line["logger"] == "adapters.example"
    assert line["event"] == "file 县区-0001.xml read"  # Chinese stays readable
    assert line["items"] == 3 and line["system"] == "county"
    assert line["timestamp"][-6] in "+-" and line["timestamp"][-3] == ":"  # an ISO time with its UTC offset


def test_an_event_field_names_the_line_and_the_words_stay_as_its_message(log_lines) -> None:
    configure_logging(fmt="json", level="INFO")
    logging.getLogger("gateway.delivery").warning("delivery %d to %s is a dead letter", 7, "hall",
                                                  extra={"event": "delivery_dead_letter", "destination": "hall"})
    (line,) = _json(log_lines())
    assert list(line)[:5] == ["timestamp", "level", "logger", "event", "message"]
    assert line["event"] == "delivery_dead_letter" and line["message"] == "delivery 7 to hall is a dead letter"


def test_lines_carry_the_correlation_id_bound_to_the_task_unless_they_name_one(log_lines) -> None:
    configure_logging(fmt="json", level="INFO")
    log = logging.getLogger("gateway.test")
    log.info("outside")
    with correlation.scope("req-1"):
        log.info("inside")
        log.info("about another", extra={"correlation_id": "req-2"})
        structlog.get_logger("gateway.native").info("structlog native", n=1)
    outside, inside, other, native = _json(log_lines())
    assert "correlation_id" not in outside
    assert inside["correlation_id"] == "req-1"
    assert other["correlation_id"] == "req-2"
    assert native == {**native, "event": "structlog native", "correlation_id": "req-1", "n": 1,
                      "logger": "gateway.native", "level": "info"}


def test_id_and_mobile_numbers_never_reach_a_log_line_in_full(log_lines) -> None:
    configure_logging(fmt="json", level="INFO")
    logging.getLogger("gateway.test").warning("applicant %s called from %s", ID_NO, PHONE,
                                              extra={"detail": {"id_no": ID_NO, "phones": [PHONE]}})
    raw = "\n".join(log_lines())
    assert ID_NO not in raw and PHONE not in raw
    (line,) = _json(raw.splitlines())
    assert line["event"] == "applicant 110105********002X called from 138****5678"
    assert line["detail"] == {"id_no": "110105********002X", "phones": ["138****5678"]}


def test_an_exception_is_one_line_with_its_traceback_as_a_field(log_lines) -> None:
    configure_logging(fmt="json", level="INFO")
    try:
        raise ValueError("the counterpart sent nonsense")
    except ValueError:
        logging.getLogger("gateway.test").exception("could not map")
    (line,) = _json(log_lines())
    assert line["level"] == "error" and line["event"] == "could not map"
    assert "Traceback" in line["exception"] and "ValueError: the counterpart sent nonsense" in line["exception"]


def test_python_warnings_are_log_lines_too_when_captured(log_lines) -> None:
    import warnings

    configure_logging(fmt="json", level="INFO", capture_warnings=True)
    warnings.warn("an old setting", DeprecationWarning, stacklevel=1)
    (line,) = _json(log_lines())
    assert line["logger"] == "py.warnings" and "an old setting" in line["event"]


def test_the_console_format_is_readable_text(log_lines) -> None:
    assert configure_logging(fmt="console", level="INFO") == "console"
    with correlation.scope("req-9"):
        logging.getLogger("gateway.test").info("delivered", extra={"destination": "hall"})
    (line,) = log_lines()
    assert not line.startswith("{")
    assert "delivered" in line and "destination=hall" in line and "correlation_id=req-9" in line


def test_levels_are_set_per_logger_and_chatty_libraries_are_quiet(log_lines) -> None:
    configure_logging(fmt="json", level="WARNING", levels={"gateway.delivery": "DEBUG"})
    logging.getLogger("gateway.delivery").debug("one delivery")
    logging.getLogger("gateway.ingest").info("not shown")
    logging.getLogger("httpx").info("HTTP Request: POST …")
    assert [line["event"] for line in _json(log_lines())] == ["one delivery"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_console_on_a_terminal_and_json_on_a_pipe_or_in_a_container(monkeypatch) -> None:
    for name in ("container", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("os.path.exists", lambda path: False)  # no /.dockerenv, no /run/.containerenv
    assert resolve_format("auto", _Terminal()) == "console"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", _Terminal()) == "json"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert resolve_format("auto", _Terminal()) == "json"


def test_logging_settings_are_checked_when_the_configuration_loads(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"logging.level: unknown log level 'LOUD'"):
        config_from_dict({"logging": {"level": "LOUD"}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"logging.levels: gateway.delivery: unknown log level"):
        config_from_dict({"logging": {"levels": {"gateway.delivery": "chatty"}}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"logging.format"):
        config_from_dict({"logging": {"format": "xml"}}, base_dir=tmp_path)
    config = config_from_dict({"logging": {"format": "json", "level": "debug"}}, base_dir=tmp_path)
    assert (config.logging.format, config.logging.level) == ("json", "DEBUG")


# --------------------------------------------------------------------------- the start-up line


async def test_the_start_up_line_says_where_the_api_listens(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.api")
    gw = Gateway(load_config(write_gateway_dir(tmp_path)))
    await gw.start()
    try:
        (line,) = [r for r in caplog.records if r.getMessage().startswith("API listening on")]
        assert line.getMessage().startswith(f"API listening on {gw.api.url} (plain HTTP)")
        assert "[api] port = 0 picked a free port" in line.getMessage()
        assert line.url == gw.api.url and line.api == "enabled"  # type: ignore[attr-defined]
        assert "/readyz" in line.endpoints  # type: ignore[attr-defined]
    finally:
        await gw.stop()


async def test_the_start_up_line_says_when_the_api_is_disabled_and_why(tmp_path: Path, caplog) -> None:
    config = write_gateway_dir(tmp_path)
    config.write_text(config.read_text(encoding="utf-8").replace("[api]\n", "[api]\nenabled = false\n"),
                      encoding="utf-8")
    gw = Gateway(load_config(config))
    await gw.start()
    try:
        (line,) = [r for r in caplog.records if r.name == "gateway.api" and "disabled" in r.getMessage()]
        assert line.levelno == logging.WARNING
        assert line.getMessage().startswith("the HTTP API is disabled: [api] enabled = false in the configuration")
        assert "/metrics" in line.getMessage() and gw.api is None
    finally:
        await gw.stop()


# --------------------------------------------------------------------------- the command line


def test_gateway_run_says_why_it_cannot_start_as_a_log_line_in_the_chosen_format(tmp_path: Path, log_lines,
                                                                                 monkeypatch) -> None:
    from click.testing import CliRunner

    from gateway.cli import main

    missing = tmp_path / "nowhere.toml"
    monkeypatch.setenv("GATEWAY_LOG_FORMAT", "json")
    result = CliRunner().invoke(main, ["run", "-c", str(missing)])
    assert result.exit_code == 2
    (line,) = [json.loads(x) for x in result.stderr.splitlines() if x.startswith("{")]
    assert line["level"] == "critical" and line["event"].startswith(f"configuration error in {missing}")
    result = CliRunner().invoke(main, ["--log-format", "console", "run", "-c", str(missing)])  # the option wins
    assert result.exit_code == 2
    assert "configuration error in" in result.stderr and not result.stderr.lstrip().startswith("{")
