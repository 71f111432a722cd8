"""The REST pull source: poll a counterpart's feed, page through it, commit each page with its watermark.

Each page's records and the watermark after them go to ``ctx.ingest`` together, so they commit
in one transaction: a restart resumes after the last committed page and never skips one.
A page that fails is retried with exponential backoff and jitter (tenacity); a poll whose page
keeps failing ends, and the next poll starts again from the committed watermark.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from yarl import URL

from gateway.adapters import RawRecord, SourceContext, correlation_scope, current_correlation_id

from ._auth import RestConfigError, make_signer
from ._config import RestSourceConfig
from ._http import TRANSPORT_ERRORS, describe_transport_error, make_session, parse_retry_after, trim_body
from ._paths import MISSING, compile_path, resolve
from ._ratelimit import TokenBucket

T = TypeVar("T")

CHINA_TIME = timezone(timedelta(hours=8))  # zone-less times from counterparts are China time


class PageError(Exception):
    """One page could not be read; ``retryable`` says whether trying again may help."""

    def __init__(
        self, message: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class _Stopping(Exception):
    """ctx.stopping was set while waiting: leave without starting anything new."""


@dataclass(slots=True)
class PullStats:
    """Counters a runner or a test can read while the source runs."""

    polls: int = 0
    pages: int = 0
    records: int = 0
    retries: int = 0
    failed_polls: int = 0
    last_error: str | None = None


@dataclass(slots=True)
class _Page:
    url: URL
    body: Any
    link_next: URL | None
    number: int


def order_key(value: Any) -> tuple[int, float, str]:
    """How watermark values compare: numbers as numbers, ISO times as instants, otherwise as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    text = str(value).strip()
    try:
        return (0, float(text), "")
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return (2, 0.0, text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA_TIME)
    return (1, moment.timestamp(), "")


