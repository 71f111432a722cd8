"""Personal data leaves the gateway masked: quarantine errors in the audit trail, the CLI, evidence bundles."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from test_api_support import ID_NO, PHONE, PUSH_AUTH, case_item, write_gateway_dir

from gateway.app import Gateway
from gateway.config import load_config

PUSH = "/api/v1/inbound/hall_platform/case"
LONG_NAME = "张三" + "丰" * 60  # longer than 联系人姓名 allows (50)


def gateway_cmd(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=120,
                          input=stdin, env={**os.environ, **(env or {})}, cwd=cwd)


async def _site_with_quarantine(root: Path) -> Path:
    """A gateway directory whose store holds one good case and one quarantined (with personal data in its errors)."""
    config = write_gateway_dir(root)
    gw = Gateway(load_config(config))
    await gw.start()
    try:
        async with aiohttp.ClientSession() as http:
            items = [case_item("PD-0001", remark=f"申请人张三 身份证 {ID_NO} 电话 {PHONE}"),
                     case_item("PD-0002", contactName=LONG_NAME, remark=f"证件号 {ID_NO} " + "x" * 1001)]
            async with http.post(gw.api.url + PUSH, json=items, headers=PUSH_AUTH) as r:
                assert r.status == 400, await r.text()  # one stored, one quarantined
    finally:
        await gw.stop()
    return config


async def test_quarantine_errors_enter_the_audit_trail_with_their_values_masked(tmp_path) -> None:
    config = await _site_with_quarantine(tmp_path)
    gw = Gateway(load_config(config), run_sources=False, run_delivery=False)
    await gw.start()
    try:
        entries = [e.decoded() for e in await gw.store.audit_entries(limit=10_000)]
        (quarantined,) = [e for e in entries if e["action"] == "quarantined"]
        errors = {e["field"]: e for e in quarantined["detail"]["errors"]}
        assert errors["contact_name"]["rule"] == "max_length" and errors["contact_name"]["value"].startswith("张*")
        assert errors["remark"]["rule"] == "max_length" and "110105********002X" in errors["remark"]["value"]
        text = json.dumps(entries, ensure_ascii=False)
        assert ID_NO not in text and PHONE not in text and LONG_NAME not in text
        # the stored quarantine row keeps the original payload, for reprocessing once the mapping is fixed
        (row,) = await gw.store.list_quarantine()
        assert row["payload"]["contactName"] == LONG_NAME
    finally:
        await gw.stop()


# --------------------------------------------------------------------------- the CLI


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def cli(*args: str, env: dict[str, str] | None = None):
    """The command in this process (a real subprocess where that is the point: see gateway_cmd)."""
    from click.testing import CliRunner

    from gateway.cli import main

    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_cli_quarantine_and_delivery_listings_are_masked_in_json_too(tmp_path) -> None:
    config = asyncio.run(_site_with_quarantine(tmp_path))
    quarantine = gateway_cmd("deliveries", "quarantine", "--json", "-c", str(config))
    assert quarantine.returncode == 0, quarantine.stderr
    (row,) = _lines(quarantine.stdout)
    payload = row["payload"]
    assert payload["applicantIdNo"] == "110105********002X" and payload["contactPhone"] == "138****5678"
    assert payload["applicantName"] == "张*" and payload["contactName"].startswith("张*")
    assert "110105********002X" in json.dumps(row["errors"], ensure_ascii=False)
    table = cli("deliveries", "quarantine", "-c", str(config))
    listing = cli("deliveries", "list", "--json", "-c", str(config))
    assert table.exit_code == 0 and listing.exit_code == 0 and len(_lines(listing.output)) == 1
    for out in (quarantine.stdout, table.output, listing.output):
        assert ID_NO not in out and PHONE not in out and "张三" not in out


async def _tokens(config: Path) -> dict[str, str]:
    """An auditor's and an engineer's API token, made in the store (the commands are tested elsewhere)."""
    from gateway.security import credentials
    from gateway.store.sqlite import SqliteStore

    store = SqliteStore(config.parent / "gateway.db")
    await store.open()
    tokens = {}
    try:
        for user, role in (("shen.ji", "auditor"), ("gong.cheng", "engineer")):
            await store.add_user(user, role, None, None, None, "test")
            token_id, token = credentials.new_token()
            secret = credentials.parse_token(token).secret  # type: ignore[union-attr]
            await store.create_token(token_id, credentials.token_secret_hash(token_id, secret), user, "cli",
                                     time.time() + 3600, "test")
            tokens[user] = token
    finally:
        await store.close()
    return tokens


def test_cli_unmask_needs_a_reason_and_an_auditor_and_is_audited(tmp_path) -> None:
    config = asyncio.run(_site_with_quarantine(tmp_path))
    tokens = asyncio.run(_tokens(config))
    no_reason = cli("deliveries", "quarantine", "--json", "--unmask", "-c", str(config),
                    env={"GATEWAY_TOKEN": tokens["shen.ji"]})
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output and ID_NO not in no_reason.output
    engineer = cli("deliveries", "quarantine", "--json", "--unmask", "--reason", "fix the mapping",
                   "-c", str(config), env={"GATEWAY_TOKEN": tokens["gong.cheng"]})
    assert engineer.exit_code == 2 and "only an auditor" in engineer.output and ID_NO not in engineer.output

    auditor = gateway_cmd("deliveries", "quarantine", "--json", "--unmask", "--reason", "投诉核查 2026-17",
                          "-c", str(config), env={"GATEWAY_TOKEN": tokens["shen.ji"]})
    assert auditor.returncode == 0, auditor.stderr
    (row,) = _lines(auditor.stdout)
    assert row["payload"]["contactName"] == LONG_NAME

    with sqlite3.connect(config.parent / "gateway.db") as conn:
        bodies = [json.loads(b) for (b,) in conn.execute("SELECT body FROM audit ORDER BY seq")]
    (entry,) = [b["detail"] for b in bodies if b["action"] == "unmasked"]
    assert entry["user"] == "shen.ji" and entry["reason"] == "投诉核查 2026-17" and entry["via"] == "cli"
    assert entry["what"] == "quarantine" and entry["rows"] == 1 and entry["os_user"].startswith("os:")


# --------------------------------------------------------------------------- evidence bundles


def test_a_masked_evidence_bundle_still_verifies_offline_and_names_entries_holding_personal_data(tmp_path) -> None:
    from click.testing import CliRunner
    from test_audit_evidence import offline_verify

    from gateway.audit import Sealer, load_or_create_dev_signer
    from gateway.cli import main
    from gateway.security.bundles import mask_bundle
    from gateway.store.sqlite import SqliteStore

    config = write_gateway_dir(tmp_path / "site")

    async def history() -> int:
        store = SqliteStore(tmp_path / "site" / "gateway.db")
        await store.open()
        try:
            await store.audit_event("received", system="hall_platform", kind="case", record="C-PD-1", case="C-PD-1",
                                    detail={"version": 1})
            # an entry as an older gateway could write it, before masking at the source
            legacy = await store.audit_event("user_action", case="C-PD-1", detail={"note": f"查 {ID_NO}"})
            await store.audit_event("delivered", system="archive", kind="case", record="C-PD-1", case="C-PD-1",
                                    detail={"attempt": 1})
            await Sealer(store, load_or_create_dev_signer(tmp_path / "site" / "certs")).seal_now()
            return legacy
        finally:
            await store.close()

    legacy = asyncio.run(history())
    out = tmp_path / "bundle.json"
    result = CliRunner().invoke(main, ["audit", "export", "--case", "C-PD-1", "-o", str(out), "--mask",
                                       "-c", str(config)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"entries {legacy} carry personal data inside their hashed bodies" in result.output
    verified = offline_verify(tmp_path, "bundle.json", "--cert", str(tmp_path / "site" / "certs" / "audit-seal.crt"))
    assert verified.returncode == 0 and "VERDICT: VERIFIED" in verified.stdout, verified.stdout

    # what no hash covers is masked: an exporter's note that quoted a number, say
    bundle = json.loads(out.read_text(encoding="utf-8"))
    bundle["notes"] = [f"archive of 张三 {PHONE} not searched"]
    out.write_text(json.dumps(bundle, ensure_ascii=False), encoding="utf-8")
    done = mask_bundle(out)
    assert done.masked_parts == ["notes"] and done.carrying == [legacy]
    assert json.loads(out.read_text(encoding="utf-8"))["notes"] == ["archive of 张三 138****5678 not searched"]
    assert offline_verify(tmp_path, "bundle.json", "--cert",
                          str(tmp_path / "site" / "certs" / "audit-seal.crt")).returncode == 0
