"""The adapter SDK: what a counterpart plugin implements and what the core gives it.

The core knows adapters only through this module. A plugin package registers an
:class:`Adapter` object under the ``gateway.adapters`` entry-point group; the core
finds it by name, validates its configuration with the adapter's pydantic model,
and asks it for a :class:`Source` (records in) and/or a :class:`Sink` (records out).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, ClassVar, Protocol, TypeVar, runtime_checkable

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo, model_validator

from gateway.durations import Duration, parse_duration, refuse_both_names, renamed
from gateway.records import FileIngestResult, FileUnreadable, IngestOutcome, RawRecord, StoreUnavailable

__all__ = [
    "API_VERSION", "Adapter", "AdapterConfig", "AdapterLoadError", "ConfigFacts", "ConfigPath", "CounterpartManifest",
    "Delivery", "DeliveryError", "DeliveryReceipt", "DeliveryResult", "Duration", "FileIngestResult", "FileUnreadable",
    "IngestOutcome", "ManifestEntry", "ManifestUnavailable", "PermanentError", "RawRecord", "ReconcilePeriod",
    "Reconciler", "RetryableError", "Sink", "Source", "SourceContext", "StoreUnavailable", "correlation_scope",
    "current_correlation_id", "discover", "manifest_digest", "new_correlation_id", "parse_duration", "renamed",
    "validate_config",
]

API_VERSION = 1
"""Bumped when the Source/Sink protocols change incompatibly."""

ENTRY_POINT_GROUP = "gateway.adapters"


# --------------------------------------------------------------------------- records in


def mask_personal_text(text: str) -> str:
    """``text`` with ID numbers (GB 11643, checked) and mobile numbers masked: for anything an adapter
    writes where people read it (error reports beside rejected files, log lines, audit details)."""
    from gateway.security.masking import mask_text

    return mask_text(text)


def new_correlation_id(seed: str | None = None) -> str:
    """A fresh correlation id, for a source that makes one per request, page or file.

    With ``seed`` the same id each time (a file resumed after a restart keeps the id it had).
    """
    from gateway.observability import correlation

    return correlation.new(seed)


def correlation_scope(correlation_id: str | None = None) -> AbstractContextManager[str]:
    """``with correlation_scope(cid):`` binds ``cid`` (a new one when None) to the running task.

    Records ingested inside without an id of their own get it, and every log line written
    inside carries it. A source opens one per request, page or file it handles.
    """
    from gateway.observability import correlation

    return correlation.scope(correlation_id)


def current_correlation_id() -> str | None:
    """The correlation id bound to the running task, if any."""
    from gateway.observability import correlation

    return correlation.current()


# --------------------------------------------------------------------------- records out


@dataclass(slots=True)
class Delivery:
    """One record rendered for one destination, ready to send."""

    delivery_id: int
    destination: str
    idempotency_key: str
    kind: str
    record_key: str
    case_no: str
    body: Any  # what the outbound mapping produced (a dict for JSON/SOAP, bytes for files)
    attempt: int
    correlation_id: str | None = None  # the record's: send it on (REST sends X-Correlation-Id), log it


@dataclass(slots=True)
class DeliveryReceipt:
    delivery_id: int
    remote_id: str | None = None
    detail: str | None = None


class DeliveryError(Exception):
    """Base for sink errors; ``detail`` is kept on the outbox row and in the audit trail."""

    retryable: ClassVar[bool] = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableError(DeliveryError):
    """The counterpart may accept this later: timeouts, 5xx, connection refused."""

    retryable = True


class PermanentError(DeliveryError):
    """The counterpart refuses this record as it is (4xx, a SOAP client fault): dead-letter it."""

    retryable = False


@dataclass(slots=True)
class DeliveryResult:
    """The sink's word on one delivery of a batch: a receipt or an error."""

    delivery_id: int
    receipt: DeliveryReceipt | None = None
    error: DeliveryError | None = None


# --------------------------------------------------------------------------- reconciliation (optional)


@dataclass(frozen=True, slots=True)
class ReconcilePeriod:
    """The period a reconciliation (对账) compares: ``start`` inclusive, ``end`` exclusive, China time.

    A record within ``margin`` seconds outside it may have been counted on the other side of the
    edge by the counterpart's clock: ask for ``wide_start``…``wide_end`` where that is cheap.
    """

    counterpart: str
    start: datetime
    end: datetime
    margin: float = 0.0

    @property
    def wide_start(self) -> datetime:
        return self.start - timedelta(seconds=self.margin)

    @property
    def wide_end(self) -> datetime:
        return self.end + timedelta(seconds=self.margin)


