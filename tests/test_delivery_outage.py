"""Deliveries that ride out outages, end to end: a real gateway, real hall platforms on loopback switched off,
failing and back on; the circuit breaker, the drain on recovery, dead-letter alerts, and operators' controls.

Scale: these sites back off from 50 ms to 0.5 s where the shipped defaults go from 1 s to 5 min, so one
second here stands for ten minutes of a real outage at that backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from pathlib import Path

from click.testing import CliRunner
from e2e_site import Site, wait_until
from prometheus_client.parser import text_string_to_metric_families
from test_end_to_end import run_cli

from gateway.app import Gateway
from gateway.cli import main
from gateway.demo.counterparts import HallPlatform
from gateway.pipeline.delivery import DeliveryPolicy, _give_up_after

SCALE = 300.0 / 0.5  # shipped backoff_max / this site's


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SECOND_SINK = """
[sinks.supervisor]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{url}"
"""


def two_destination_site(root: Path, hall_url: str, supervisor_url: str, **options: object) -> Site:
    """County files go to the hall platform and to a supervising department's system; alerts to the latter."""
    return Site(root, hall_url, extra_sinks=SECOND_SINK.format(url=supervisor_url),
                route_to='["hall_platform", "supervisor"]', supervision_destinations='["supervisor"]', **options)


async def drop_second_versions(site: Site, first: Path) -> Path:
    """The same cases again as VERSION 2 (a re-report), which must reach each destination after version 1.

    The file source commits a file's records before it moves the file to ``done/``: wait for the move, since
    a test that saw the records stored can get here in between.
    """
    done = site.root / "drop/county/done"

    def moved() -> Path | None:
        return next((p for p in done.iterdir() if p.name.endswith(first.name)), None) if done.exists() else None

    original = (await wait_until(moved, what=f"{first.name} moved to done/")).read_bytes()
    target = site.root / "drop/county" / f"v2-{first.name}"
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(original.replace(b"<VERSION>1</VERSION>", b"<VERSION>2</VERSION>"))
    tmp.rename(target)
    return target


