"""`gateway deliveries list` shows the newest first with the total; `replay IDS` refuses ids it cannot replay."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import CliRunner
from e2e_site import Site

from gateway.cli import main


def _site_with_deliveries(tmp_path: Path, cases: int = 12) -> Site:
    site = Site(tmp_path, "http://127.0.0.1:9/api/records")
    (path,) = site.drop_cases(cases)
    target = tmp_path / "batch.xml"
    path.rename(target)
    result = CliRunner().invoke(main, ["ingest", "-c", str(site.config_path), "--system", "county_drop", str(target)])
    assert result.exit_code == 0, result.output
    return site


def _cli(site: Site, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "-c", str(site.config_path)])
    return result.exit_code, result.output


def test_list_shows_the_newest_first_and_how_many_there_are(tmp_path: Path) -> None:
    site = _site_with_deliveries(tmp_path)
    total = site.scalar("SELECT count(*) FROM outbox")
    code, out = _cli(site, "deliveries", "list", "--limit", "5")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"5 of {total} deliveries, newest first; older ones: --before {total - 4}"
    ids = [int(line.split()[0]) for line in lines[2:]]
    assert ids == list(range(total, total - 5, -1))
    code, out = _cli(site, "deliveries", "list", "--limit", "5", "--before", str(total - 4))
    assert [int(line.split()[0]) for line in out.splitlines()[2:]] == list(range(total - 5, total - 10, -1))
    code, out = _cli(site, "deliveries", "list", "--state", "dead")
    assert out.splitlines()[0] == "0 of 0 deliveries, newest first"


def test_replay_of_an_unknown_or_a_non_replayable_id_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    site = _site_with_deliveries(tmp_path)
    with sqlite3.connect(site.db) as conn:  # delivery 1 was refused by the counterpart: a dead letter
        conn.execute("UPDATE outbox SET state='dead', attempts=12, last_error='refused' WHERE id = 1")
    code, out = _cli(site, "deliveries", "replay", "1", "2", "999")
    assert code == 1
    assert "nothing replayed:" in out and "2: it is pending, not dead" in out and "999: no such delivery" in out
    assert site.scalar("SELECT state FROM outbox WHERE id = 1") == "dead"
    assert site.audit_count("replayed") == 0
    code, out = _cli(site, "deliveries", "replay", "1")
    assert code == 0 and "replayed 1 deliveries: 1" in out
    assert site.scalar("SELECT state FROM outbox WHERE id = 1") == "pending"
