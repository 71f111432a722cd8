"""The file-drop Sink: write each delivery as one file into an outgoing drop folder (for a 前置机).

Each file is written under a temporary name and renamed when complete, so the
receiving side never reads half a file; its name carries the delivery's idempotency
key, so a re-delivery rewrites the same file instead of adding a second one.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import re
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from gateway.adapters import (
    CounterpartManifest,
    Delivery,
    DeliveryReceipt,
    DeliveryResult,
    ManifestEntry,
    ManifestUnavailable,
    PermanentError,
    ReconcilePeriod,
    RetryableError,
)

from ._config import FiledropSinkConfig
from ._fs import write_atomic

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 150


def file_name(delivery: Delivery, extension: str) -> str:
    """``<idempotency key>.<extension>``, made safe for any file system.

    Characters outside ``A-Z a-z 0-9 . _ -`` become ``_``; when that (or shortening)
    changed the key, a hash of the original key is appended so two keys never share
    a name.
    """
    key = delivery.idempotency_key
    stem = _UNSAFE.sub("_", key).strip("._") or "delivery"
    if stem != key or len(stem) > _MAX_STEM:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
        stem = f"{stem[:_MAX_STEM]}-{digest}"
    return f"{stem}.{extension}"


def render(body: Any) -> bytes:
    """The file content: bytes as they are, text as UTF-8, anything else as UTF-8 JSON."""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


class FiledropSink:
    """Writes deliveries for destination ``destination`` into ``config.path``."""

    def __init__(self, destination: str, config: FiledropSinkConfig) -> None:
        self.destination = destination
        self.config = config
        self.path = Path(config.path)
        self.batch_size = config.batch_size

    async def start(self) -> None:
        await asyncio.to_thread(self.path.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    async def deliver(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        return await asyncio.to_thread(self._write_all, list(deliveries))

    def _write_all(self, deliveries: list[Delivery]) -> list[DeliveryResult]:
        return [self._write(delivery) for delivery in deliveries]

    def _write(self, delivery: Delivery) -> DeliveryResult:
        name = file_name(delivery, self.config.extension)
        target = self.path / name
        try:
            data = render(delivery.body)
        except (TypeError, ValueError) as exc:
            return DeliveryResult(
                delivery.delivery_id,
                error=PermanentError(
                    f"{self.destination}: delivery {delivery.delivery_id} ({delivery.kind} {delivery.record_key}) "
                    f"cannot be written as JSON: {exc}"
                ),
            )
        try:
            write_atomic(target, data, fsync=self.config.fsync)
            if self.config.marker:
                write_atomic(self.path / (name + self.config.marker_suffix), b"", fsync=self.config.fsync)
        except OSError as exc:
            # A full disk, a missing mount or a permission the operator can fix: try again later.
            # ENAMETOOLONG cannot get better by waiting.
            kind = PermanentError if exc.errno == errno.ENAMETOOLONG else RetryableError
            return DeliveryResult(
                delivery.delivery_id,
                error=kind(f"{self.destination}: cannot write {target}: {exc.strerror or exc}"),
            )
        return DeliveryResult(
            delivery.delivery_id,
            receipt=DeliveryReceipt(delivery.delivery_id, remote_id=name, detail=f"written to {target}"),
        )

    # ------------------------------------------------------------------ reconciliation (对账)

    async def reconcile_manifest(self, period: ReconcilePeriod) -> CounterpartManifest:
        """The front-end machine's manifests of every day the period touches, merged."""
        settings = self.config.reconcile
        if settings is None:
            raise ManifestUnavailable(f"{self.destination}: reconciliation is not configured (reconcile.manifests)")
        return await asyncio.to_thread(self._read_manifests, period, Path(settings.manifests), settings.can_resend)

    def _read_manifests(self, period: ReconcilePeriod, folder: Path, can_resend: bool) -> CounterpartManifest:
        received: list[ManifestEntry] = []
        sent: list[ManifestEntry] = []
        first, last = period.start.date(), (period.end - timedelta(microseconds=1)).date()
        day = period.wide_start.date()
        while day <= (period.wide_end - timedelta(microseconds=1)).date():
            path = folder / f"manifest-{day:%Y%m%d}.json"
            try:
                data = json.loads(path.read_bytes())
            except FileNotFoundError:
                if not first <= day <= last:  # a day only the margin touches: welcome, not required
                    day += timedelta(days=1)
                    continue
                raise ManifestUnavailable(f"{self.destination}: the front-end machine has not written {path} "
                                          "(yet)") from None
            except (OSError, ValueError) as exc:
                raise ManifestUnavailable(f"{self.destination}: cannot read {path}: {exc}") from exc
            manifest = CounterpartManifest.from_json(data, where=str(path))
            received.extend(manifest.received or [])
            sent.extend(manifest.sent or [])
            day += timedelta(days=1)
        return CounterpartManifest(received=received, sent=sent, can_resend=can_resend)

    async def request_resend(self, period: ReconcilePeriod, entries: Sequence[ManifestEntry]) -> int:
        settings = self.config.reconcile
        if settings is None or not settings.can_resend:
            raise ManifestUnavailable(f"{self.destination}: the front-end machine takes no resend requests")
        folder = Path(settings.requests or self.path)
        body = {"from": period.start.isoformat(), "to": period.end.isoformat(),
                "entries": [{"kind": e.kind, "key": e.key, "version": e.version} for e in entries]}
        name = f"resend-{time.strftime('%Y%m%d%H%M%S')}-{hashlib.sha256(render(body)).hexdigest()[:8]}.json"
        await asyncio.to_thread(write_atomic, folder / name, render(body), fsync=self.config.fsync)
        return len(entries)
