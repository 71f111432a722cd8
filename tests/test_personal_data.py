"""Personal data leaves the gateway masked: quarantine errors in the audit trail, the CLI, evidence bundles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
