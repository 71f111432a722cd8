"""The pull side: call a configured operation on a schedule, page through the answer, and hand
the items to the ingestor with the watermark committed in the same transaction."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.adapters import (
    DeliveryError,
    PermanentError,
    RawRecord,
    RetryableError,
    SourceContext,
    correlation_scope,
    new_correlation_id,
)

from ._client import SoapEndpoint
from ._config import PageNumberPaging, SoapSourceConfig, TokenPaging
from ._request import build_request, response_root
from ._template import TemplateError, as_item_list, get_path, render

_TRUE = frozenset({"true", "1", "yes", "y", "t"})


@dataclass(slots=True)
class PullReport:
    """What one pull run did; ``complete`` is False when it stopped before the end of the list."""

    pages: int
    records: int
    cursor_before: str | None
    cursor_after: str | None
    complete: bool


async def _stopped_within(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True as soon as the gateway asks to stop."""
    try:
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value)


class SoapSource:
    """Pulls records from a SOAP operation; see :class:`~gateway_adapters.soap.PullSettings`."""

    def __init__(self, system: str, config: SoapSourceConfig) -> None:
        self.system = system
        self.config = config
        self.endpoint = SoapEndpoint(system, config)
        self._started = False

    async def start(self) -> None:
        """Load the WSDL (once, in a thread) and check the operation exists."""
        if not self._started:
            await self.endpoint.start()
            try:
                self.endpoint.check_operation(self.config.pull.operation)
            except Exception:
                await self.endpoint.close()
                raise
            self._started = True

    async def close(self) -> None:
        await self.endpoint.close()
        self._started = False

    async def run(self, ctx: SourceContext) -> None:
        """Pull every ``poll_interval`` until the gateway stops; failures are logged and retried."""
        await self.start()
        pull = self.config.pull
        failures = 0
        try:
            while not ctx.stopping.is_set():
                try:
                    report = await self.pull_once(ctx)
                    failures = 0
                    delay = pull.poll_interval if report.complete else 0.0
                except RetryableError as exc:
                    failures += 1
                    delay = min(pull.poll_interval, 2.0 ** min(failures, 8))
                    ctx.log.warning("%s; next try in %gs", exc, delay)
                except PermanentError as exc:
                    delay = pull.poll_interval
                    ctx.log.error("%s; fix the configuration or ask the counterpart; next try in %gs", exc, delay)
                except Exception:
                    # The ingestor or the store failed: keep the source alive and try again later;
                    # nothing uncommitted was acknowledged, so the next run repeats it.
                    failures += 1
                    delay = min(pull.poll_interval, 2.0 ** min(failures, 8))
                    ctx.log.exception(
                        "SOAP system %r: pull run failed outside the SOAP call; next try in %gs", self.system, delay
                    )
                if await _stopped_within(ctx.stopping, delay):
                    break
        finally:
            await self.close()

    def _cursor_value(self, text: str | None) -> Any:
        if text is None:
            return None
        if self.config.pull.watermark_type == "integer":
            return int(text)
        return text

    def _watermark_of(self, item: Any) -> Any:
        field = self.config.pull.watermark_field
        if field is None or not isinstance(item, Mapping):
            return None
        value = get_path(item, field)
        if value is None or value == "":
            return None
        if self.config.pull.watermark_type == "integer":
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
        return str(value)

    async def pull_once(self, ctx: SourceContext) -> PullReport:
        """One run: from the stored watermark through every page, committing as it goes."""
        await self.start()
        pull = self.config.pull
        paging = pull.paging
        operation = pull.operation
        cursor_name = pull.effective_cursor_name(self.system)
        stored = await ctx.get_cursor(cursor_name)
        legacy = pull.legacy_cursor_name()
        if stored is None and legacy is not None:
            # Older releases named the watermark without the system; take it over, write the new name from now on.
            stored = await ctx.get_cursor(legacy)
            if stored is not None:
                ctx.log.info("SOAP system %r: continuing from watermark %r stored under the older name %r",
                             self.system, stored, legacy)
        try:
            since = self._cursor_value(stored if stored is not None else pull.initial_cursor)
        except ValueError:
            raise PermanentError(
                f"SOAP system {self.system!r}: stored cursor {cursor_name!r} = {stored!r} is not an integer "
                "(watermark_type = 'integer')"
            ) from None
        committed = stored
        watermark = since
        page = paging.first_page if isinstance(paging, PageNumberPaging) else 1
        token: str | None = None
        pages = records_total = 0
        complete = False
        while True:
            if pages >= pull.max_pages_per_run:
                ctx.log.warning(
                    "SOAP system %r operation %r: stopped after max_pages_per_run = %d pages; continuing next run",
                    self.system, operation, pull.max_pages_per_run,
                )
                break
            what = f"SOAP system {self.system!r} operation {operation!r} page {page}"
            cid = new_correlation_id()  # one per page request: its call, the records it brings, their log lines
            values = {
                "cursor": since,
                "page": page if isinstance(paging, PageNumberPaging) else None,
                "page_size": paging.page_size,
                "token": token,
                "correlation_id": cid,
            }
            try:
                query = render(pull.query, values) if pull.query else None
                arguments, headers = build_request(pull, values, query, what)
            except TemplateError as exc:
                raise PermanentError(str(exc)) from exc
            with correlation_scope(cid):
                response = await self._call(ctx, arguments, headers, about=f"page {page}")
            try:
                root = response_root(pull, response, what)
            except TemplateError as exc:
                raise RetryableError(str(exc)) from exc
            items = as_item_list(get_path(root, pull.items_path))

            batch: list[RawRecord] = []
            for index, item in enumerate(items, start=1):
                ref = f"operation {operation} page {page} item {index}"
                if isinstance(item, Mapping):
                    batch.append(RawRecord(system=ctx.system, payload=dict(item), ref=ref, correlation_id=cid))
                else:
                    batch.append(
                        RawRecord(
                            system=ctx.system,
                            payload={},
                            ref=ref,
                            error=f"item at {pull.items_path!r} is {type(item).__name__}, not a structure: {item!r:.200}",
                            correlation_id=cid,
                        )
                    )
                mark = self._watermark_of(item)
                if mark is not None and (watermark is None or mark > watermark):
                    watermark = mark

            more, next_token = self._continuation(root, items, token, what)
            cursor: tuple[str, str] | None = None
            may_commit = pull.items_sorted_by_watermark or not more
            if may_commit and watermark is not None and str(watermark) != committed:
                cursor = (cursor_name, str(watermark))
            if batch or cursor is not None:
                with correlation_scope(cid):
                    await ctx.ingest(batch, cursor=cursor)
                if cursor is not None:
                    committed = cursor[1]
            pages += 1
            records_total += len(batch)
            if not more:
                complete = True
                break
            if ctx.stopping.is_set():
                break
            page += 1
            token = next_token
        report = PullReport(pages, records_total, stored, committed, complete)
        ctx.log.info(
            "SOAP system %r operation %r: %d records in %d pages, cursor %s → %s%s",
            self.system, operation, report.records, report.pages, stored, committed,
            "" if complete else " (incomplete)",
        )
        return report

    def _continuation(
        self, root: Any, items: list[Any], token: str | None, what: str
    ) -> tuple[bool, str | None]:
        paging = self.config.pull.paging
        if isinstance(paging, PageNumberPaging):
            if not items:
                return False, None
            if paging.has_more_path is not None:
                return _truthy(get_path(root, paging.has_more_path)), None
            return len(items) >= paging.page_size, None
        if isinstance(paging, TokenPaging):
            next_token = get_path(root, paging.next_token_path)
            if next_token is None or str(next_token) == "":
                return False, None
            if str(next_token) == token:
                raise RetryableError(
                    f"{what}: the continuation token at {paging.next_token_path!r} did not change ({token!r}); "
                    "stopping this run rather than looping"
                )
            return True, str(next_token)
        return False, None

    async def _call(
        self, ctx: SourceContext, arguments: dict[str, Any], headers: dict[str, Any], *, about: str
    ) -> Any:
        attempts = self.config.pull.page_attempts
        for attempt in range(1, attempts + 1):
            try:
                return await self.endpoint.call(self.config.pull.operation, arguments, headers, about=about)
            except RetryableError as exc:
                if attempt == attempts or ctx.stopping.is_set():
                    raise
                delay = min(10.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                ctx.log.warning("%s (attempt %d of %d); retrying in %.1fs", exc, attempt, attempts, delay)
                if await _stopped_within(ctx.stopping, delay):
                    raise
            except DeliveryError:
                raise
        raise AssertionError("unreachable: the last attempt returns or raises")