@dataclass(slots=True)
class ManifestEntry:
    """One line of a counterpart's manifest.

    What it *received* from the gateway is named by the delivery's idempotency key, with
    :func:`manifest_digest` of the body it got. What it *sent* is named in the gateway's
    own terms — the record kind, the business key and the version its push receipts give
    back (``IngestOutcome.kind`` / ``record_key``) — so both sides speak of the same thing.
    """

    key: str
    digest: str | None = None
    at: str | None = None  # when it happened (ISO 8601)
    kind: str | None = None  # sent entries
    version: int | None = None  # sent entries


@dataclass(slots=True)
class CounterpartManifest:
    """What a counterpart says it received from and sent to the gateway in a period (None: it cannot say)."""

    received: list[ManifestEntry] | None = None
    sent: list[ManifestEntry] | None = None
    can_resend: bool = False  # it can be asked to send again what it sent and the gateway lacks

    @classmethod
    def from_json(cls, data: Any, *, where: str = "manifest") -> CounterpartManifest:
        """The gateway's JSON manifest contract (docs/exchange.md)::

            {"received": [{"key": "<idempotency key>", "digest": "sha256:…", "at": "2026-11-29T10:00:00+08:00"}],
             "sent": [{"kind": "supervision_result", "key": "<business key>", "version": 1, "at": "…"}],
             "can_resend": true}

        Raises :class:`ManifestUnavailable` naming what is wrong with it.
        """
        if not isinstance(data, Mapping):
            raise ManifestUnavailable(f"{where}: expected a JSON object, got {type(data).__name__}")

        def entries(name: str) -> list[ManifestEntry] | None:
            items = data.get(name)
            if items is None:
                return None
            if not isinstance(items, list):
                raise ManifestUnavailable(f"{where}: {name!r} is not a list")
            out = []
            for i, item in enumerate(items):
                if not isinstance(item, Mapping) or not isinstance(item.get("key"), str) or not item["key"]:
                    raise ManifestUnavailable(f"{where}: {name}[{i}] has no key")
                version = item.get("version")
                try:
                    version = None if version in (None, "") else int(version)
                except (TypeError, ValueError):
                    raise ManifestUnavailable(f"{where}: {name}[{i}].version {version!r} is not a whole number") from None
                out.append(ManifestEntry(key=item["key"], digest=_opt(item.get("digest")), at=_opt(item.get("at")),
                                         kind=_opt(item.get("kind")), version=version))
            return out

        return cls(received=entries("received"), sent=entries("sent"), can_resend=bool(data.get("can_resend")))

    def as_json(self) -> dict[str, Any]:
        def dump(items: list[ManifestEntry] | None) -> list[dict[str, Any]] | None:
            if items is None:
                return None
            return [{k: v for k, v in (("key", e.key), ("digest", e.digest), ("at", e.at), ("kind", e.kind),
                                       ("version", e.version)) if v is not None} for e in items]

        return {"received": dump(self.received), "sent": dump(self.sent), "can_resend": self.can_resend}


def _opt(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


class ManifestUnavailable(Exception):
    """The counterpart could not give its manifest now (down, refusing, not yet written): try later."""


def manifest_digest(body: Any) -> str:
    """The digest both sides compute of a delivered body: "sha256:" + hex.

    Bytes as they are; text as UTF-8; a structure as canonical JSON (keys sorted, no spaces,
    UTF-8 unescaped) — the form the file-drop sink writes and a JSON receiver can rebuild.
    """
    import hashlib
    import json

    if isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body)
    elif isinstance(body, str):
        data = body.encode("utf-8")
    else:
        data = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return "sha256:" + hashlib.sha256(data).hexdigest()


@runtime_checkable
class Reconciler(Protocol):
    """Optional on a Sink: reconciliation with the counterpart it delivers to.

    ``reconcile_manifest`` asks the counterpart for its manifest of a period (raise
    :class:`ManifestUnavailable` when it cannot answer now); ``request_resend`` asks it to
    send again what it sent and the gateway lacks, returning how many it agreed to resend.
    """

    async def reconcile_manifest(self, period: ReconcilePeriod) -> CounterpartManifest: ...

    async def request_resend(self, period: ReconcilePeriod, entries: Sequence[ManifestEntry]) -> int: ...


# --------------------------------------------------------------------------- context


