"""`gateway demo`, the README's first command: records flow, the summary adds up, the directory is usable."""

from __future__ import annotations

import json
import subprocess
import sys


def gateway(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=240,
                          cwd=cwd)


def test_demo_runs_n_records_through_and_leaves_a_working_directory(tmp_path) -> None:
    demo = gateway("demo", "--records", "80", "--dir", str(tmp_path / "site"))
    assert demo.returncode == 0, demo.stdout + demo.stderr
    summary = dict(line.strip().rsplit(None, 1) for line in demo.stdout.split("summary", 1)[1].splitlines()[1:7]
                   if line.strip())
    received, quarantined = int(summary["records received"]), int(summary["quarantined"])
    assert received + quarantined == 80 and quarantined >= 1
    assert int(summary["delivered"]) == received + int(summary["supervision alerts"])
    assert int(summary["supervision alerts"]) >= 3  # the records reported weeks late
    config = str(tmp_path / "site" / "gateway.toml")
    status = json.loads(gateway("status", "-c", config, "--json").stdout)
    assert status["records"] == received and status["dead"] == 0 and status["pending"] == 0
    verify = gateway("audit", "verify", "-c", config)
    assert verify.returncode == 0 and "RESULT: OK" in verify.stdout, verify.stdout + verify.stderr
    assert gateway("check", "-c", config).returncode == 0
