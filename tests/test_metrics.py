"""/metrics for Prometheus against a running gateway and a real hall platform; the shipped alert rules."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from e2e_site import wait_until
from prometheus_client.parser import text_string_to_metric_families
from test_api_support import PUSH_AUTH, PUSH_TOKEN, case_item, http_fixture  # noqa: F401

from gateway.app import Gateway
from gateway.config import load_config
from gateway.demo.counterparts import HallPlatform
from gateway.demo.scenario import MAPPINGS_DIR
from gateway.store.observability import scrape_figures

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "prometheus" / "gateway-alerts.yml"
PUSH = "/api/v1/inbound/hall_platform/case"

CONFIG = """\
[gateway]
name = "metrics-test"
store = "sqlite:///gateway.db"
adapters = ["push", "rest"]

[api]
port = 0

[metrics]
cache = "{cache}"

[delivery]
poll_interval = "50ms"
backoff_initial = "50ms"
backoff_max = "100ms"

[audit]
seal_every_seconds = "1h"

[sources.hall_platform]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
auth = {{ tokens = [{{ sha256 = "{token_sha256}" }}] }}

[sinks.hall]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{hall_url}"

[[routes]]
name = "pushes-to-the-hall"
sources = ["hall_platform"]
to = ["hall"]
"""


def _site(root: Path, hall_url: str, cache: str = "5s") -> Path:
    shutil.copytree(MAPPINGS_DIR, root / "mappings")
    config = root / "gateway.toml"
    config.write_text(CONFIG.format(token_sha256=hashlib.sha256(PUSH_TOKEN.encode()).hexdigest(), hall_url=hall_url,
                                    cache=cache), encoding="utf-8")
    return config


@pytest.fixture
async def hall() -> AsyncIterator[HallPlatform]:
    async with HallPlatform() as platform:
        yield platform


@pytest.fixture
async def gw(tmp_path: Path, hall: HallPlatform) -> AsyncIterator[Gateway]:
    gateway = Gateway(load_config(_site(tmp_path, hall.records_url, cache="0s")))
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


async def push(http: aiohttp.ClientSession, gw: Gateway, items: list[dict[str, Any]]) -> int:
    async with http.post(gw.api.url + PUSH, json=items, headers=PUSH_AUTH) as r:
        await r.read()
        return r.status


async def scrape(http: aiohttp.ClientSession, gw: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with http.get(gw.api.url + "/metrics") as r:
        assert r.status == 200
        text = await r.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def one(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def outbox(gw: Gateway, state: str) -> int:
    """Deliveries in ``state``, read from the store as an operator would beside the running gateway."""
    conn = sqlite3.connect(f"file:{gw.store.path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM outbox WHERE state = ?", (state,)).fetchone()[0]
    finally:
        conn.close()


async def scrape_until(http: aiohttp.ClientSession, gw: Gateway, name: str, **labels: str) -> dict:
    """Scrape until the sample ``name{labels}`` shows (what a settled delivery or a new alert brings)."""
    deadline = time.monotonic() + 10
    while True:
        samples = await scrape(http, gw)
        if (name, tuple(sorted(labels.items()))) in samples or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


async def test_records_are_counted_per_source_and_outcome_with_their_latency_and_last_contact(gw, hall, http) -> None:
    before = time.time()
    assert await push(http, gw, [case_item("M-2026-0001"), case_item("M-2026-0002", id_no="110105194912310021")]) == 400
    assert await push(http, gw, [case_item("M-2026-0001")]) == 200  # the same record again
    await wait_until(lambda: hall.unique == 1, what="the good record at the hall")
    await scrape_until(http, gw, "gateway_counterpart_last_delivered_timestamp_seconds", destination="hall")
    s = await scrape(http, gw)  # the store's figures of a scrape are read before the process's own
    assert one(s, "gateway_ingest_records_total", system="hall_platform", outcome="accepted") == 1
    assert one(s, "gateway_ingest_records_total", system="hall_platform", outcome="quarantined") == 1
    assert one(s, "gateway_ingest_records_total", system="hall_platform", outcome="duplicate") == 1
    assert one(s, "gateway_ingest_batch_seconds_count", system="hall_platform") == 2
    assert one(s, "gateway_quarantine_open", system="hall_platform") == 1
    assert before <= one(s, "gateway_counterpart_last_received_timestamp_seconds", system="hall_platform") <= time.time()
    assert before <= one(s, "gateway_counterpart_last_delivered_timestamp_seconds", destination="hall") <= time.time()
    assert one(s, "gateway_deliveries", destination="hall", state="pending") == 0
    assert one(s, "gateway_outbox_oldest_age_seconds", destination="hall") == 0
    assert one(s, "gateway_store_ingest_outcomes_total", status="stored") == 1
    assert one(s, "gateway_store_up") == 1 and one(s, "gateway_started") == 1
    # The supervision rules saw a case submitted weeks ago (case_item's submit time): alerts by type.
    await wait_until(lambda: gw.supervision.alerts_raised >= 1, what="a supervision alert")
    s = await scrape(http, gw)
    raised = {dict(labels)["type"]: v for (name, labels), v in s.items() if name == "gateway_alerts_raised_total"}
    assert raised.get("backfill_late_entry") == 1
    assert one(s, "gateway_store_alerts_total") >= 1


async def test_the_backlog_and_its_oldest_delivery_show_per_destination_while_the_counterpart_is_down(
        gw, hall, http) -> None:
    await hall.stop()  # connection refused: every attempt is retried
    assert await push(http, gw, [case_item("M-2026-0010"), case_item("M-2026-0011")]) == 202
    await asyncio.sleep(0.6)
    s = await scrape(http, gw)
    waiting = one(s, "gateway_deliveries", destination="hall", state="pending") + \
        one(s, "gateway_deliveries", destination="hall", state="inflight")
    assert waiting == 2
    assert 0.5 <= one(s, "gateway_outbox_oldest_age_seconds", destination="hall") < 30
    await hall.start()  # back on the same port
    await wait_until(lambda: hall.unique == 2, what="the backlog drained")
    await wait_until(lambda: outbox(gw, "delivered") == 2, what="its settlement committed")
    s = await scrape(http, gw)
    assert one(s, "gateway_outbox_oldest_age_seconds", destination="hall") == 0
    assert one(s, "gateway_deliveries", destination="hall", state="pending") == 0


async def test_a_refused_record_is_a_dead_letter_in_the_metrics(gw, hall, http) -> None:
    hall.reject_when(lambda body: body.get("caseNo") == "M-2026-0020", reason="no such item code")
    assert await push(http, gw, [case_item("M-2026-0020")]) == 202
    await wait_until(lambda: outbox(gw, "dead") == 1, what="the dead letter committed")
    s = await scrape(http, gw)
    assert one(s, "gateway_deliveries", destination="hall", state="dead") == 1
    assert one(s, "gateway_outbox_oldest_age_seconds", destination="hall") == 0  # a dead letter no longer waits


async def test_seal_lag_counts_entries_under_no_signed_seal_until_a_seal_is_signed(gw, http) -> None:
    assert await push(http, gw, [case_item("M-2026-0030")]) == 202
    await asyncio.sleep(0.2)
    s = await scrape(http, gw)
    head = one(s, "gateway_audit_entries_total")
    assert one(s, "gateway_audit_unsigned_entries") == head > 0
    assert one(s, "gateway_audit_seal_lag_seconds") > 0
    assert one(s, "gateway_audit_last_signed_seal") == 0
    assert one(s, "gateway_audit_sealer_refusing") == 0 and one(s, "gateway_audit_signer_up") == 1
    await gw.sealer.seal_now()
    s = await scrape(http, gw)
    assert one(s, "gateway_audit_last_signed_seal") == 1
    assert one(s, "gateway_audit_unsigned_entries") <= 2  # the seal's own entries (made, signed) come after it
    assert time.time() - one(s, "gateway_audit_last_signed_seal_timestamp_seconds") < 30
    assert one(s, "gateway_audit_pending_seals") == 0


async def test_scrapes_read_the_store_once_per_cache_window(tmp_path: Path, hall, http) -> None:
    gw = Gateway(load_config(_site(tmp_path, hall.records_url, cache="30s")))
    await gw.start()
    try:
        reads = 0
        original = gw.store.scrape_figures

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal reads
            reads += 1
            await asyncio.sleep(0.05)
            return await original(*args, **kwargs)

        gw.store.scrape_figures = counted  # type: ignore[method-assign]
        await asyncio.gather(*(scrape(http, gw) for _ in range(5)))
        await scrape(http, gw)
        assert reads == 1
    finally:
        await gw.stop()


async def test_a_scrape_still_answers_when_the_store_does_not(gw, http) -> None:
    await gw.store.close()
    s = await scrape(http, gw)
    assert one(s, "gateway_store_up") == 0
    assert ("gateway_deliveries", (("destination", "hall"), ("state", "pending"))) not in s
    assert one(s, "gateway_started") == 1  # what the process knows itself is still there


async def test_every_scrape_query_is_answered_from_an_index(gw, http) -> None:
    """With a million records a scrape must not read them: no plan may scan records, outbox, audit or quarantine."""
    assert await push(http, gw, [case_item("M-2026-0040")]) == 202
    conn = sqlite3.connect(gw.store.path)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        scrape_figures(conn, ["hall"])
        conn.set_trace_callback(None)
        assert len(statements) >= 10
        for sql in statements:
            plan = [row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, _placeholders(sql))]
            for step in plan:
                full_scan = re.match(r"SCAN (records|outbox|audit|quarantine)\b(?! USING (COVERING )?INDEX)", step)
                assert full_scan is None, f"{sql}\n  {step}"
    finally:
        conn.close()


def _placeholders(sql: str) -> tuple[Any, ...]:
    return ("x",) * sql.count("?")


# --------------------------------------------------------------------------- the alert rules


_NOT_METRICS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "offset", "inf", "nan"}
PROMETHEUS_OWN = {"up"}  # series Prometheus makes itself for every target


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, keywords, labels or durations)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for m in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if text[m.end():].lstrip().startswith("(") or m.group(0).lower() in _NOT_METRICS:
            continue
        names.add(m.group(0))
    return names


def test_the_promql_reader_finds_metrics_and_skips_functions_labels_and_keywords() -> None:
    expr = ('(time() - a_ts > 3600) and on (instance, destination) b{state="dead", x=~"a|b"} > 0 '
            'or increase(c_total[15m]) > 2 * 3600')
    assert metric_names(expr) == {"a_ts", "b", "c_total"}


def _exported(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                    "summary": ("_sum", "_count", "_created"), "info": ("_info",)}.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


async def test_the_shipped_alert_rules_name_only_metrics_the_gateway_exports(gw, http) -> None:
    async with http.get(gw.api.url + "/metrics") as r:
        exported = _exported(await r.text())
    rules = [rule for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        unknown = names - exported - PROMETHEUS_OWN
        assert not unknown, f"{rule['alert']}: {sorted(unknown)} are not exported by the gateway"
    # what operations asked for: backlog age, dead letters, seal lag, audit integrity, store down, no contact
    reads = {name for rule in rules for name in metric_names(rule["expr"])}
    assert {"gateway_outbox_oldest_age_seconds", "gateway_deliveries", "gateway_audit_seal_lag_seconds",
            "gateway_audit_sealer_refusing", "gateway_store_up",
            "gateway_counterpart_last_received_timestamp_seconds"} <= reads


def test_the_last_contacts_read_at_start_never_move_a_newer_one_back() -> None:
    from gateway.observability.metrics import GatewayMetrics

    metrics = GatewayMetrics("t")
    metrics.contact("received", "county", 2000.0)
    metrics.contact_seeded({"county": 1000.0, "hall": 1500.0}, {"hall": 1200.0})
    value = metrics.registry.get_sample_value
    assert value("gateway_counterpart_last_received_timestamp_seconds", {"system": "county"}) == 2000.0
    assert value("gateway_counterpart_last_received_timestamp_seconds", {"system": "hall"}) == 1500.0
    assert value("gateway_counterpart_last_delivered_timestamp_seconds", {"destination": "hall"}) == 1200.0
