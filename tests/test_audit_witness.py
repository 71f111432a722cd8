"""The seal witness in a running gateway: signed seals reach the supervisors, and a tampered trail raises the alarm."""

from __future__ import annotations

import asyncio
import sqlite3

from click.testing import CliRunner
from e2e_site import Site, wait_until

from gateway.app import Gateway
from gateway.audit.commands import audit
from gateway.audit.witness import read_witness
from gateway.demo.counterparts import HallPlatform

AUDIT = """
[audit]
seal_every_entries = 20
seal_every = "0.2s"
witness_destinations = ["hall_platform"]
"""


def _seals_at(hall: HallPlatform) -> list[dict]:
    return sorted((b for b in hall.records.values() if b.get("dataType") == "AUDIT_SEAL"), key=lambda b: b["seal"])


async def test_signed_seals_reach_the_supervisors_and_the_witness_proves_the_store(tmp_path) -> None:
    async with HallPlatform() as hall:
        site = Site(tmp_path, hall.records_url)
        site.config_path.write_text(site.config_path.read_text() + AUDIT)
        gw = Gateway(site.config())
        await gw.start()
        try:
            site.drop_cases(60)
            await wait_until(lambda: len(_seals_at(hall)) >= 2, timeout=30, what="two seals at the supervisors")
        finally:
            await gw.stop()
    delivered = _seals_at(hall)
    lines, problems = read_witness(tmp_path / "audit-witness.jsonl")
    assert not problems and {w.seal for w in lines if w.event == "signed"} >= {s["seal"] for s in delivered}
    # what the supervisors hold is the statement and signature the store holds
    conn = sqlite3.connect(tmp_path / "gateway.db")
    stored = {r[0]: (bytes(r[1]).decode(), r[2]) for r in conn.execute(
        "SELECT seal, statement, statement_hash FROM audit_seals")}
    conn.close()
    for seal in delivered:
        assert stored[seal["seal"]] == (seal["statement"], seal["statementHash"])
    # `gateway audit verify -c` reads the configured witness by default
    r = CliRunner().invoke(audit, ["verify", "-c", str(site.config_path)])
    assert r.exit_code == 0 and "witness:" in r.output and "RESULT: OK" in r.output, r.output


async def test_a_tampered_trail_raises_the_alarm_and_exchange_goes_on(tmp_path) -> None:
    async with HallPlatform() as hall:
        site = Site(tmp_path, hall.records_url)
        site.config_path.write_text(site.config_path.read_text() + AUDIT)
        gw = Gateway(site.config())
        await gw.start()
        try:
            site.drop_cases(30)
            await wait_until(lambda: len(_seals_at(hall)) >= 1, timeout=30, what="a seal at the supervisors")
        finally:
            await gw.stop()
        # an intruder strips the newest signature while the gateway is down
        conn = sqlite3.connect(tmp_path / "gateway.db")
        last = conn.execute("SELECT max(seal) FROM audit_seals WHERE signature IS NOT NULL").fetchone()[0]
        conn.execute("UPDATE audit_seals SET signature=NULL, key_id=NULL, signature_algorithm=NULL WHERE seal=?",
                     (last,))
        conn.commit()
        conn.close()
        gw = Gateway(site.config())
        await gw.start()
        try:
            await wait_until(lambda: any(b.get("alertType") == "audit_integrity" for b in hall.records.values()),
                             timeout=30, what="the audit_integrity alert at the supervisors")
            assert gw.sealer.status().refused and "stripped" in gw.sealer.status().refused
            before = hall.unique
            site.drop_cases(5)  # exchange goes on
            await wait_until(lambda: hall.unique >= before + 5, timeout=30, what="records after the alarm")
        finally:
            await gw.stop()
    alert = next(b for b in hall.records.values() if b.get("alertType") == "audit_integrity")
    assert alert["level"] == "RED" and "stripped" in alert["description"]
    conn = sqlite3.connect(tmp_path / "gateway.db")
    assert conn.execute("SELECT signature FROM audit_seals WHERE seal=?", (last,)).fetchone()[0] is None
    conn.close()
    r = CliRunner().invoke(audit, ["verify", "-c", str(site.config_path)])
    assert r.exit_code == 1 and "stripped" in r.output, r.output
    r = await asyncio.to_thread(CliRunner().invoke, audit, ["seal", "-c", str(site.config_path)])
    assert r.exit_code == 1 and "stripped" in r.output, r.output
