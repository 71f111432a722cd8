"""The ``audit`` command group on its own: keygen, seal, verify, export, archive against a store URL."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_audit import fill_to

from gateway.audit.commands import audit
from gateway.store.sqlite import SqliteStore


@pytest.fixture
def gateway_dir(tmp_path: Path) -> Path:
    async def make() -> None:
        s = SqliteStore(tmp_path / "gateway.db")
        await s.open()
        await fill_to(s, 400, cases=5)
        await s.close()

    asyncio.run(make())
    return tmp_path


def run(*args: str, obj: dict | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(audit, list(args), obj=obj, catch_exceptions=False)


def test_keygen_seal_verify_export_archive_from_the_command_line(gateway_dir: Path) -> None:
    url = f"sqlite:///{gateway_dir / 'gateway.db'}"
    certs = str(gateway_dir / "certs")
    r = run("keygen", "--certs", certs, "--org", "某县行政审批服务局")
    assert r.exit_code == 0 and "SHA-256 fingerprint" in r.output
    assert run("keygen", "--certs", certs).exit_code != 0  # never replaces a key silently

    r = run("seal", "--store", url, "--certs", certs)
    assert r.exit_code == 0, r.output
    assert "seal 1: entries 1..400" in r.output and "all seals signed" in r.output

    r = run("verify", "--store", url, "--certs", certs)
    assert r.exit_code == 0, r.output
    assert "RESULT: OK" in r.output and f"seal certificates in {certs}" in r.output

    r = run("verify", "--store", url, "--certs", certs, "--json")
    report = json.loads(r.output)
    # 400 entries, and the chain's record of seal 1 made and signed
    assert report["ok"] and report["entries_checked"] == 402 and report["seals_signed"] == 1

    out = gateway_dir / "C2.json"
    r = run("export", "--case", "C2", "-o", str(out), "--store", url)
    assert r.exit_code == 0, r.output
    conn = sqlite3.connect(gateway_dir / "gateway.db")
    n = conn.execute("SELECT count(*) FROM audit WHERE json_extract(CAST(body AS TEXT), '$.case') = 'C2'").fetchone()[0]
    conn.close()
    assert n > 50 and f"{n} entries ({n} under signed seals" in r.output and out.exists()
    assert run("export", "--case", "nope", "-o", str(gateway_dir / "x.json"), "--store", url).exit_code == 1

    r = run("archive", "--before-days", "0", "--out", str(gateway_dir / "archives"), "--store", url, "--certs", certs)
    assert r.exit_code == 0, r.output
    assert "archived entries 1..400" in r.output

    r = run("verify", "--store", url, "--certs", certs, "--archives", str(gateway_dir / "archives"))
    assert r.exit_code == 0 and "archives: 1 checked" in r.output, r.output


def test_verify_exits_non_zero_and_names_the_broken_entry(gateway_dir: Path) -> None:
    url = f"sqlite:///{gateway_dir / 'gateway.db'}"
    conn = sqlite3.connect(gateway_dir / "gateway.db")
    conn.execute("DELETE FROM audit WHERE seq = 120")
    conn.commit()
    conn.close()
    r = run("verify", "--store", url, "--certs", str(gateway_dir / "no-certs"))
    assert r.exit_code == 1
    assert "RESULT: BROKEN - gap: entries 120..120 missing between 119 and 121" in r.output


def test_defaults_come_from_the_main_cli_context(gateway_dir: Path) -> None:
    obj = {"store_url": f"sqlite:///{gateway_dir / 'gateway.db'}", "certs_dir": str(gateway_dir / "certs")}
    assert run("keygen", obj=obj).exit_code == 0
    assert (gateway_dir / "certs" / "audit-seal.key").exists()
    assert run("seal", obj=obj).exit_code == 0
    r = run("verify", obj=obj)
    assert r.exit_code == 0 and "RESULT: OK" in r.output


def test_seal_without_a_key_and_verify_without_a_store_say_what_to_do(gateway_dir: Path) -> None:
    url = f"sqlite:///{gateway_dir / 'gateway.db'}"
    r = run("seal", "--store", url, "--certs", str(gateway_dir / "empty"))
    assert r.exit_code == 1 and "gateway audit keygen" in r.output
    r = run("verify", "--store", f"sqlite:///{gateway_dir / 'missing.db'}")
    assert r.exit_code == 1 and "does not exist" in r.output
    r = run("archive", "--store", url)
    assert r.exit_code == 2 and "--before-days" in r.output
