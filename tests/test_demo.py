"""`gateway demo`, the README's first command: records flow, the summary adds up, the directory is usable."""

from __future__ import annotations

import json
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gateway.cli import main
from gateway.security.credentials import verify_password_sync


def cli(*args: str) -> Result:
    """The other commands, in-process (the demo itself runs as a process: it handles signals)."""
    return CliRunner().invoke(main, list(args))


def gateway(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=240,
                          cwd=cwd)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One finite demo for the tests that read what it printed and left (it takes a while)."""
    root = tmp_path_factory.mktemp("demo")
    return root, gateway("demo", "--records", "80", "--dir", str(root / "site"))


def test_demo_runs_n_records_through_and_leaves_a_working_directory(demo_run) -> None:
    tmp_path, demo = demo_run
    assert demo.returncode == 0, demo.stdout + demo.stderr
    summary = demo.stdout.split("summary", 1)[1]

    def figure(label: str) -> int:
        return int(re.search(rf"^  {label}\s+([\d,]+)", summary, re.MULTILINE).group(1).replace(",", ""))

    def part(label: str) -> int:
        return int(re.search(rf"([\d,]+) {label}", summary).group(1).replace(",", ""))

    county = int(re.search(r"\(([\d,]+) from the county drop", summary).group(1))
    province = part("from the provincial platform's feed")
    pushed = part("acceptances pushed by the hall over mutual TLS")
    received, quarantined = figure("records received"), figure("quarantined")
    assert county + quarantined == 80 - 80 // 5 and quarantined >= 1  # one case in five comes from the province
    assert received == county + province + pushed + part("more records from the hall") + part(
        "from the supervising departments") + part("made by the gateway")
    assert pushed == county  # the hall accepted every case it was sent, and said so as itself
    # 16 ordinary provincial cases (application + acceptance, every third completed) and four on purpose
    assert province >= 16 * 2 + 4 * 2
    # counts per counterpart, both directions
    assert re.search(rf"^    county_drop\s+{county}\s+\+{quarantined} quarantined", summary, re.MULTILINE)
    assert re.search(rf"^    provincial_platform\s+{province}\s+provincial platform, REST pull", summary, re.MULTILINE)
    for destination in ("hall_platform", "market_ministry", "county_out"):
        assert re.search(rf"^    {destination}\s+delivered [\d,]+ ", summary, re.MULTILINE), destination
    # alerts nobody staged in the gateway: they follow from the data, the clock and the counterparts' behaviour
    alerts = dict(re.findall(r"^  ([a-z_]+)\s+(\d+)  \S", summary.split("by type", 1)[1].split("provincial", 1)[0],
                             re.MULTILINE))
    for alert_type in ("overdue_red", "near_deadline_yellow", "outside_system_no_acceptance", "backfill_late_entry",
                       "no_contact", "watchdog_cleared", "parallel_late", "licence_revoked", "licence_suspended"):
        assert int(alerts.get(alert_type, 0)) >= 1, (alert_type, alerts)
    assert int(alerts["overdue_red"]) == 1  # the case accepted before 国庆 and completed after it was on time
    assert "no_contact raised, cleared when it came back" in summary
    assert re.search(r"牟平区卫生健康局 answered late \(parallel_late\), the combined result is at the hall", summary)
    assert figure("delivered") > county + figure("supervision alerts")  # and the two-way exchange's
    assert figure("supervision alerts") >= 5  # the records reported weeks late, and two licence notices
    # the second act: both directions with the market regulator (SOAP) and the county (files)
    assert "licences issued      6: approval results to the market regulator 6 (SOAP), to the county front-end " \
           "machine 1 (files)" in summary
    assert re.search(r"licence JY\d+ revoked, licence JY\d+ suspended, each tied to its case; 2 notices", summary)
    assert "hall_platform clean, market_ministry repaired, county clean (1 record the ministry had lost" in summary
    assert "0 failing its HMAC check" in summary  # everything the gateway sent was signed
    assert "pushes refused       1 (a push without the hall's certificate: HTTP 401" in summary
    config = str(tmp_path / "site" / "gateway.toml")
    status = json.loads(cli("status", "-c", config, "--json").stdout)
    assert status["records"] == received and status["dead"] == 0 and status["pending"] == 0
    verify = cli("audit", "verify", "-c", config)
    assert verify.exit_code == 0 and "RESULT: OK" in verify.stdout, verify.stdout + verify.stderr
    check = cli("check", "-c", config)
    assert check.exit_code == 0 and "development CA" in check.stdout and "DEVELOPMENT seal key" in check.stdout
    fields = json.loads(cli("encryption", "status", "-c", config, "--json").stdout)["fields"]
    assert set(fields) == {"demo-1"} and fields["demo-1"] >= 2 * county  # ID number and phone of every case
    # the demo's console login is printed, and it is a real account with that password
    assert re.search(r"^console: https://127\.0\.0\.1:\d+/console/", demo.stdout, re.MULTILINE)
    line = next(line for line in demo.stdout.splitlines() if line.startswith("console login: https://127.0.0.1:"))
    password = line.rsplit("password ", 1)[1].strip()
    (user,) = map(json.loads, cli("users", "list", "--json", "-c", config).stdout.splitlines())
    assert user["name"] == "demo" and user["role"] == "engineer" and user["console_login"] and user["last_login_at"] is None
    with sqlite3.connect(tmp_path / "site" / "gateway.db") as conn:
        (stored,) = conn.execute("SELECT password_hash FROM users WHERE name = 'demo'").fetchone()
    assert verify_password_sync(stored, password) and password not in (tmp_path / "site" / "gateway.toml").read_text()


def test_demo_without_records_runs_until_interrupted_then_drains_and_says_what_was_left(tmp_path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "demo", "--dir", str(tmp_path / "site")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # until the stream flows: something delivered to the counterparts
            lines.append(line)
            if line.startswith("running until Ctrl-C"):
                assert any(x.startswith("console: https://127.0.0.1:") for x in lines)
            if re.match(r"received [\d,]+ .* delivered [1-9]", line):
                break
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    out = "".join(lines) + out
    assert proc.returncode == 0, out
    assert "stopping: intake stops; in-flight deliveries get up to" in out
    assert re.search(r"^left when it stopped: 0 deliveries pending \(none\), \d+ open in quarantine; "
                     r"`gateway run -c .*gateway.toml` carries on with them", out, re.MULTILINE), out
    assert "summary" in out and "gateway quarantine list -c " + str(tmp_path / "site" / "gateway.toml") in out
    status = json.loads(cli("status", "-c", str(tmp_path / "site" / "gateway.toml"), "--json").stdout)
    assert status["pending"] == 0 and status["inflight"] == 0


def test_demo_options_are_checked_before_anything_starts(tmp_path) -> None:
    runner = CliRunner()
    both = runner.invoke(main, ["demo", "--records", "5", "--duration", "1m", "--dir", str(tmp_path / "a")])
    assert both.exit_code == 2 and "give --records or --duration, not both" in both.output
    zero = runner.invoke(main, ["demo", "--duration", "0s", "--dir", str(tmp_path / "b")])
    assert zero.exit_code == 2 and "longer than zero" in zero.output
    nonsense = runner.invoke(main, ["demo", "--duration", "soon", "--dir", str(tmp_path / "c")])
    assert nonsense.exit_code == 2 and "not a duration" in nonsense.output
    assert not any((tmp_path / d).exists() for d in "abc")


def _block_after(doc: str, heading: str) -> list[str]:
    """The command lines of the first code block after ``heading`` in a guide, comments dropped."""
    text = (Path(__file__).resolve().parents[1] / "docs" / doc).read_text(encoding="utf-8")
    block = text.split(heading, 1)[1].split("```", 2)[1]
    return [shlex.split(line, comments=True) for line in block.splitlines()[1:] if line.startswith("gateway ")]


def test_the_guides_daily_checks_and_offline_evidence_work_on_the_demos_directory(demo_run, tmp_path) -> None:
    root, demo = demo_run
    assert demo.returncode == 0, demo.stdout + demo.stderr
    config = str(root / "site" / "gateway.toml")
    # 运维手册 §3: what the operator looks at every day
    daily = _block_after("zh/operator.md", "### 命令行")
    assert len(daily) == 6
    for args in daily:
        result = cli(*[config if a == "gateway.toml" else a for a in args[1:]])
        assert result.exit_code == 0, (args, result.output)
    # 监督手册 §3: a case's evidence, exported and checked offline with the standalone verifier
    (export, _masked) = _block_after("zh/supervisor.md", "### 第二步：导出证据包")
    case_no = export[export.index("--case") + 1]  # a county case of any demo with 17 or more cases
    bundle = tmp_path / "evidence.json"
    args = [config if a == "gateway.toml" else str(bundle) if a.startswith("evidence-") else a for a in export[1:]]
    assert cli("audit", "seal", "-c", config).exit_code == 0
    exported = cli(*args)
    assert exported.exit_code == 0 and bundle.exists(), exported.output
    import gateway.audit.offline_verify as verifier

    checked = subprocess.run([sys.executable, verifier.__file__, str(bundle), "--cert",
                              str(root / "site" / "certs" / "audit-seal.crt")], capture_output=True, text=True)
    assert checked.returncode == 0 and "VERIFIED" in checked.stdout, checked.stdout + checked.stderr
    assert case_no in bundle.read_text(encoding="utf-8")
