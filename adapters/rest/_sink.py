"""The REST sink: POST rendered records as JSON to a counterpart and classify its answer.

Classification (the delivery worker acts on it): 2xx is a receipt; the configured retryable
statuses, other 5xx and every failure below HTTP are :class:`RestRetryableError`; other 4xx
and 3xx are :class:`PermanentError` (the counterpart refuses this record as it is).
``deliver`` never raises for an HTTP outcome: it returns one result per delivery.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from gateway.adapters import (
    CounterpartManifest,
    Delivery,
    DeliveryError,
    DeliveryReceipt,
    DeliveryResult,
    ManifestEntry,
    ManifestUnavailable,
    PermanentError,
    ReconcilePeriod,
)

from ._auth import make_signer
from ._config import RestSinkConfig
from ._http import (
    TRANSPORT_ERRORS,
    RestRetryableError,
    describe_transport_error,
    make_session,
    parse_retry_after,
    trim_body,
)
from ._paths import MISSING, compile_path, resolve

log = logging.getLogger("gateway_adapters.rest.sink")
# A batch of records from many requests still sends one header of reasonable size (64 ids ≈ 2 KB).
MAX_BATCH_CORRELATION_IDS = 64


def _json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON; Chinese names stay readable on the wire and in the counterpart's logs.

    orjson writes what ``json.dumps(ensure_ascii=False, separators=(",", ":"))`` writes for the
    values mappings produce, several times faster (a batch of 50 bodies per POST); anything it
    refuses (integers beyond 64 bits, keys that are not strings) goes through the standard library.
    """
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _correlation_list(batch: Sequence[Delivery]) -> str:
    """The distinct correlation ids of a batch's records in array order, at most ``MAX_BATCH_CORRELATION_IDS``."""
    ids = list(dict.fromkeys(d.correlation_id for d in batch if d.correlation_id))
    return ", ".join(ids[:MAX_BATCH_CORRELATION_IDS])


def _key_list(keys: Sequence[str]) -> str:
    """Batch keys as one header, in array order; ',' and '%' inside a key are percent-encoded."""
    return ", ".join(key.replace("%", "%25").replace(",", "%2C") for key in keys)


