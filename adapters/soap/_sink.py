"""The push side: call a configured operation with a rendered delivery and read the counterpart's
verdict (status, message, remote id) from its response."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    RetryableError,
    correlation_scope,
)

from ._client import SoapEndpoint
from ._config import ReconcileSettings, ResendSettings, SoapSinkConfig
from ._request import build_request, response_root
from ._template import TemplateError, get_path, render


class SoapSink:
    """Delivers one record per SOAP call; see :class:`~gateway_adapters.soap.PushSettings`."""

    batch_size = 1  # one SOAP call carries one record

    def __init__(self, system: str, config: SoapSinkConfig) -> None:
        self.system = system
        self.config = config
        self.endpoint = SoapEndpoint(system, config)

    async def start(self) -> None:
        """Load the WSDL (once, in a thread) and check the operation exists."""
        await self.endpoint.start()
        try:
            self.endpoint.check_operation(self.config.push.operation)
        except Exception:
            await self.endpoint.close()
            raise

    async def close(self) -> None:
        await self.endpoint.close()

    async def deliver(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        results = []
        for delivery in deliveries:
            try:
                receipt = await self.deliver_one(delivery)
                results.append(DeliveryResult(delivery.delivery_id, receipt=receipt))
            except DeliveryError as exc:
                results.append(DeliveryResult(delivery.delivery_id, error=exc))
        return results

    async def deliver_one(self, delivery: Delivery) -> DeliveryReceipt:
        with correlation_scope(delivery.correlation_id):  # the call's HTTP header and log lines carry it
            return await self._deliver_one(delivery)

    async def _deliver_one(self, delivery: Delivery) -> DeliveryReceipt:
        push = self.config.push
        about = (
            f"delivery {delivery.delivery_id}: {delivery.kind} {delivery.record_key}, case {delivery.case_no}, "
            f"attempt {delivery.attempt}"
        )
        what = f"SOAP system {self.system!r} operation {push.operation!r} {about}"
        values = {
            "idempotency_key": delivery.idempotency_key,
            "delivery_id": delivery.delivery_id,
            "destination": delivery.destination,
            "kind": delivery.kind,
            "record_key": delivery.record_key,
            "case_no": delivery.case_no,
            "attempt": delivery.attempt,
            # for a SOAP header of the counterpart's envelope (soap_headers); the HTTP header carries it anyway
            "correlation_id": delivery.correlation_id,
        }
        try:
            arguments, headers = build_request(push, values, delivery.body, what)
        except TemplateError as exc:
            raise PermanentError(str(exc)) from exc
        response = await self.endpoint.call(push.operation, arguments, headers, about=about)
        try:
            root = response_root(push, response, what)
        except TemplateError as exc:
            # The counterpart answered but its verdict is unreadable: it may or may not have taken the record.
            raise RetryableError(str(exc)) from exc
        return self._receipt(delivery, root, what)

    def _receipt(self, delivery: Delivery, root: Any, what: str) -> DeliveryReceipt:
        push = self.config.push
        message = get_path(root, push.message_path) if push.message_path else None
        message_text = None if message is None else str(message)
        status_text = None
        if push.status_path is not None:
            status = get_path(root, push.status_path)
            status_text = None if status is None else str(status).strip()
            if status_text not in push.success_values:
                said = f" “{message_text}”" if message_text else ""
                text = (
                    f"{what}: the counterpart answered {push.status_path} = {status_text!r}{said} "
                    f"(success is {', '.join(repr(v) for v in push.success_values)})"
                )
                if status_text in push.retryable_status_values:
                    raise RetryableError(text)
                raise PermanentError(text)
        remote = get_path(root, push.remote_id_path) if push.remote_id_path else None
        detail_parts = []
        if status_text is not None:
            detail_parts.append(f"{push.status_path}={status_text}")
        if message_text:
            detail_parts.append(message_text)
        return DeliveryReceipt(
            delivery_id=delivery.delivery_id,
            remote_id=None if remote is None else str(remote),
            detail=" ".join(detail_parts) or None,
        )

    # ------------------------------------------------------------------ reconciliation (对账)

    async def reconcile_manifest(self, period: ReconcilePeriod) -> CounterpartManifest:
        """The counterpart's manifest of ``period`` through ``reconcile`` (gateway.adapters.Reconciler)."""
        settings = self.config.reconcile
        if settings is None:
            raise ManifestUnavailable(f"SOAP system {self.system!r}: reconciliation is not configured ([reconcile])")
        values = {"start": period.wide_start.isoformat(), "end": period.wide_end.isoformat(),
                  "counterpart": period.counterpart}
        root = await self._reconcile_call(settings, values, "reconciliation manifest")
        f = settings.fields
        received = None if settings.received_path is None else [
            ManifestEntry(key=str(_get(i, f.key)), digest=_text(_get(i, f.digest)), at=_text(_get(i, f.at)))
            for i in _items(root, settings.received_path) if _get(i, f.key)]
        sent = None if settings.sent_path is None else [
            ManifestEntry(key=str(_get(i, f.key)), kind=_text(_get(i, f.kind)), version=_int(_get(i, f.version)),
                          at=_text(_get(i, f.at)))
            for i in _items(root, settings.sent_path) if _get(i, f.key)]
        can_resend = settings.resend is not None
        if can_resend and settings.can_resend_path:
            can_resend = str(get_path(root, settings.can_resend_path)).strip().lower() in ("1", "true", "yes")
        return CounterpartManifest(received=received, sent=sent, can_resend=can_resend)

    async def request_resend(self, period: ReconcilePeriod, entries: Sequence[ManifestEntry]) -> int:
        settings = self.config.reconcile
        if settings is None or settings.resend is None:
            raise ManifestUnavailable(f"SOAP system {self.system!r}: the counterpart takes no resend requests "
                                      "(reconcile.resend)")
        f = settings.fields
        values = {"start": period.wide_start.isoformat(), "end": period.wide_end.isoformat(),
                  "counterpart": period.counterpart, "entries": [{f.kind: e.kind, f.key: e.key, f.version: e.version} for e in entries]}
        await self._reconcile_call(settings.resend, values, f"resend request for {len(entries)} records")
        return len(entries)

    async def _reconcile_call(self, settings: ReconcileSettings | ResendSettings, values: dict[str, Any],
                              about: str) -> Any:
        what = f"SOAP system {self.system!r} operation {settings.operation!r} ({about})"
        try:
            query = render(settings.query, values) if settings.query else None
            arguments, headers = build_request(settings, values, query, what)
        except TemplateError as exc:
            raise ManifestUnavailable(str(exc)) from exc
        try:
            response = await self.endpoint.call(settings.operation, arguments, headers, about=about)
            root = response_root(settings, response, what)
        except (DeliveryError, TemplateError) as exc:
            raise ManifestUnavailable(str(exc)) from exc
        if settings.status_path is not None:
            status = get_path(root, settings.status_path)
            text = None if status is None else str(status).strip()
            if text not in settings.success_values:
                message = get_path(root, settings.message_path) if settings.message_path else None
                raise ManifestUnavailable(f"{what}: the counterpart answered {settings.status_path} = {text!r}"
                                          + (f" “{message}”" if message else ""))
        return root


def _items(root: Any, path: str) -> list[Any]:
    found = get_path(root, path)
    if found is None:
        return []
    return found if isinstance(found, list) else [found]


def _get(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else None


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _int(value: Any) -> int | None:
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None

