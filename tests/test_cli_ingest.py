"""`gateway ingest`: a progress bar on a terminal, plain lines elsewhere, and never a traceback."""

from __future__ import annotations

import fcntl
import json
import os
import struct
import subprocess
import sys
import termios
from pathlib import Path

from click.testing import CliRunner
from e2e_site import Site
from test_api_support import case_item

from gateway.cli import main


def _site_with_file(tmp_path: Path, cases: int = 30, **options: object) -> tuple[Site, Path]:
    site = Site(tmp_path, "http://127.0.0.1:9/api/records", **options)
    (path,) = site.drop_cases(cases, bad_every=10)
    target = tmp_path / "batch.xml"
    path.rename(target)
    return site, target


def _ingest(site: Site, target: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["ingest", "-c", str(site.config_path), "--system", "county_drop",
                                       *extra, str(target)])
    return result.exit_code, result.output


def test_without_a_terminal_progress_is_plain_lines_with_share_rate_and_time_left(tmp_path: Path) -> None:
    site, target = _site_with_file(tmp_path, 30, batch_size=10)
    code, out = _ingest(site, target, "--batch", "10", "--progress-every", "0")
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith("batch.xml: ")]
    assert len(lines) == 4  # one per batch of 10, and the closing line
    assert "% of " in lines[0] and "items/s" in lines[0] and "left" in lines[0] and "quarantined" in lines[0]
    assert lines[-1].startswith("batch.xml: 100.0% of ") and "30 items" in lines[-1] and "done in" in lines[-1]
    assert "\r" not in out and "█" not in out
    assert json.loads(out.splitlines()[-1])["accepted"] == 27


def test_on_a_terminal_progress_is_a_bar_in_bytes_with_rate_and_time_left(tmp_path: Path) -> None:
    site, target = _site_with_file(tmp_path, 200)
    main_fd, child_fd = os.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "ingest", "-c", str(site.config_path), "--system",
                             "county_drop", "--batch", "50", str(target)], stdin=child_fd, stdout=child_fd,
                            stderr=child_fd, cwd=tmp_path)
    os.close(child_fd)
    output = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(main_fd)
    assert proc.wait(30) == 0
    text = output.decode("utf-8", "replace")
    frames = [f for f in text.split("\r") if f.startswith("batch.xml:")]
    assert frames and "100%|" in frames[-1] and "B/s" in frames[-1] and "items=200" in frames[-1]
    assert any("<" in f and "?" not in f.split("<", 1)[1][:8] for f in frames)  # elapsed<left, once known


def test_a_store_that_cannot_be_opened_is_a_message_and_exit_3_not_a_traceback(tmp_path: Path) -> None:
    site, target = _site_with_file(tmp_path)
    (tmp_path / "gateway.db").mkdir()  # a folder where the database file should be
    code, out = _ingest(site, target)
    assert code == 3
    assert "the store failed" in out and "OperationalError" in out and "Traceback" not in out


def test_a_configuration_error_is_exit_2_not_a_traceback(tmp_path: Path) -> None:
    site, target = _site_with_file(tmp_path)
    (tmp_path / "mappings" / "provincial_approvedatainfo.in.yaml").unlink()
    code, out = _ingest(site, target)
    assert code == 2 and "configuration error" in out and "Traceback" not in out


def test_an_item_nested_past_any_parser_is_quarantined_alone_and_the_good_ones_land(tmp_path: Path) -> None:
    site, _ = _site_with_file(tmp_path)
    text = site.config_path.read_text(encoding="utf-8").replace(
        'mapping = "mappings/shuanggongshi_xk.in.yaml"', 'mapping = "mappings/hall_platform.in.yaml"')
    site.config_path.write_text(text, encoding="utf-8")
    lines = [json.dumps(case_item("CLI-0001"), ensure_ascii=False), '{"caseNo": ' + "[" * 100_000 + "]" * 100_000 + "}"]
    target = tmp_path / "feed.jsonl"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["ingest", "-c", str(site.config_path), "--system", "licences",
                                       "--batch", "1", str(target)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.splitlines()[-1])
    assert (summary["accepted"], summary["quarantined"]) == (1, 1)
    assert "Traceback" not in result.output
    assert site.scalar("SELECT count(*) FROM records WHERE record_key = 'CLI-0001'") == 1
    (errors,) = [json.loads(r[0]) for r in site.query("SELECT errors FROM quarantine")]
    assert errors[0]["rule"] == "json_depth" and "line 2" in site.scalar("SELECT ref FROM quarantine")