def metric(gw: Gateway, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(gw.delivery_metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def events(caplog, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


async def test_a_long_outage_makes_no_dead_letters_spares_other_destinations_and_drains_within_seconds(
        tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.delivery")
    port = _free_port()
    hall = HallPlatform(port=port)
    await hall.start()
    supervisor = HallPlatform()
    await supervisor.start()
    site = two_destination_site(tmp_path, f"http://127.0.0.1:{port}/api/records", supervisor.records_url)
    gw = Gateway(site.config())
    await gw.start()
    try:
        site.drop_cases(20)
        await wait_until(lambda: hall.unique == 20 and supervisor.unique == 20, what="the warm-up at both")

        # The hall platform goes away: connections refused.
        await hall.stop()
        down_at = time.monotonic()
        (first,) = site.drop_cases(100)
        await wait_until(lambda: site.scalar("SELECT count(*) FROM records") == 120, what="100 new cases stored")
        await drop_second_versions(site, first)
        # The other destination does not wait for the one that is down.
        await wait_until(lambda: supervisor.unique == 220, timeout=20, what="everything at the supervisor")
        supervisor_done = time.monotonic() - down_at
        await wait_until(lambda: gw.workers["hall_platform"].circuit.state in ("open", "half_open"),
                         what="the hall's circuit open")
        await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - down_at)))

        # It comes back answering 503 to everything: the gateway probes, it does not hammer.
        await hall.start()
        hall.fail_next(1_000_000, status=503)
        failing_from = hall.requests_total
        await asyncio.sleep(2.0)
        requests_while_failing = hall.requests_total - failing_from
        assert hall.unique == 20

        # It recovers.
        outage = time.monotonic() - down_at
        hall.recover()
        recovered_at = time.monotonic()
        await wait_until(lambda: hall.unique == 220, timeout=30, what="the backlog drained at the hall")
        drained_in = time.monotonic() - recovered_at
        await wait_until(lambda: site.scalar("SELECT count(*) FROM outbox WHERE state='delivered'") == 440,
                         what="every delivery settled")
    finally:
        await gw.stop()
        await hall.stop()
        await supervisor.stop()

    print(f"\n[outage] {outage:.1f} s down (~{outage * SCALE / 60:.0f} min at the shipped backoff); "
          f"the other destination had all 200 new records {supervisor_done:.2f} s after the outage began; "
          f"{requests_while_failing} requests reached the failing hall in 2 s; "
          f"backlog of 200 drained {drained_in:.2f} s after recovery")
    # The shipped 12-attempt cap would have given up within this outage.
    assert outage > _give_up_after(DeliveryPolicy(backoff_initial=0.05, backoff_max=0.5), 12)
    assert site.scalar("SELECT count(*) FROM outbox WHERE state='dead'") == 0
    assert drained_in < 5.0
    assert supervisor_done < 15.0
    assert requests_while_failing <= 12  # probes at a growing interval (≤ 0.5 s here), not the backlog
    # Per-case order held at the hall: each case's version 1 arrived before its version 2.
    versions: dict[str, list[int]] = {}
    for body in hall.records.values():
        versions.setdefault(body["caseNo"], []).append(int(body["version"]))
    assert len(versions) == 120 and all(v in ([1], [1, 2]) for v in versions.values())
    assert sum(len(v) == 2 for v in versions.values()) == 100
    # Circuit changes: audited, logged with their fields, counted.
    assert site.audit_count("circuit_opened") >= 1 and site.audit_count("circuit_closed") >= 1
    closed = site.audit_bodies("circuit_closed")[-1]["detail"]
    assert closed["destination"] == "hall_platform" and closed["probes"] >= 1
    opened = events(caplog, "circuit_open")
    assert opened and opened[0].destination == "hall_platform" and opened[0].failures >= 5
    assert events(caplog, "circuit_closed")
    assert events(caplog, "delivery_retry") and all(r.destination == "hall_platform"
                                                    for r in events(caplog, "delivery_retry"))
    assert metric(gw, "gateway_delivery_circuit_transitions_total", destination="hall_platform", to="open") >= 1
    assert metric(gw, "gateway_delivery_circuit_transitions_total", destination="hall_platform", to="closed") >= 1
    assert metric(gw, "gateway_delivery_circuit_state", destination="hall_platform") == 0
    assert metric(gw, "gateway_delivery_probes_total", destination="hall_platform", result="failure") >= 1
    assert metric(gw, "gateway_delivery_circuit_transitions_total", destination="supervisor", to="open") == 0
    assert metric(gw, "gateway_delivery_attempts_total", destination="hall_platform", outcome="delivered") == 220


async def test_a_permanent_error_dead_letters_at_once_and_raises_an_alert_to_the_supervisors(
        tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.delivery")
    async with HallPlatform() as hall, HallPlatform() as supervisor:
        site = two_destination_site(tmp_path, hall.records_url, supervisor.records_url)
        bad_case = "3706000000000003"
        hall.reject_when(lambda body: isinstance(body, dict) and body.get("caseNo") == bad_case,
                         reason="申请人证件号码 not accepted")
        gw = Gateway(site.config())
        await gw.start()
        try:
            (first,) = site.drop_cases(10)
            await wait_until(lambda: hall.unique == 9, what="the nine good records")
            await drop_second_versions(site, first)
            await wait_until(lambda: hall.unique == 18, what="the nine good second versions")
            alerts = lambda: [b for b in supervisor.records.values() if b.get("dataType") == "ALERT"]  # noqa: E731
            await wait_until(alerts, what="the dead-letter alert at the supervisor")
            # The hall has the records before their settlements commit: list once only the held one is open.
            await wait_until(lambda: site.scalar(
                "SELECT count(*) FROM outbox WHERE destination='hall_platform' AND state IN ('pending','inflight')"
            ) == 1, what="every sent delivery settled at the hall platform")
            rows = await _list_json(site)
        finally:
            await gw.stop()
    dead = site.query("SELECT id, attempts, last_error FROM outbox WHERE state='dead'")
    assert len(dead) == 1 and dead[0][1] == 1 and "400" in dead[0][2]
    (alert,) = alerts()
    assert alert["alertType"] == "delivery_dead_letter" and alert["caseNo"] == bad_case
    # The alert went to the supervision destination only, never back to the destination that refused.
    assert not [b for b in hall.records.values() if b.get("dataType") == "ALERT"]
    stored = site.query("SELECT body FROM records WHERE kind='supervision_alert'")
    assert len(stored) == 1 and f"gateway deliveries replay {dead[0][0]}" in json.loads(stored[0][0])["data"][
        "description"]
    (log_line,) = events(caplog, "delivery_dead_letter")
    assert (log_line.destination, log_line.case_no, log_line.reason) == ("hall_platform", bad_case, "permanent")
    assert metric(gw, "gateway_delivery_dead_letters_total", destination="hall_platform", reason="permanent") == 1
    # The deliberate per-case hold is visible: the case's version 2 waits behind its dead letter.
    hall_row = next(r for r in rows if r["name"] == "hall_platform")
    assert (hall_row["dead"], hall_row["held"], hall_row["held_cases"], hall_row["backlog"]) == (1, 1, 1, 1)
    assert hall_row["state"] == "running" and hall_row["last_error"] and hall_row["error_rate"] > 0


async def _list_json(site: Site) -> list[dict]:
    result = await asyncio.to_thread(CliRunner().invoke, main, ["destinations", "list", "--json", "-c",
                                                                str(site.config_path)])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


async def _cli(site: Site, *args: str) -> str:
    result = await asyncio.to_thread(CliRunner().invoke, main, ["destinations", *args, "-c", str(site.config_path)])
    assert result.exit_code == 0, result.output
    return result.output


async def test_operators_pause_resume_and_tune_a_destination_from_the_cli_while_it_runs(tmp_path) -> None:
    async with HallPlatform() as hall, HallPlatform() as supervisor:
        site = two_destination_site(tmp_path, hall.records_url, supervisor.records_url)
        gw = Gateway(site.config())
        await gw.start()
        try:
            # Paused from another process: the running gateway reads the store.
            out = await run_cli("destinations", "pause", "hall_platform", "--reason", "对方系统升级，联系人 13812345678",
                                "-c", str(site.config_path))
            assert "hall_platform paused" in out
            await wait_until(lambda: gw.workers["hall_platform"].controls.paused, timeout=5, what="the pause seen")
            site.drop_cases(20)
            await wait_until(lambda: supervisor.unique == 20, what="the other destination keeps going")
            await asyncio.sleep(0.5)
            assert hall.unique == 0
            (row,) = [r for r in await _list_json(site) if r["name"] == "hall_platform"]
            assert (row["state"], row["backlog"], row["paused_by"].startswith("os:")) == ("paused", 20, True)
            assert "13812345678" not in row["pause_reason"]
            assert "paused" in await _cli(site, "list", "hall_platform")
            out = await run_cli("destinations", "resume", "hall_platform", "-c", str(site.config_path))
            assert "hall_platform resumed" in out
            await wait_until(lambda: hall.unique == 20, timeout=10, what="the backlog after resuming")

            # Concurrency and rate at runtime: 20 sends a second, whatever the backlog.
            await _cli(site, "set", "hall_platform", "--concurrency", "2", "--rate", "20")
            worker = gw.workers["hall_platform"]
            await wait_until(lambda: (worker.concurrency, worker.rate) == (2, 20.0), timeout=5, what="new settings")
            before = len(hall.request_times)
            site.drop_cases(20)
            await wait_until(lambda: hall.unique == 40, timeout=20, what="20 more at the hall")
            times = list(hall.request_times)[before:]
            span = times[-1] - times[0]
            assert span >= (len(times) - 1) / 20 * 0.9, f"{len(times)} requests in {span:.2f} s"
            await _cli(site, "set", "hall_platform", "--rate", "off", "--concurrency", "default")
            await wait_until(lambda: (worker.concurrency, worker.rate) == (8, None), timeout=5, what="defaults")
            nothing = await _cli(site, "set", "hall_platform", "--rate", "off")
            assert "nothing changed" in nothing
        finally:
            await gw.stop()
    paused, resumed = site.audit_bodies("destination_paused"), site.audit_bodies("destination_resumed")
    assert len(paused) == 1 and len(resumed) == 1
    assert paused[0]["system"] == "hall_platform" and paused[0]["detail"]["actor"].startswith("os:")
    assert "13812345678" not in json.dumps(paused[0], ensure_ascii=False)
    settings = site.audit_bodies("destination_settings")
    assert [s["detail"]["after"] for s in settings] == [{"concurrency": 2, "rate": 20.0},
                                                        {"concurrency": None, "rate": 0.0}]
    assert site.scalar("SELECT count(*) FROM outbox WHERE state='dead'") == 0


def test_the_cli_refuses_unknown_destinations_and_bad_settings(tmp_path) -> None:
    site = Site(tmp_path, "http://127.0.0.1:9/api/records")
    unknown = CliRunner().invoke(main, ["destinations", "pause", "nowhere", "-c", str(site.config_path)])
    assert unknown.exit_code == 2 and "no destination 'nowhere': configured sinks are hall_platform" in unknown.output
    bad = CliRunner().invoke(main, ["destinations", "set", "hall_platform", "--concurrency", "0", "-c",
                                    str(site.config_path)])
    assert bad.exit_code == 2 and "concurrency must be a whole number from 1 to 256" in bad.output
    empty = CliRunner().invoke(main, ["destinations", "set", "hall_platform", "-c", str(site.config_path)])
    assert empty.exit_code == 2 and "nothing to change" in empty.output
    assert site.audit_count("destination_settings") == 0


HEALTH_SINK = """
[sinks.supervisor]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{url}"
health_url = "{url}"
timeouts = {{ connect = "1s", read = "500ms", total = "1s" }}
"""


async def test_with_a_health_url_the_circuit_probes_with_health_requests_not_deliveries(tmp_path) -> None:
    port = _free_port()
    supervisor = HallPlatform(port=port)  # GET on its records URL answers 200: the health request
    url = f"http://127.0.0.1:{port}/api/records"
    async with HallPlatform() as hall:
        site = Site(tmp_path, hall.records_url, extra_sinks=HEALTH_SINK.format(url=url),
                    route_to='["hall_platform", "supervisor"]')
        gw = Gateway(site.config())
        await gw.start()
        try:
            site.drop_cases(40)
            worker = gw.workers["supervisor"]
            await wait_until(lambda: worker.circuit.state != "closed", what="the supervisor's circuit open")
            await wait_until(lambda: site.scalar("SELECT count(*) FROM outbox WHERE destination='supervisor'"
                                                 " AND state='inflight'") == 0, what="the failed sends settled")
            attempts = lambda: site.scalar(  # noqa: E731
                "SELECT sum(attempts) FROM outbox WHERE destination='supervisor'")
            before, probes_before = attempts(), metric(gw, "gateway_delivery_probes_total", destination="supervisor",
                                                       result="failure")
            await asyncio.sleep(1.5)
            assert attempts() == before  # no delivery was spent on probing
            assert metric(gw, "gateway_delivery_probes_total", destination="supervisor",
                          result="failure") > probes_before
            assert hall.unique == 40
            await supervisor.start()
            started = time.monotonic()
            await wait_until(lambda: supervisor.unique == 40, timeout=10, what="the backlog at the supervisor")
            drained = time.monotonic() - started
        finally:
            await gw.stop()
            await supervisor.stop()
    assert drained < 3.0
    assert metric(gw, "gateway_delivery_probes_total", destination="supervisor", result="success") == 1
    assert site.scalar("SELECT count(*) FROM outbox WHERE state='dead'") == 0
