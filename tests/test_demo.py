"""`gateway demo`, the README's first command: records flow, the summary adds up, the directory is usable."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys

from gateway.security.credentials import verify_password_sync


def gateway(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=240,
                          cwd=cwd)


def test_demo_runs_n_records_through_and_leaves_a_working_directory(tmp_path) -> None:
    demo = gateway("demo", "--records", "80", "--dir", str(tmp_path / "site"))
    assert demo.returncode == 0, demo.stdout + demo.stderr
    summary = demo.stdout.split("summary", 1)[1]

    def figure(label: str) -> int:
        return int(re.search(rf"^  {label}\s+([\d,]+)", summary, re.MULTILINE).group(1).replace(",", ""))

    def part(label: str) -> int:
        return int(re.search(rf"([\d,]+) {label}", summary).group(1).replace(",", ""))

    county = int(re.search(r"\(([\d,]+) from the county drop", summary).group(1))
    pushed = part("acceptances pushed by the hall over mutual TLS")
    received, quarantined = figure("records received"), figure("quarantined")
    assert county + quarantined == 80 and quarantined >= 1
    assert received == county + pushed + part("more records from the hall") + part(
        "from the supervising departments") + part("made by the gateway")
    assert pushed == county  # the hall accepted every case it was sent, and said so as itself
    assert figure("delivered") > county + figure("supervision alerts")  # and the two-way exchange's
    assert figure("supervision alerts") >= 5  # the records reported weeks late, and two licence notices
    # the second act: both directions with the market regulator (SOAP) and the county (files)
    assert "licences issued      6: approval results to the market regulator 6 (SOAP), to the county front-end " \
           "machine 1 (files)" in summary
    assert re.search(r"licence JY\d+ revoked, licence JY\d+ suspended, each tied to its case; 2 notices", summary)
    assert "both answered, the combined result is at the hall" in summary
    assert "hall_platform clean, market_ministry repaired, county clean (1 record the ministry had lost" in summary
    assert "0 failing its HMAC check" in summary  # everything the gateway sent was signed
    assert "pushes refused       1 (a push without the hall's certificate: HTTP 401" in summary
    config = str(tmp_path / "site" / "gateway.toml")
    status = json.loads(gateway("status", "-c", config, "--json").stdout)
    assert status["records"] == received and status["dead"] == 0 and status["pending"] == 0
    verify = gateway("audit", "verify", "-c", config)
    assert verify.returncode == 0 and "RESULT: OK" in verify.stdout, verify.stdout + verify.stderr
    check = gateway("check", "-c", config)
    assert check.returncode == 0 and "development CA" in check.stdout and "DEVELOPMENT seal key" in check.stdout
    fields = json.loads(gateway("encryption", "status", "-c", config, "--json").stdout)["fields"]
    assert set(fields) == {"demo-1"} and fields["demo-1"] >= 2 * county  # ID number and phone of every case
    # the demo's console login is printed, and it is a real account with that password
    line = next(line for line in demo.stdout.splitlines() if line.startswith("console login: https://127.0.0.1:"))
    password = line.rsplit("password ", 1)[1].strip()
    (user,) = map(json.loads, gateway("users", "list", "--json", "-c", config).stdout.splitlines())
    assert user["name"] == "demo" and user["role"] == "engineer" and user["console_login"] and user["last_login_at"] is None
    with sqlite3.connect(tmp_path / "site" / "gateway.db") as conn:
        (stored,) = conn.execute("SELECT password_hash FROM users WHERE name = 'demo'").fetchone()
    assert verify_password_sync(stored, password) and password not in (tmp_path / "site" / "gateway.toml").read_text()
