"""REST pull source against a real local paged feed: paging, watermarks, restarts, failures, limits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.adapters import IngestOutcome, RawRecord
from gateway.demo.counterparts import PagedFeed
from gateway_adapters.rest import ADAPTER, RestPullSource, RestSourceConfig, TokenBucket
from gateway_adapters.rest._source import order_key

CHINA = timezone(timedelta(hours=8))
FAST_RETRY = {"attempts": 4, "initial": 0.01, "max": 0.05, "jitter": 0.01}


class FakeContext:
    """An in-memory SourceContext: records every ingested batch and commits cursors with it."""

    def __init__(self, system: str = "county-market", cursors: dict[str, str] | None = None) -> None:
        self.system = system
        self.data_dir = Path(".")
        self.log = logging.getLogger("test.rest.pull")
        self.stopping = asyncio.Event()
        self.cursors: dict[str, str] = dict(cursors or {})
        self.batches: list[list[RawRecord]] = []
        self.committed: list[tuple[str, str] | None] = []
        self.stop_after_batches: int | None = None
        self.refuse_calls: set[int] = set()  # ingest call numbers (1-based) that fail, as a store outage
        self.calls = 0

    async def ingest(
        self, records: Sequence[RawRecord], *, cursor: tuple[str, str] | None = None
    ) -> list[IngestOutcome]:
        self.calls += 1
        if self.calls in self.refuse_calls:
            raise OSError("database is locked (simulated store outage)")
        self.batches.append(list(records))
        self.committed.append(cursor)
        if cursor is not None:
            self.cursors[cursor[0]] = cursor[1]
        if self.stop_after_batches is not None and len(self.batches) >= self.stop_after_batches:
            self.stopping.set()  # as if the process were told to stop right after this commit
        return [IngestOutcome(ref=r.ref, status="accepted") for r in records]

    async def get_cursor(self, name: str) -> str | None:
        return self.cursors.get(name)

    def input_options(self) -> Mapping[str, Any]:
        return {}

    @property
    def ids(self) -> list[str]:
        return [r.payload["SBLSH"] for batch in self.batches for r in batch if r.payload]


def case_records(count: int, *, first: int = 0, same_time_every: int = 1) -> list[dict[str, Any]]:
    """Feed items ordered by updated_at; ``same_time_every`` > 1 gives runs of equal timestamps."""
    start = datetime(2026, 9, 29, 8, 0, tzinfo=CHINA)
    return [
        {
            "SBLSH": f"370600-2026-{n:06d}",
            "SQRMC": "烟台市某某餐饮有限公司",
            "updated_at": (start + timedelta(seconds=n // same_time_every)).isoformat(),
        }
        for n in range(first, first + count)
    ]


def source_for(url: str, **options: Any) -> RestPullSource:
    options.setdefault("interval", 0.05)
    options.setdefault("retry", FAST_RETRY)
    return ADAPTER.make_source("county-market", RestSourceConfig(url=url, **options))  # type: ignore[misc]


async def run_until(
    source: RestPullSource, ctx: FakeContext, done: Callable[[], bool], timeout: float = 10.0
) -> None:
    """Run the source until ``done()`` holds (then stop it), or until it stops by itself."""
    task = asyncio.create_task(source.run(ctx))
    deadline = time.monotonic() + timeout
    while not done() and not task.done():
        if time.monotonic() > deadline:
            ctx.stopping.set()
            await task
            raise AssertionError(f"timed out; stats {source.stats}, {len(ctx.ids)} records")
        await asyncio.sleep(0.01)
    ctx.stopping.set()
    await asyncio.wait_for(task, 5)


async def started(feed: PagedFeed) -> PagedFeed:
    await feed.start()
    return feed


# --------------------------------------------------------------------------- paging


async def test_pages_through_the_feed_committing_the_watermark_with_each_page() -> None:
    records = case_records(1050)
    feed = await started(PagedFeed(records, pagination="page"))
    ctx = FakeContext()
    source = source_for(feed.feed_url, pagination={"mode": "page", "page_size": 100})
    try:
        await run_until(source, ctx, lambda: len(ctx.ids) >= 1050)
    finally:
        await feed.stop()
    assert ctx.ids == [r["SBLSH"] for r in records]  # every record once, in feed order
    assert [len(b) for b in ctx.batches] == [100] * 10 + [50]
    for batch, cursor in zip(ctx.batches, ctx.committed, strict=True):
        assert cursor == ("rest:county-market:/feed", batch[-1].payload["updated_at"])
    first = ctx.batches[2][6]
    assert first.system == "county-market"
    assert first.ref == "GET /feed?page=3&page_size=100 page 3 item 7"


@pytest.mark.parametrize(
    ("feed_style", "options"),
    [
        ("offset", {"pagination": {"mode": "offset", "page_size": 40}}),
        ("next_link", {"pagination": {"mode": "next_link", "page_size": 40, "next_path": "next"}}),
        ("link_header", {"pagination": {"mode": "next_link", "page_size": 40, "next_from": "link_header"}}),
        (
            "cursor",
            {
                "cursor": {"mode": "token", "param": "cursor", "token_path": "next_cursor"},
                "pagination": {"mode": "none", "page_size": 40, "has_more_path": "has_more"},
            },
        ),
    ],
)
async def test_every_pagination_style_reads_each_record_once(feed_style: Any, options: dict[str, Any]) -> None:
    records = case_records(130)
    feed = await started(PagedFeed(records, pagination=feed_style))
    ctx = FakeContext()
    source = source_for(feed.feed_url, **options)
    try:
        await run_until(source, ctx, lambda: len(ctx.ids) >= 130)
    finally:
        await feed.stop()
    assert ctx.ids == [r["SBLSH"] for r in records]
    assert [len(b) for b in ctx.batches] == [40, 40, 40, 10]


async def test_the_next_poll_picks_up_records_added_since() -> None:
    feed = await started(PagedFeed(case_records(30), pagination="page"))
    ctx = FakeContext()
    source = source_for(feed.feed_url, pagination={"mode": "page", "page_size": 20})
    task = asyncio.create_task(source.run(ctx))
    try:
        while len(ctx.ids) < 30:
            await asyncio.sleep(0.01)
        feed.append(case_records(5, first=30))
        while len(ctx.ids) < 35:
            await asyncio.sleep(0.01)
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 5)
        await feed.stop()
    # Later polls ask from the watermark; the item equal to it comes back and is recognised.
    assert ctx.ids == [f"370600-2026-{n:06d}" for n in range(35)]
    assert any("since=2026-09-29T08:00:29%2B08:00" in r for r in feed.requests)


async def test_idle_polls_ingest_nothing() -> None:
    feed = await started(PagedFeed(case_records(30), pagination="page"))
    ctx = FakeContext()
    source = source_for(feed.feed_url, interval=0.02, pagination={"mode": "page", "page_size": 20})
    try:
        await run_until(source, ctx, lambda: source.stats.polls >= 6)
    finally:
        await feed.stop()
    assert len(ctx.batches) == 2 and len(ctx.ids) == 30
    assert source.stats.pages >= 7  # the feed was asked again and again; nothing new was ingested


async def test_a_changed_item_at_the_watermark_is_ingested_again() -> None:
    records = case_records(3)
    feed = await started(PagedFeed(records, pagination="page"))
    ctx = FakeContext()
    source = source_for(feed.feed_url, interval=0.02)
    task = asyncio.create_task(source.run(ctx))
    try:
        while len(ctx.ids) < 3:
            await asyncio.sleep(0.01)
        # The counterpart corrects the last record without moving its timestamp.
        feed.records[-1] = {**records[-1], "SQRMC": "烟台市某某餐饮管理有限公司"}
        while len(ctx.ids) < 4:
            await asyncio.sleep(0.01)
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 5)
        await feed.stop()
    assert ctx.batches[-1][0].payload["SQRMC"] == "烟台市某某餐饮管理有限公司"


# --------------------------------------------------------------------------- failures


async def test_a_feed_failing_part_way_is_retried_and_nothing_is_lost() -> None:
    records = case_records(500)
    feed = await started(PagedFeed(records, pagination="page"))
    feed.fail_page(3, times=2)
    ctx = FakeContext()
    source = source_for(feed.feed_url, pagination={"mode": "page", "page_size": 100})
    try:
        await run_until(source, ctx, lambda: len(ctx.ids) >= 500)
    finally:
        await feed.stop()
    assert ctx.ids == [r["SBLSH"] for r in records]
    assert source.stats.retries == 2 and source.stats.failed_polls == 0
    assert sum("page=3&" in r for r in feed.requests) == 3


async def test_a_page_that_keeps_failing_ends_the_poll_and_the_next_poll_resumes_from_the_watermark() -> None:
    records = case_records(500)
    feed = await started(PagedFeed(records, pagination="page"))
    feed.fail_page(3, times=4)  # more than the 3 attempts one poll makes
    ctx = FakeContext()
    source = source_for(
        feed.feed_url, pagination={"mode": "page", "page_size": 100}, retry={**FAST_RETRY, "attempts": 3}
    )
    try:
        await run_until(source, ctx, lambda: len(set(ctx.ids)) >= 500)
    finally:
        await feed.stop()
    assert source.stats.failed_polls == 1
    assert "page 3" in (source.stats.last_error or "") and "503" in (source.stats.last_error or "")
    # The second poll asked from the last item of page 2 (inclusive since) and knew that item.
    assert any(f"since={records[199]['updated_at'].replace('+', '%2B')}&page=1&" in r for r in feed.requests)
    assert ctx.ids == [r["SBLSH"] for r in records]  # nothing skipped, nothing twice


async def test_a_failed_ingest_leaves_the_watermark_and_the_next_poll_reads_the_page_again() -> None:
    records = case_records(300)
    feed = await started(PagedFeed(records, pagination="page"))
    ctx = FakeContext()
    ctx.refuse_calls = {2}  # the store fails while committing page 2
    source = source_for(feed.feed_url, pagination={"mode": "page", "page_size": 100})
    try:
        await run_until(source, ctx, lambda: len(set(ctx.ids)) >= 300)
    finally:
        await feed.stop()
    assert source.stats.failed_polls == 1 and "database is locked" in (source.stats.last_error or "")
    assert ctx.committed[0] == ("rest:county-market:/feed", records[99]["updated_at"])
    assert ctx.ids == [r["SBLSH"] for r in records]  # page 2 came again in the next poll, once


async def test_a_client_error_is_not_retried_within_the_poll() -> None:
    feed = await started(PagedFeed(case_records(10), pagination="page"))
    feed.fail_next(1, status=404)
    ctx = FakeContext()
    source = source_for(feed.feed_url)
    try:
        await run_until(source, ctx, lambda: len(ctx.ids) >= 10)
    finally:
        await feed.stop()
    assert source.stats.retries == 0 and source.stats.failed_polls == 1
    assert "answered 404" in (source.stats.last_error or "")


async def test_retry_after_is_honoured_between_attempts() -> None:
    feed = await started(PagedFeed(case_records(10), pagination="page"))
    feed.fail_next(1, status=503, retry_after=0.5)
    ctx = FakeContext()
    source = source_for(feed.feed_url, retry={**FAST_RETRY, "max_retry_after": 5})
    try:
        await run_until(source, ctx, lambda: len(ctx.ids) >= 10)
    finally:
        await feed.stop()
    assert feed.request_times[1] - feed.request_times[0] >= 0.45


async def test_items_that_are_not_objects_become_records_with_an_error(aiohttp_server: Any) -> None:
    app = web.Application()

    async def odd_feed(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"SBLSH": "A1"}, "not an object", 42]})

    app.router.add_get("/odd", odd_feed)
    server = await aiohttp_server(app)
    ctx = FakeContext()
    source = source_for(
        str(server.make_url("/odd")), items_path="data", cursor={"mode": "none"}, pagination={"mode": "none"}
    )
    await run_until(source, ctx, lambda: len(ctx.batches) >= 1)
    good, text, number = ctx.batches[0]
    assert good.payload == {"SBLSH": "A1"} and good.error is None
    assert text.payload == {} and text.raw == b'"not an object"' and "JSON str" in (text.error or "")
    assert "JSON int" in (number.error or "") and number.ref == "GET /odd page 1 item 3"
    assert ctx.committed[0] is None  # no watermark in mode none


async def test_an_answer_without_the_items_array_fails_the_poll_with_the_path_named(aiohttp_server: Any) -> None:
    app = web.Application()

    async def wrong_shape(request: web.Request) -> web.Response:
        return web.json_response({"rows": []})

    app.router.add_get("/feed", wrong_shape)
    server = await aiohttp_server(app)
    ctx = FakeContext()
    source = source_for(str(server.make_url("/feed")), items_path="data.items")
    await run_until(source, ctx, lambda: source.stats.failed_polls >= 1)
    assert "nothing at items_path 'data.items'" in (source.stats.last_error or "")
    assert ctx.batches == []


# --------------------------------------------------------------------------- restarts


async def test_a_restart_in_the_middle_resumes_from_the_committed_watermark() -> None:
    records = case_records(1000)
    feed = await started(PagedFeed(records, pagination="page"))
    first_run = FakeContext()
    first_run.stop_after_batches = 3  # the process stops right after page 3 committed
    try:
        first = source_for(feed.feed_url, pagination={"mode": "page", "page_size": 100})
        await asyncio.wait_for(first.run(first_run), 5)
        assert len(first_run.ids) == 300
        watermark = first_run.cursors["rest:county-market:/feed"]
        assert watermark == records[299]["updated_at"]

        second_run = FakeContext(cursors=first_run.cursors)  # only the committed state survives
        second = source_for(feed.feed_url, pagination={"mode": "page", "page_size": 100})
        requests_before = len(feed.requests)
        await run_until(second, second_run, lambda: len(second_run.ids) >= 701)
    finally:
        await feed.stop()
    assert "since=2026-09-29T08:04:59%2B08:00" in feed.requests[requests_before]
    everything = first_run.ids + second_run.ids
    assert sorted(set(everything)) == [r["SBLSH"] for r in records]  # nothing skipped
    assert len(everything) == 1001  # only the item equal to the inclusive since was read again


async def test_a_watermark_stored_under_the_old_system_less_name_is_continued_and_then_kept_under_the_new() -> None:
    records = case_records(300)
    feed = await started(PagedFeed(records, pagination="page"))
    # What a store written by an older release holds: the default name had no system in it.
    ctx = FakeContext(cursors={"rest:/feed": records[199]["updated_at"]})
    try:
        await run_until(source_for(feed.feed_url, pagination={"mode": "page", "page_size": 100}), ctx,
                        lambda: len(ctx.ids) >= 101)
    finally:
        await feed.stop()
    assert "since=2026-09-29T08:03:19%2B08:00" in feed.requests[0]
    assert ctx.ids == [r["SBLSH"] for r in records[199:]]  # nothing before the old watermark read again
    assert ctx.cursors["rest:county-market:/feed"] == records[-1]["updated_at"]


async def test_a_restart_with_a_token_cursor_neither_skips_nor_rereads() -> None:
    records = case_records(250)
    feed = await started(PagedFeed(records, pagination="cursor"))
    options = {
        "cursor": {"mode": "token", "param": "cursor", "token_path": "next_cursor"},
        "pagination": {"mode": "none", "page_size": 50, "has_more_path": "has_more"},
    }
    first_run = FakeContext()
    first_run.stop_after_batches = 2
    try:
        await asyncio.wait_for(source_for(feed.feed_url, **options).run(first_run), 5)
        second_run = FakeContext(cursors=first_run.cursors)
        await run_until(source_for(feed.feed_url, **options), second_run, lambda: len(second_run.ids) >= 150)
    finally:
        await feed.stop()
    assert first_run.ids + second_run.ids == [r["SBLSH"] for r in records]


async def test_an_exclusive_since_does_not_skip_equal_timestamps_split_across_pages() -> None:
    records = case_records(120, same_time_every=7)  # runs of 7 equal timestamps straddle page ends
    feed = await started(PagedFeed(records, pagination="page", since_inclusive=False))
    options = {
        "cursor": {"mode": "since", "field": "updated_at", "inclusive": False},
        "pagination": {"mode": "page", "page_size": 25},
    }
    first_run = FakeContext()
    first_run.stop_after_batches = 2
    try:
        await asyncio.wait_for(source_for(feed.feed_url, **options).run(first_run), 5)
        # Page 2 ends inside a run (items 49 and 50 share a timestamp): the watermark stays below it.
        assert order_key(first_run.cursors["rest:county-market:/feed"]) < order_key(records[49]["updated_at"])
        second_run = FakeContext(cursors=first_run.cursors)
        await run_until(source_for(feed.feed_url, **options), second_run, lambda: len(set(second_run.ids)) >= 70)
    finally:
        await feed.stop()
    assert sorted(set(first_run.ids + second_run.ids)) == [r["SBLSH"] for r in records]


# --------------------------------------------------------------------------- limits and stopping


async def test_requests_respect_the_rate_limit() -> None:
    feed = await started(PagedFeed(case_records(105), pagination="page"))
    ctx = FakeContext()
    source = source_for(
        feed.feed_url, pagination={"mode": "page", "page_size": 10},
        rate_limit={"requests_per_second": 20, "burst": 1},
    )
    try:
        await run_until(source, ctx, lambda: len(ctx.ids) >= 105)
    finally:
        await feed.stop()
    times = list(feed.request_times)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)][:10]
    assert len(gaps) == 10
    assert min(gaps) >= 0.04 and sum(gaps) >= 0.48


async def test_stops_promptly_while_backing_off() -> None:
    feed = await started(PagedFeed(case_records(10), pagination="page"))
    feed.fail_next(100, status=503)
    ctx = FakeContext()
    source = source_for(feed.feed_url, retry={"attempts": 10, "initial": 30, "max": 60, "jitter": 0})
    task = asyncio.create_task(source.run(ctx))
    try:
        while not feed.requests:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        began = time.monotonic()
        ctx.stopping.set()
        await asyncio.wait_for(task, 2)
        assert time.monotonic() - began < 0.5
    finally:
        await feed.stop()
    assert len(feed.requests) == 1 and ctx.batches == []


async def test_stops_promptly_while_a_request_hangs() -> None:
    feed = await started(PagedFeed(case_records(10), pagination="page"))
    feed.set_delay(30)
    ctx = FakeContext()
    source = source_for(feed.feed_url)
    task = asyncio.create_task(source.run(ctx))
    try:
        while not feed.requests:
            await asyncio.sleep(0.01)
        began = time.monotonic()
        ctx.stopping.set()
        await asyncio.wait_for(task, 2)
        assert time.monotonic() - began < 0.5
    finally:
        await feed.stop()


async def test_signed_and_authorised_pulls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEED_KEY", "feed-key")
    feed = await started(PagedFeed(case_records(60), pagination="page", hmac_key=b"feed-key"))
    ctx = FakeContext()
    source = source_for(
        feed.feed_url, pagination={"mode": "page", "page_size": 25},
        auth={"type": "hmac", "key": {"env": "FEED_KEY"}}, params={"region": "370600"},
    )
    try:
        await run_until(source, ctx, lambda: len(ctx.ids) >= 60)
    finally:
        await feed.stop()
    assert feed.auth_failures == []  # the signature covers the path and the query string
    assert feed.requests[0] == "/feed?region=370600&page=1&page_size=25"


async def test_a_refused_token_names_the_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEED_TOKEN", "wrong")
    feed = await started(PagedFeed(case_records(5), bearer_token="right"))
    ctx = FakeContext()
    source = source_for(feed.feed_url, auth={"type": "bearer", "token": {"env": "FEED_TOKEN"}})
    try:
        await run_until(source, ctx, lambda: source.stats.failed_polls >= 1)
    finally:
        await feed.stop()
    assert "401" in (source.stats.last_error or "") and "credentials" in (source.stats.last_error or "")


# --------------------------------------------------------------------------- small parts


def test_watermark_values_compare_as_numbers_instants_or_text() -> None:
    assert order_key("2026-09-29T10:00:00+08:00") == order_key("2026-09-29T02:00:00Z")
    assert order_key("2026-09-29 10:00:00") == order_key("2026-09-29T10:00:00+08:00")  # China time
    assert order_key(9) < order_key("10")
    assert order_key("20260929100000") < order_key("20260929100001")
    assert order_key("B-2") > order_key("A-9")


def test_token_bucket_spaces_requests_after_the_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=2, clock=lambda: now[0])
    assert bucket.try_take() == 0 and bucket.try_take() == 0
    assert bucket.try_take() == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.try_take() == 0


def test_token_cursor_with_page_pagination_is_refused() -> None:
    with pytest.raises(ValueError, match="pages with the token itself"):
        RestSourceConfig(url="http://h/feed", cursor={"mode": "token"}, pagination={"mode": "page"})