class RestPullSource:
    """Polls one feed of one counterpart system; see the module docstring for the guarantees."""

    def __init__(self, system: str, config: RestSourceConfig) -> None:
        self.system = system
        self.config = config
        self.stats = PullStats()
        self.watermark: str | None = None
        self._owner = f"REST source {system!r}"
        self._items = compile_path(config.items_path)
        self._since_field = compile_path(config.cursor.field)
        self._token_path = compile_path(config.cursor.token_path)
        self._next_path = compile_path(config.pagination.next_path)
        self._has_more = compile_path(config.pagination.has_more_path) if config.pagination.has_more_path else None
        self._bucket = (
            TokenBucket(config.rate_limit.requests_per_second, config.rate_limit.burst)
            if config.rate_limit
            else None
        )
        self._signer = make_signer(None, owner=self._owner)
        self._boundary: set[bytes] = set()  # fingerprints of ingested items equal to the watermark
        t = config.timeouts
        self._timeouts = (t.connect, t.read, t.total)
        self._backoff = wait_exponential_jitter(
            multiplier=config.retry.initial, max=config.retry.max, jitter=config.retry.jitter
        )

    @property
    def cursor_name(self) -> str:
        return self.config.cursor_names(self.system)[0]

    async def _stored_watermark(self, ctx: SourceContext) -> str | None:
        """The stored watermark; one stored by an older release under the system-less default name is taken over."""
        name, legacy = self.config.cursor_names(self.system)
        stored = await ctx.get_cursor(name)
        if stored is None and legacy is not None:
            stored = await ctx.get_cursor(legacy)
            if stored is not None:
                ctx.log.info("%s: continuing from watermark %r stored under the older name %r; it is kept as %r "
                             "from the next commit on", self._owner, stored, legacy, name)
        return stored

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Read secrets and certificates now, so a missing one stops the gateway's start with a clear message."""
        self._signer = make_signer(self.config.auth, owner=self._owner)
        session = make_session(self.config, owner=self._owner)
        await session.close()

    async def run(self, ctx: SourceContext) -> None:
        self._signer = make_signer(self.config.auth, owner=self._owner)
        if self.config.cursor.mode != "none":
            self.watermark = await self._stored_watermark(ctx) or self.config.cursor.initial
        ctx.log.info("%s: polling %s from watermark %r", self._owner, self.config.url, self.watermark)
        async with make_session(self.config, owner=self._owner) as session:
            while not ctx.stopping.is_set():
                self.stats.polls += 1
                drained = True
                try:
                    drained = await self._poll(ctx, session)
                except _Stopping:
                    break
                except (PageError, RestConfigError) as exc:
                    self._failed(ctx, str(exc))
                except Exception as exc:  # usually ctx.ingest (store, mapping); the watermark did not move
                    ctx.log.exception("%s: poll failed", self._owner)
                    self._failed(ctx, f"{self._owner}: poll failed: {type(exc).__name__}: {exc}")
                if drained and await _wait_or_stop(ctx, self.config.poll_interval):
                    break
        ctx.log.info("%s: stopped at watermark %r", self._owner, self.watermark)

    def _failed(self, ctx: SourceContext, message: str) -> None:
        self.stats.failed_polls += 1
        self.stats.last_error = message
        ctx.log.error("%s; next poll in %gs from watermark %r", message, self.config.poll_interval, self.watermark)

    # ------------------------------------------------------------------ one poll

    async def _poll(self, ctx: SourceContext, session: aiohttp.ClientSession) -> bool:
        """Walk the feed from the watermark; True when it was drained, False when max_pages cut it."""
        pagination = self.config.pagination
        base = URL(self.config.url).update_query(self.config.params)
        url = self._first_url(base)
        offset = 0
        visited: set[str] = set()
        for number in range(1, pagination.max_pages + 1):
            # One correlation id per page request: its GET, the records it brings and their log lines.
            with correlation_scope():
                next_url, count = await self._page(ctx, session, base, url, number, offset, visited)
            if next_url is None:
                return True
            offset += count
            url = next_url
        ctx.log.warning("%s: stopped this poll after max_pages=%d; polling again at once", self._owner, pagination.max_pages)
        return False

    async def _page(self, ctx: SourceContext, session: aiohttp.ClientSession, base: URL, url: URL, number: int,
                    offset: int, visited: set[str]) -> tuple[URL | None, int]:
        """Read one page and commit its records with the watermark; (the next page's URL or None, items)."""
        visited.add(str(url))
        page = await self._fetch(ctx, session, url, number)
        items = resolve(page.body, self._items)
        if not isinstance(items, list):
            found = "nothing" if items is MISSING else f"a {type(items).__name__}"
            raise PageError(
                f"{self._owner}: GET {url.raw_path_qs} (page {number}) answered JSON with {found} at "
                f"items_path {self.config.items_path or '(root)'!r}, expected an array of items",
                retryable=False,
            )
        next_url = self._next_url(base, page, items, offset)
        mark = self._next_watermark(page.body, items, last_page=next_url is None)
        seen = self._seen_at_watermark(items)
        records = [
            self._record(ctx, page, index, item)
            for index, item in enumerate(items, 1)
            if index - 1 not in seen
        ]
        if records or (mark is not None and mark != self.watermark):
            cursor = (self.cursor_name, mark) if mark is not None else None
            await ctx.ingest(records, cursor=cursor)
            self.stats.records += len(records)
        self._remember_boundary(items, mark)  # only after the commit: a failed ingest forgets nothing
        if mark is not None:
            self.watermark = mark
        self.stats.pages += 1
        if next_url is None:
            return None, len(items)
        if str(next_url) in visited:
            ctx.log.warning(
                "%s: the feed sent page %d back to %s, already read in this poll; ending the poll",
                self._owner, number, next_url,
            )
            return None, len(items)
        if ctx.stopping.is_set():
            raise _Stopping
        return next_url, len(items)

    def _first_url(self, base: URL) -> URL:
        cursor, pagination = self.config.cursor, self.config.pagination
        query: dict[str, str | int] = {}
        if cursor.mode != "none" and self.watermark is not None:
            query[cursor.param] = self.watermark
        if pagination.mode == "page":
            query[pagination.page_param] = pagination.first_page
        elif pagination.mode == "offset":
            query[pagination.offset_param] = 0
            query[pagination.limit_param] = pagination.page_size
        if pagination.size_param and (pagination.mode in ("page", "next_link") or cursor.mode == "token"):
            query[pagination.size_param] = pagination.page_size
        return base.update_query(query)

    def _next_url(self, base: URL, page: _Page, items: list[Any], offset: int) -> URL | None:
        pagination = self.config.pagination
        if self._has_more is not None:
            more = resolve(page.body, self._has_more)
            if more is False or (more is MISSING and not items):
                return None
            short = False
        else:
            # Without has_more, a short page is the last one: keep page_size at or below the server's cap.
            short = len(items) < pagination.page_size
        if self.config.cursor.mode == "token":
            token = resolve(page.body, self._token_path)
            if not items or short or token in (MISSING, None, "") or str(token) == self.watermark:
                return None
            return self._first_url(base).update_query({self.config.cursor.param: str(token)})
        if pagination.mode == "page":
            if not items or short:
                return None
            return page.url.update_query({pagination.page_param: pagination.first_page + page.number})
        if pagination.mode == "offset":
            if not items or short:
                return None
            return page.url.update_query({pagination.offset_param: offset + len(items)})
        if pagination.mode == "next_link":
            if pagination.next_from == "link_header":
                return page.link_next
            link = resolve(page.body, self._next_path)
            if link in (MISSING, None, ""):
                return None
            return page.url.join(URL(str(link)))
        return None

    def _at(self, items: list[Any], value: str) -> list[int]:
        """Indexes of the object items whose since field equals ``value``."""
        key = order_key(value)
        return [
            index
            for index, item in enumerate(items)
            if isinstance(item, dict)
            and (found := resolve(item, self._since_field)) not in (MISSING, None, "")
            and order_key(found) == key
        ]

    def _seen_at_watermark(self, items: list[Any]) -> set[int]:
        """Items an inclusive since hands back that this process already ingested, unchanged.

        Without this, every idle poll would re-ingest the item at the watermark and leave a
        duplicate in the audit trail each interval. After a restart the memory is empty, the
        overlap is ingested once more, and idempotency absorbs it.
        """
        if not self._boundary or self.watermark is None:
            return set()
        return {i for i in self._at(items, self.watermark) if _fingerprint(items[i]) in self._boundary}

    def _remember_boundary(self, items: list[Any], mark: str | None) -> None:
        if self.config.cursor.mode != "since" or not self.config.cursor.inclusive or mark is None:
            return
        if mark != self.watermark:
            self._boundary = set()
        self._boundary.update(_fingerprint(items[i]) for i in self._at(items, mark))

    def _next_watermark(self, body: Any, items: list[Any], *, last_page: bool) -> str | None:
        cursor = self.config.cursor
        if cursor.mode == "none":
            return None
        if cursor.mode == "token":
            token = resolve(body, self._token_path)
            return self.watermark if token in (MISSING, None, "") else str(token)
        values = [
            value
            for item in items
            if isinstance(item, dict) and (value := resolve(item, self._since_field)) not in (MISSING, None, "")
        ]
        if not values:
            return self.watermark
        top = max(values, key=order_key)
        candidate = top
        if not cursor.inclusive and not last_page:
            # An exclusive since would skip the rest of a run of equal values split across the page
            # boundary; commit the greatest value below the top so a restart re-reads that run.
            below = [v for v in values if order_key(v) < order_key(top)]
            if not below:
                return self.watermark
            candidate = max(below, key=order_key)
        if self.watermark is not None and order_key(candidate) <= order_key(self.watermark):
            return self.watermark
        return str(candidate)

    def _record(self, ctx: SourceContext, page: _Page, index: int, item: Any) -> RawRecord:
        ref = f"GET {page.url.raw_path_qs} page {page.number} item {index}"
        cid = current_correlation_id()  # the page request's
        if isinstance(item, dict):
            return RawRecord(system=ctx.system, payload=item, ref=ref, correlation_id=cid)
        return RawRecord(
            system=ctx.system,
            payload={},
            ref=ref,
            raw=json.dumps(item, ensure_ascii=False).encode("utf-8"),
            error=f"item is a JSON {type(item).__name__}, not an object: cannot map it",
            correlation_id=cid,
        )

    # ------------------------------------------------------------------ one page, with retries

    async def _fetch(self, ctx: SourceContext, session: aiohttp.ClientSession, url: URL, number: int) -> _Page:
        async def sleep(seconds: float) -> None:
            if await _wait_or_stop(ctx, seconds):
                raise _Stopping

        def log_retry(state: RetryCallState) -> None:
            self.stats.retries += 1
            error = state.outcome.exception() if state.outcome else None
            ctx.log.warning(
                "%s; attempt %d of %d, retrying in %.2fs",
                error, state.attempt_number, self.config.retry.attempts,
                state.next_action.sleep if state.next_action else 0.0,
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.retry.attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, PageError) and exc.retryable),
            sleep=sleep,
            before_sleep=log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await _until_stopped(ctx, self._get(session, url, number))
        raise PageError(f"{self._owner}: GET {url.raw_path_qs}: no attempt was made", retryable=False)

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with jitter, but never sooner than the server's Retry-After."""
        delay = self._backoff(state)
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.retry.max_retry_after))
        return delay

    async def _get(self, session: aiohttp.ClientSession, url: URL, number: int) -> _Page:
        if self._bucket is not None:
            await self._bucket.acquire()
        path_qs = url.raw_path_qs
        where = f"{self._owner}: GET {path_qs} (page {number})"
        headers = dict(self._signer("GET", path_qs, b""))
        cid = current_correlation_id()
        if cid is not None:  # the counterpart can find this request in its own logs
            headers[self.config.correlation_header] = cid
        try:
            async with session.get(url, headers=headers) as response:
                status = response.status
                raw = await response.read()
                final_url = response.url
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                link = response.links.get("next")
                link_next = URL(str(link["url"])) if link is not None and "url" in link else None
        except TRANSPORT_ERRORS as exc:
            reason = describe_transport_error(exc, self._timeouts, https=url.scheme == "https")
            raise PageError(f"{where}: {reason}", retryable=True) from exc
        if not 200 <= status < 300:
            retryable = status in {408, 425, 429} or status >= 500
            hint = " — check the credentials configured under auth" if status in (401, 403) else ""
            raise PageError(
                f"{where} answered {status}: {trim_body(raw, 300)}{hint}",
                retryable=retryable, status=status, retry_after=retry_after,
            )
        try:
            body = json.loads(raw)
        except ValueError as exc:
            # A proxy's HTML error page with status 200 is the usual cause, and it passes.
            raise PageError(f"{where} answered {status} but not JSON: {trim_body(raw, 200)}", retryable=True) from exc
        return _Page(url=final_url, body=body, link_next=link_next, number=number)


def _fingerprint(item: Any) -> bytes:
    canonical = json.dumps(item, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=16).digest()


async def _wait_or_stop(ctx: SourceContext, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if ctx.stopping was set meanwhile."""
    if ctx.stopping.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ctx.stopping.wait(), timeout=seconds)
    return ctx.stopping.is_set()


async def _until_stopped(ctx: SourceContext, work: Awaitable[T]) -> T:
    """Await ``work`` unless ctx.stopping is set first, in which case cancel it and raise _Stopping.

    Only network waits go through here; ``ctx.ingest`` is never cancelled half-way.
    """
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(ctx.stopping.wait())
    try:
        done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        stop.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise _Stopping
