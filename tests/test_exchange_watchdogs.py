"""Watchdogs per counterpart: "records expected by HH:MM each working day" and "no contact for N minutes"
fire an alert record routed like any other, show in the health query, and clear when the counterpart is back.
Last contact is recorded for received records and successful deliveries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest
from e2e_site import wait_until
from exchange_support import push, rows, supervision_result, write_site
from test_api_support import token_for

from gateway.app import Gateway
from gateway.config import load_config
from gateway.supervision.calendar import WorkCalendar

CHINA = timezone(timedelta(hours=8))


async def _site(tmp_path: Path, watch: str) -> Gateway:
    extra = f"""
[exchange.counterparts.market_ministry]
watch = {watch}
"""
    # tick once an hour: the test drives the watchdogs' clock itself
    gw = Gateway(load_config(write_site(tmp_path, extra, tick="1h")))
    await gw.start()
    assert gw.exchange is not None
    exchange = gw.exchange
    await wait_until(lambda: exchange.ticks >= 1, what="the loop's own first tick, out of the way")
    return gw


@pytest.fixture
async def silent(tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await _site(tmp_path, '{ silence = "30m" }')
    try:
        yield gw
    finally:
        await gw.stop()


@pytest.fixture
async def expecting(tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await _site(tmp_path, '{ expect_by = "10:00" }')
    try:
        yield gw
    finally:
        await gw.stop()


async def _alerts(gw: Gateway) -> list[dict]:
    assert gw.store is not None
    return [r["record"]["data"] for r in await gw.store.list_records(kind="supervision_alert")]


async def _health(gw: Gateway, name: str) -> dict:
    """What GET /api/v1/counterparts answers (the API is off in this site: the same query, on the store)."""
    from gateway.exchange.service import counterpart_health

    return {h["counterpart"]: h for h in await counterpart_health(gw.store, gw.config)}[name]


async def _firing(gw: Gateway) -> float | None:
    """gateway_watchdog_firing of the ministry's silence watchdog in a /metrics scrape (None: no sample)."""
    from prometheus_client.parser import text_string_to_metric_families

    from gateway.observability.metrics import scrape

    for family in text_string_to_metric_families((await scrape(gw)).decode()):
        for sample in family.samples:
            if sample.name == "gateway_watchdog_firing" and sample.labels == {
                    "counterpart": "market_ministry", "watch": "silence"}:
                return sample.value
    return None


async def test_no_contact_for_too_long_fires_an_alert_then_clears_when_the_counterpart_is_heard(silent: Gateway):
    gw = silent
    service = gw.exchange
    assert service is not None
    start = datetime.now(CHINA)
    assert await service.watch(start + timedelta(minutes=29)) == []
    changed = await service.watch(start + timedelta(minutes=31))
    assert changed == [{"counterpart": "market_ministry", "watch": "silence", "state": "firing", "alert": "no_contact"}]
    (alert,) = await _alerts(gw)
    assert alert["alert_type"] == "no_contact" and alert["severity"] == "red" and alert["case_no"] is None
    assert "market_ministry" in alert["description"] and "无联络" in alert["description"]
    # routed like any alert: to the [supervision] destinations
    assert rows(gw, "SELECT o.destination FROM outbox o JOIN records r ON r.id = o.record_id"
                    " WHERE r.kind = 'supervision_alert'") == [("hall_platform",)]
    health = await _health(gw, "market_ministry")
    assert health["state"] == "firing" and health["watchdogs"][0]["state"] == "firing"
    assert await _firing(gw) == 1
    assert await service.watch(start + timedelta(minutes=40)) == []  # still silent: no second alert
    # the ministry is heard from again (a result pulled): the watchdog clears, and says so
    await push(gw, "market_ministry", supervision_result("烟市监检〔2026〕1号", "91370602W03JAX9C6G", kind="检查",
                                                         effect=None))
    changed = await service.watch(datetime.now(CHINA) + timedelta(minutes=1))
    assert changed == [{"counterpart": "market_ministry", "watch": "silence", "state": "ok",
                        "alert": "watchdog_cleared"}]
    assert [a["alert_type"] for a in await _alerts(gw)] == ["no_contact", "watchdog_cleared"]
    health = await _health(gw, "market_ministry")
    assert health["state"] == "ok" and health["last_received"] is not None
    assert await _firing(gw) == 0
    # last contact is recorded in the store (received here; delivered ones come from the outbox)
    assert rows(gw, "SELECT direction FROM exchange_contacts WHERE system = 'market_ministry'") == [("received",)]