class SourceContext(Protocol):
    """What the core gives a running Source."""

    system: str
    data_dir: Path
    log: logging.Logger
    stopping: asyncio.Event

    async def ingest(
        self, records: Sequence[RawRecord], *, cursor: tuple[str, str] | None = None
    ) -> list[IngestOutcome]:
        """Map, validate, dedupe and commit ``records`` in one transaction.

        Returns only after commit. ``cursor`` (name, value) is stored in the same
        transaction, so a pull source's watermark never runs ahead of its records.
        """
        ...

    async def ingest_file(self, path: Path, *, ref_prefix: str, cursor: str, batch: int = 2000) -> FileIngestResult:
        """Read a whole file with the mapping's input options and commit it batch by batch.

        Resumes after the items the ``cursor`` says were committed; each batch commits
        with the new cursor value. A large file is read and mapped in a helper process
        while this one commits. Raises FileUnreadable for the file's own faults; any
        other exception is the gateway's (the store), and the file should be retried.
        """
        ...

    async def get_cursor(self, name: str) -> str | None: ...

    async def audit(self, action: str, detail: Mapping[str, Any]) -> None:
        """Record a source-level event (a file claimed, done or rejected) in the audit trail."""
        ...

    def input_options(self) -> Mapping[str, Any]:
        """The inbound mapping's ``input`` block (format, encoding, record element …), with the
        source's own overrides from gateway.toml (``[sources.NAME] input = {…}``) laid over it."""
        ...


@runtime_checkable
class Source(Protocol):
    async def run(self, ctx: SourceContext) -> None:
        """Run until ``ctx.stopping`` is set; acknowledge upstream only after ``ctx.ingest`` returns."""
        ...


@runtime_checkable
class Sink(Protocol):
    """Sends rendered records to one counterpart.

    Optional: a ``probe`` attribute holding ``async () -> None`` (or None). When a destination's
    circuit is open the delivery worker calls it instead of sending a delivery: returning means the
    counterpart is back, a retryable DeliveryError (or any exception) that it is not.
    """

    batch_size: int  # >1 when the counterpart accepts arrays

    async def start(self) -> None: ...

    async def deliver(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        """Send; return one result per delivery. Raising a DeliveryError fails the whole batch."""
        ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- plugin object


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    if base is not None and not value.is_absolute():
        return Path(base) / value
    return value


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
"""A path in adapter configuration; relative ones resolve against the folder of gateway.toml."""


@dataclass(frozen=True, slots=True)
class ConfigFacts:
    """What ``gateway check`` verifies about one configured source or sink without running it.

    Each entry names the setting it comes from, so a problem can say where to fix it.
    """

    cursors: tuple[str, ...] = ()  # store cursor names the source writes; two sources must not share one
    folders: tuple[tuple[str, Path], ...] = ()  # (setting, folder) that must exist
    files: tuple[tuple[str, Path], ...] = ()  # (setting, file) that must exist
    problems: tuple[str, ...] = ()  # anything else found wrong, as "setting: what is wrong"


class AdapterConfig(BaseModel):
    """Base for adapter configuration models: unknown keys are errors, not silence.

    Durations are declared as :data:`Duration` ("30s", "5m"); a renamed key keeps its
    old name working through :func:`renamed` (``gateway check`` warns about the old one).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _one_name(cls, data: Any) -> Any:
        return refuse_both_names(cls, data)

    def facts(self, system: str) -> ConfigFacts:
        """Cursors, folders and files of this source or sink for ``gateway check``; override to declare them."""
        return ConfigFacts()


C = TypeVar("C", bound=AdapterConfig)


def validate_config(model: type[C], options: Mapping[str, Any], base_dir: Path) -> C:
    """Validate adapter options the way the core does (paths resolved against ``base_dir``)."""
    return model.model_validate(dict(options), context={"base_dir": base_dir})


@dataclass(frozen=True)
class Adapter:
    """What a plugin registers under the ``gateway.adapters`` entry-point group."""

    name: str
    version: str
    description: str
    source_config: type[AdapterConfig] | None = None
    sink_config: type[AdapterConfig] | None = None
    make_source: Callable[[str, Any], Source] | None = None  # (system, config) -> Source
    make_sink: Callable[[str, Any], Sink] | None = None  # (system, config) -> Sink
    api_version: int = API_VERSION


class AdapterLoadError(Exception):
    pass


def discover(allow: Sequence[str] | None = None) -> dict[str, Adapter]:
    """Installed adapters by name, filtered by the allow-list when one is given."""
    found: dict[str, Adapter] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if allow is not None and ep.name not in allow:
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not take the gateway down
            raise AdapterLoadError(f"adapter {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        if not isinstance(obj, Adapter):
            raise AdapterLoadError(f"adapter {ep.name!r} ({ep.value}) is not a gateway.adapters.Adapter")
        if obj.api_version != API_VERSION:
            raise AdapterLoadError(
                f"adapter {ep.name!r} speaks SDK api_version {obj.api_version}, this gateway speaks {API_VERSION}"
            )
        found[ep.name] = obj
    return found