class RestSink:
    """Sends deliveries for one destination over one pooled aiohttp session."""

    def __init__(self, destination: str, config: RestSinkConfig) -> None:
        self.destination = destination
        self.config = config
        self.batch_size = config.batch_size
        self._owner = f"REST sink {destination!r}"
        self._session: aiohttp.ClientSession | None = None
        self._signer = make_signer(None, owner=self._owner)
        self._remote_id = compile_path(config.remote_id_path) if config.remote_id_path else None
        shape = config.batch_results
        self._items_path = compile_path(shape.items_path)
        t = config.timeouts
        self._timeouts = (t.connect, t.read, t.total)
        # The optional health request the delivery worker probes with behind an open circuit;
        # without health_url it probes with one delivery.
        self.probe = self._probe if config.health_url else None

    async def start(self) -> None:
        """Read secrets and certificates now, so a missing one stops start-up with a clear message."""
        self._signer = make_signer(self.config.auth, owner=self._owner)
        self._session = make_session(self.config, owner=self._owner)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        if self._session is None:
            raise RuntimeError(f"{self._owner}: deliver() called before start() or after close()")
        if not deliveries:
            return []
        groups: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            groups.setdefault(self._url_for(delivery), []).append(delivery)
        if self.batch_size == 1:
            sends = [self._send_one(url, d) for url, group in groups.items() for d in group]
        else:
            sends = [
                self._send_batch(url, group[i : i + self.batch_size])
                for url, group in groups.items()
                for i in range(0, len(group), self.batch_size)
            ]
        results: dict[int, DeliveryResult] = {}
        for chunk in await asyncio.gather(*sends):
            for result in chunk:
                results[result.delivery_id] = result
        return [results[d.delivery_id] for d in deliveries]

    # ------------------------------------------------------------------ one record

    async def _send_one(self, url: str, delivery: Delivery) -> list[DeliveryResult]:
        what = f"delivery {delivery.delivery_id} ({delivery.kind} {delivery.record_key}, case {delivery.case_no})"
        try:
            body, content_type = self._encode(delivery.body)
        except (TypeError, ValueError) as exc:
            return [self._fail(delivery, PermanentError(f"{self._owner}: {what}: body is not JSON: {exc}"))]
        reference = f"{self.destination}:{delivery.delivery_id}:{delivery.attempt}"
        headers = {
            "Content-Type": content_type,
            self.config.idempotency_header: delivery.idempotency_key,
            # Records stored before correlation ids existed are named by the delivery itself.
            self.config.correlation_header: delivery.correlation_id or reference,
            self.config.delivery_header: reference,
        }
        outcome = await self._exchange(url, body, headers, what)
        if isinstance(outcome, DeliveryError):
            return [self._fail(delivery, outcome)]
        status, payload = outcome
        remote_id = self._extract_remote_id(payload)
        detail = "HTTP 409: already received by the counterpart" if status == 409 else f"HTTP {status}"
        return [DeliveryResult(delivery.delivery_id, receipt=DeliveryReceipt(delivery.delivery_id, remote_id, detail))]

    # ------------------------------------------------------------------ many records

    async def _send_batch(self, url: str, batch: Sequence[Delivery]) -> list[DeliveryResult]:
        first, last = batch[0].delivery_id, batch[-1].delivery_id
        what = f"batch of {len(batch)} deliveries {first}..{last}"
        encodable: list[Delivery] = []
        results: list[DeliveryResult] = []
        for delivery in batch:
            if isinstance(delivery.body, bytes | str):
                results.append(self._fail(delivery, PermanentError(
                    f"{self._owner}: delivery {delivery.delivery_id} ({delivery.kind} {delivery.record_key}): "
                    "batch_size > 1 sends a JSON array, but the outbound mapping rendered raw text or bytes"
                )))
            else:
                encodable.append(delivery)
        if not encodable:
            return results
        try:
            body = _json_bytes([d.body for d in encodable])
        except (TypeError, ValueError) as exc:
            error = PermanentError(f"{self._owner}: {what}: a body is not JSON: {exc}")
            return results + [self._fail(d, error) for d in encodable]
        reference = f"{self.destination}:{first}+{len(batch) - 1}:{batch[0].attempt}"
        headers = {
            "Content-Type": self.config.content_type,
            self.config.idempotency_header: _key_list([d.idempotency_key for d in encodable]),
            self.config.correlation_header: _correlation_list(encodable) or reference,
            self.config.delivery_header: reference,
        }
        outcome = await self._exchange(url, body, headers, what)
        if isinstance(outcome, DeliveryError):
            return results + [self._fail(d, outcome) for d in encodable]
        _, payload = outcome
        return results + self._per_item(url, encodable, payload, what)

    def _per_item(
        self, url: str, batch: Sequence[Delivery], payload: Any, what: str
    ) -> list[DeliveryResult]:
        shape = self.config.batch_results
        items = resolve(payload, self._items_path)
        if not isinstance(items, list) or len(items) != len(batch) or not all(isinstance(i, dict) for i in items):
            found = f"{len(items)} items" if isinstance(items, list) else ("nothing" if items is MISSING else type(items).__name__)
            # The records may or may not have arrived; a retry is safe because every item carries its key.
            error = RestRetryableError(
                f"{self._owner}: {what}: {url} answered 2xx but the per-item results at "
                f"{shape.items_path or 'the response root'!r} hold {found}, expected {len(batch)} objects"
            )
            return [self._fail(d, error) for d in batch]
        results = []
        for delivery, item in zip(batch, items, strict=True):
            status = str(item.get(shape.status_field, ""))
            remote = item.get(shape.id_field)
            remote_id = None if remote is None else str(remote)
            record = f"delivery {delivery.delivery_id} ({delivery.kind} {delivery.record_key}, case {delivery.case_no})"
            if status in shape.ok_values:
                receipt = DeliveryReceipt(delivery.delivery_id, remote_id, f"batch item {status}")
                results.append(DeliveryResult(delivery.delivery_id, receipt=receipt))
                continue
            reason = trim_body(_json_bytes(item.get(shape.error_field, item)), self.config.error_body_chars)
            message = f"{self._owner}: {url} answered {shape.status_field}={status!r} for {record}: {reason}"
            if status in shape.retry_values:
                results.append(self._fail(delivery, RestRetryableError(message)))
            else:
                results.append(self._fail(delivery, PermanentError(message)))
        return results

    async def _probe(self) -> None:
        """GET health_url; returns when it answers 2xx, raises RestRetryableError otherwise."""
        if self._session is None:
            raise RuntimeError(f"{self._owner}: probe() called before start() or after close()")
        url = str(self.config.health_url)
        target = URL(url)
        headers = dict(self._signer("GET", target.raw_path_qs, b""))
        try:
            async with self._session.get(target, headers=headers, allow_redirects=False) as response:
                status = response.status
                raw = await response.read()
        except TRANSPORT_ERRORS as exc:
            reason = describe_transport_error(exc, self._timeouts, https=target.scheme == "https")
            raise RestRetryableError(f"{self._owner}: health request: GET {url}: {reason}") from None
        if not 200 <= status < 300:
            text = trim_body(raw, self.config.error_body_chars)
            raise RestRetryableError(f"{self._owner}: health request: GET {url} answered {status}: {text}",
                                     status=status)

    # ------------------------------------------------------------------ reconciliation (对账)

    async def reconcile_manifest(self, period: ReconcilePeriod) -> CounterpartManifest:
        """The counterpart's manifest of ``period`` from ``reconcile.url`` (gateway.adapters.Reconciler)."""
        settings = self.config.reconcile
        if settings is None:
            raise ManifestUnavailable(f"{self._owner}: reconciliation is not configured (set reconcile.url)")
        body = _json_bytes({"from": period.wide_start.isoformat(), "to": period.wide_end.isoformat(),
                            "counterpart": period.counterpart})
        payload = await self._call(settings.url, body, "reconciliation manifest")
        return CounterpartManifest.from_json(payload, where=f"{self._owner}: {settings.url}")

    async def request_resend(self, period: ReconcilePeriod, entries: Sequence[ManifestEntry]) -> int:
        settings = self.config.reconcile
        if settings is None or settings.resend_url is None:
            raise ManifestUnavailable(f"{self._owner}: the counterpart takes no resend requests (reconcile.resend_url)")
        body = _json_bytes({"from": period.wide_start.isoformat(), "to": period.wide_end.isoformat(),
                            "entries": [{"kind": e.kind, "key": e.key, "version": e.version} for e in entries]})
        payload = await self._call(settings.resend_url, body, f"resend request for {len(entries)} records")
        requested = payload.get("requested") if isinstance(payload, dict) else None
        return int(requested) if isinstance(requested, int) else len(entries)

    async def _call(self, url: str, body: bytes, what: str) -> Any:
        if self._session is None:
            raise ManifestUnavailable(f"{self._owner}: not started")
        outcome = await self._exchange(url, body, {"Content-Type": "application/json; charset=utf-8"}, what,
                                       method="POST")
        if isinstance(outcome, DeliveryError):
            raise ManifestUnavailable(str(outcome))
        return outcome[1]

    # ------------------------------------------------------------------ the wire

    async def _exchange(
        self, url: str, body: bytes, headers: dict[str, str], what: str, *, method: str | None = None
    ) -> tuple[int, Any] | DeliveryError:
        """One HTTP request: (status, parsed JSON or None) for a success, or the classified error."""
        assert self._session is not None
        target = URL(url)
        method = method or self.config.method
        headers.update(self._signer(method, target.raw_path_qs, body))
        try:
            async with self._session.request(
                method, target, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                raw = await response.read()
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                location = response.headers.get("Location")
        except TRANSPORT_ERRORS as exc:
            reason = describe_transport_error(exc, self._timeouts, https=target.scheme == "https")
            return RestRetryableError(f"{self._owner}: {what}: {method} {url}: {reason}")
        if 200 <= status < 300 or (status == 409 and self.config.conflict_is_success):
            try:
                return status, json.loads(raw) if raw else None
            except ValueError:
                return status, None
        text = trim_body(raw, self.config.error_body_chars)
        message = f"{self._owner}: {what}: {method} {url} answered {status}: {text}"
        if status in self.config.retryable_statuses or status >= 500:
            if retry_after is not None:
                message += f" (Retry-After {retry_after:g}s)"
            return RestRetryableError(message, status=status, retry_after=retry_after)
        if status in (401, 403):
            message += " — check the credentials configured under auth for this destination"
        elif 300 <= status < 400:
            message += f" — redirected to {location}; configure the final URL"
        return PermanentError(message, status=status)

    def _encode(self, body: Any) -> tuple[bytes, str]:
        if isinstance(body, bytes):
            return body, self.config.content_type
        if isinstance(body, str):
            return body.encode("utf-8"), self.config.content_type
        return _json_bytes(body), self.config.content_type

    def _url_for(self, delivery: Delivery) -> str:
        if "{kind}" not in self.config.url:
            return self.config.url
        return self.config.url.replace("{kind}", quote(delivery.kind, safe=""))

    def _extract_remote_id(self, payload: Any) -> str | None:
        if self._remote_id is None or payload is None:
            return None
        value = resolve(payload, self._remote_id)
        return None if value is MISSING or value is None else str(value)

    def _fail(self, delivery: Delivery, error: DeliveryError) -> DeliveryResult:
        log.debug("%s", error, extra={"delivery_id": delivery.delivery_id, "retryable": error.retryable})
        return DeliveryResult(delivery.delivery_id, error=error)