async def test_records_expected_by_a_time_fire_on_working_days_only_and_clear_when_records_come(expecting: Gateway):
    gw = expecting
    service = gw.exchange
    assert service is not None
    calendar = WorkCalendar.default()
    today = datetime.now(CHINA).date()
    # (run after 10:00 on a working day, the gateway's first tick has fired already for today: count from here)
    before = len(await _alerts(gw))
    day = calendar.add_working_days(today, 1)  # a working day to come: nothing can have arrived on it yet
    assert await service.watch(datetime.combine(day, time(9, 59), CHINA)) == []  # not due yet
    changed = await service.watch(datetime.combine(day, time(10, 1), CHINA))
    assert [(c["watch"], c["state"], c["alert"]) for c in changed] == [("expected_by", "firing", "feed_missing")]
    (alert,) = (await _alerts(gw))[before:]
    assert f"{day}" in alert["description"] and "10:00" in alert["description"]
    assert await service.watch(datetime.combine(day, time(15, 0), CHINA)) == []  # one alert a day
    # the next working day without the feed: a new alert for that day
    nxt = calendar.add_working_days(day, 1)
    changed = await service.watch(datetime.combine(nxt, time(10, 30), CHINA))
    assert [(c["state"], c["alert"]) for c in changed] == [("firing", "feed_missing")]
    # records come (at 11:00 that day): cleared
    service.contacts.heard("market_ministry", datetime.combine(nxt, time(11, 0), CHINA).timestamp())
    changed = await service.watch(datetime.combine(nxt, time(11, 1), CHINA))
    assert [(c["state"], c["alert"]) for c in changed] == [("ok", "watchdog_cleared")]
    assert [a["alert_type"] for a in (await _alerts(gw))[before:]] == ["feed_missing", "feed_missing",
                                                                      "watchdog_cleared"]


async def test_no_feed_is_expected_on_a_day_off(expecting: Gateway):
    gw = expecting
    service = gw.exchange
    assert service is not None
    calendar = WorkCalendar.default()
    day = datetime.now(CHINA).date() + timedelta(days=1)
    while calendar.is_workday(day):
        day += timedelta(days=1)
    before = len(await _alerts(gw))  # (today's, when the test runs after 10:00 on a working day)
    assert await service.watch(datetime.combine(day, time(16, 0), CHINA)) == []
    assert len(await _alerts(gw)) == before


def test_a_fresh_counterpart_is_not_expected_on_a_day_off_and_is_on_a_make_up_working_day():
    from gateway.exchange.config import Counterpart, ReconcileSettings, WatchSettings
    from gateway.exchange.watchdogs import evaluate

    cp = Counterpart("ministry", ("ministry",), (), WatchSettings(expect_by="10:00"), ReconcileSettings(), ())
    calendar = WorkCalendar.default()

    def verdict(moment: datetime) -> str:
        (v,) = evaluate(cp, moment, last_received=None, last_delivered=None, watching_since=moment.timestamp(),
                        previous={}, calendar=calendar)
        return v.state

    assert verdict(datetime(2026, 10, 3, 11, 0, tzinfo=CHINA)) == "ok"  # 国庆节
    assert verdict(datetime(2026, 10, 10, 11, 0, tzinfo=CHINA)) == "firing"  # Saturday, a make-up working day (调休)
    assert verdict(datetime(2026, 10, 12, 9, 0, tzinfo=CHINA)) == "ok"  # Monday, before 10:00


async def test_the_health_endpoint_shows_each_counterpart(tmp_path: Path):
    from test_api_support import write_gateway_dir

    gw = Gateway(load_config(write_gateway_dir(tmp_path)))
    await gw.start()
    try:
        assert gw.api is not None
        async with aiohttp.ClientSession() as http:
            async with http.get(gw.api.url + "/api/v1/counterparts") as r:
                assert r.status == 401
            operator = await token_for(gw, "op.hall", role="operator", systems=["hall_platform"])
            async with http.get(gw.api.url + "/api/v1/counterparts", headers=operator) as r:
                body = await r.json()
        # an operator sees the counterparts of its systems only
        assert [h["counterpart"] for h in body["items"]] == ["hall_platform"]
        assert body["items"][0]["state"] == "ok" and body["items"][0]["backlog"] == {}
    finally:
        await gw.stop()
