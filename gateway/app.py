"""Wiring and lifecycle: build the gateway from its configuration, start it, drain it, stop it.

The core meets plugins only here, through ``gateway.adapters.discover`` and the
Source/Sink protocols; it never imports an adapter module.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.adapters import (
    Adapter,
    AdapterLoadError,
    FileIngestResult,
    IngestOutcome,
    RawRecord,
    Sink,
    Source,
    StoreUnavailable,
    discover,
    validate_config,
)
from gateway.config import ConfigError, GatewayConfig
from gateway.pipeline.delivery import DestinationWorker, policy_for
from gateway.pipeline.delivery_metrics import DeliveryMetrics
from gateway.pipeline.elected import while_leading
from gateway.pipeline.handoff import Handoff
from gateway.pipeline.ingest import Ingestor
from gateway.pipeline.router import Router
from gateway.store import STORE_FAILURES, Store, StoreError, make_store

log = logging.getLogger("gateway")


__all__ = ["STORE_FAILURES", "Gateway", "StartupError", "build"]  # STORE_FAILURES: gateway.store's, re-exported


class StartupError(Exception):
    """Parts of the gateway could not start; the message names each part and says why."""


def _why(exc: BaseException) -> str:
    """An exception as words: its message, with its type where the message alone says little."""
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror:  # without the "[Errno N]" prefix
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    if isinstance(exc, OSError | ValueError | RuntimeError | StartupError | ConfigError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class SystemContext:
    """The SourceContext the core gives each running source."""

    def __init__(self, system: str, data_dir: Path, ingestor: Ingestor, store: Store, stopping: asyncio.Event,
                 input_options: Mapping[str, Any]) -> None:
        self.system = system
        self.data_dir = data_dir
        self.log = logging.getLogger(f"gateway.source.{system}")
        self.stopping = stopping
        self._ingestor = ingestor
        self._store = store
        self._input = dict(input_options)

    async def ingest(self, records: Sequence[RawRecord], *, cursor: tuple[str, str] | None = None) -> list[IngestOutcome]:
        try:
            return await self._ingestor.ingest(self.system, records, cursor)
        except STORE_FAILURES as exc:
            raise StoreUnavailable(f"the store could not commit ({_why(exc)}); nothing was committed") from exc

    async def ingest_file(self, path: Path, *, ref_prefix: str, cursor: str, batch: int = 2000) -> FileIngestResult:
        from gateway.pipeline.fileingest import ingest_file

        try:
            stored = await self._store.get_cursor(cursor)
            return await ingest_file(self._ingestor, self.system, path, ref_prefix=ref_prefix, cursor=cursor,
                                     skip=int(stored) if stored else 0, batch=batch, stopping=self.stopping)
        except STORE_FAILURES as exc:
            raise StoreUnavailable(f"the store could not commit ({_why(exc)}); the file resumes from its "
                                   "last committed batch") from exc

    async def get_cursor(self, name: str) -> str | None:
        return await self._store.get_cursor(name)

    async def audit(self, action: str, detail: Mapping[str, Any]) -> None:
        await self._store.audit_event(action, system=self.system, detail=dict(detail))

    def input_options(self) -> Mapping[str, Any]:
        return self._input


@dataclass
class Components:
    """Everything built from the configuration, before anything runs."""

    config: GatewayConfig
    adapters: dict[str, Adapter]
    inbound: dict[str, Any] = field(default_factory=dict)  # system -> InboundMapping
    outbound: dict[str, Any] = field(default_factory=dict)  # destination -> OutboundMapping
    source_configs: dict[str, Any] = field(default_factory=dict)
    sink_configs: dict[str, Any] = field(default_factory=dict)
    router: Router | None = None
    supervision: Any = None  # SupervisionEngine, when [supervision].enabled
    cipher: Any = None  # gateway.security.fieldcrypt.FieldCipher, when [encryption].enabled


def build(config: GatewayConfig) -> Components:
    """Load adapters, validate their configs, compile mappings; raise ConfigError listing every problem."""
    from gateway.checks import cursor_collisions
    from gateway.mapping import MappingError, OverrideError, load_mapping
    from gateway.schema import KINDS

    problems: list[str] = []
    try:
        adapters = discover(config.gateway.adapters)
    except AdapterLoadError as exc:
        raise ConfigError(config.path or "<config>", [str(exc)]) from None
    comp = Components(config=config, adapters=adapters, router=Router.from_config(config.routes))

    def adapter_for(section: str, name: str, adapter_name: str, role: str) -> Adapter | None:
        adapter = adapters.get(adapter_name)
        if adapter is None:
            allowed = "" if config.gateway.adapters is None else " or not in [gateway].adapters"
            problems.append(f"{section}.{name}: adapter {adapter_name!r} is not installed{allowed} "
                            f"(installed: {', '.join(sorted(adapters)) or 'none'})")
            return None
        if (role == "source" and adapter.make_source is None) or (role == "sink" and adapter.make_sink is None):
            problems.append(f"{section}.{name}: adapter {adapter_name!r} cannot act as a {role}")
            return None
        return adapter

    def validate(section: str, name: str, model: type | None, options: dict[str, Any]) -> Any:
        if model is None:
            return options
        try:
            return validate_config(model, options, config.base_dir)
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                problems.append(f"{section}.{name}.{where}: {err['msg'].removeprefix('Value error, ')}")
            return None

    def mapping(section: str, name: str, rel: str, direction: str) -> Any:
        path = config.resolve(rel)
        try:
            m = load_mapping(path)
        except MappingError as exc:
            problems.append(f"{section}.{name}.mapping: {exc}")
            return None
        except OSError as exc:
            problems.append(f"{section}.{name}.mapping: cannot read {path}: {exc.strerror or exc}")
            return None
        if m.direction != direction:
            problems.append(f"{section}.{name}.mapping: {path} is an {m.direction} mapping; {direction} is needed here")
            return None
        return m

    for name, src in config.sources.items():
        if not src.enabled:
            continue
        adapter = adapter_for("sources", name, src.adapter, "source")
        if adapter is not None:
            comp.source_configs[name] = validate("sources", name, adapter.source_config, src.adapter_options())
        m = mapping("sources", name, src.mapping, "inbound")
        if m is not None:
            try:  # the source's own reader options and on_invalid, laid over the mapping's
                comp.inbound[name] = m.for_source(input=src.input, on_invalid=src.on_invalid)
            except OverrideError as exc:
                problems.extend(f"sources.{name}.{problem}" for problem in exc.problems)
    for name, sink in config.sinks.items():
        if not sink.enabled:
            continue
        adapter = adapter_for("sinks", name, sink.adapter, "sink")
        if adapter is not None:
            comp.sink_configs[name] = validate("sinks", name, adapter.sink_config, sink.adapter_options())
        m = mapping("sinks", name, sink.mapping, "outbound")
        if m is not None:
            comp.outbound[name] = m
    from gateway.schema import code_tables

    tables = code_tables()
    for i, route in enumerate(config.routes):
        for setting, table in (("item_types", "item_type"), ("license_categories", "license_category")):
            unknown = [c for c in getattr(route, setting) or () if c not in tables[table].codes]
            if unknown:
                problems.append(f"routes[{i}] ({route.name}).{setting}: {', '.join(map(repr, unknown))} not in code "
                                f"table {table} (codes: {', '.join(tables[table].codes)})")
        for kind in route.kinds or ():
            if kind not in KINDS:
                problems.append(f"routes[{i}] ({route.name}): unknown record kind {kind!r} "
                                f"(known: {', '.join(KINDS)})")
        for dest in route.to:
            out = comp.outbound.get(dest)
            if out is None:
                continue
            kinds = route.kinds or list(KINDS)
            uncovered = [k for k in kinds if k in KINDS and k not in out.kinds]
            if route.kinds and uncovered:
                problems.append(f"routes[{i}] ({route.name}): sink {dest!r} mapping {out.path} has no output for "
                                f"kind(s) {', '.join(uncovered)}")
    for dest in config.audit.witness_destinations:
        out = comp.outbound.get(dest)
        if out is not None and "audit_seal" not in out.kinds:
            problems.append(f"audit.witness_destinations: sink {dest!r} mapping {out.path} has no output for kind "
                            "audit_seal")
    from gateway.exchange.config import exchange_problems

    problems.extend(exchange_problems(config, comp.outbound))
    if config.supervision.enabled:
        comp.supervision = _supervision_engine(config, problems)
    from gateway.security.checks import counterpart_problems
    from gateway.security.fieldcrypt import FieldCryptError, cipher_from_config

    problems.extend(counterpart_problems(config, comp))
    try:
        comp.cipher = cipher_from_config(config)
    except FieldCryptError as exc:
        problems.append(f"encryption: {exc}")
    problems.extend(cursor_collisions(comp))
    if problems:
        raise ConfigError(config.path or "<config>", problems)
    return comp


def _supervision_engine(config: GatewayConfig, problems: list[str]) -> Any:
    from gateway.supervision import CalendarError, SupervisionConfig, SupervisionEngine, WorkCalendar

    sup = config.supervision
    try:
        rules = SupervisionConfig.model_validate(sup.rules)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(f"supervision.rules.{'.'.join(map(str, err['loc']))}: {err['msg']}")
        return None
    override = config.resolve(sup.calendar_override) if sup.calendar_override else None
    try:
        calendar = WorkCalendar.default(override_path=override)
    except (CalendarError, OSError) as exc:
        problems.append(f"supervision.calendar_override: {exc}")
        return None
    return SupervisionEngine(rules, calendar)


def config_digest(config: GatewayConfig) -> str:
    raw = config.path.read_bytes() if config.path and config.path.exists() else config.model_dump_json().encode()
    return hashlib.sha256(raw).hexdigest()


class Gateway:
    """A running gateway: store, ingestor, sources, delivery workers (and later API, sealer, supervision)."""

    def __init__(self, config: GatewayConfig, *, run_sources: bool = True, run_delivery: bool = True) -> None:
        self.config = config
        self.run_sources = run_sources
        self.run_delivery = run_delivery
        self.components: Components | None = None
        self.store: Store | None = None
        self.ingestor: Ingestor | None = None
        self.handoff: Handoff | None = None  # new deliveries claimed at birth, handed to the workers in memory
        self.sinks: dict[str, Sink] = {}
        self.sources: dict[str, Source] = {}
        self.workers: dict[str, DestinationWorker] = {}
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._delivery_locked = False
        self.api: Any = None  # the running HTTP API (gateway.api.server), when enabled
        self.supervision: Any = None  # the SupervisionFollower, when enabled
        self.sealer: Any = None  # the audit Sealer, when sealing is on
        self.alerts: Any = None  # GatewayAlerts: alerts and audit seals the gateway itself originates
        self.delivery_metrics = DeliveryMetrics()  # per destination; /metrics appends it
        self.exchange: Any = None  # gateway.exchange.service.ExchangeService, when [exchange].enabled
        self.contacts: Any = None  # gateway.exchange.watchdogs.ContactBook: when each counterpart was last heard
        self.refusals: Any = None  # gateway.security.refusals.RefusalLog of the push API, when it runs
        self.push_workers: Any = None  # gateway.api.push_workers.PushWorkers, when [api] push_workers > 0
        self.started = False  # every part started; the API answers 503 until then
        self._store_open = False
        from gateway.observability.metrics import GatewayMetrics, StoreFigures

        self.metrics = GatewayMetrics(config.gateway.name)  # what /metrics shows of this process
        self.store_figures = StoreFigures(config.metrics.cache, config.metrics.store_timeout)
        self.source_failures: dict[str, str] = {}  # source → why its run loop crashed last (it restarts)

    async def start(self) -> None:
        """Start every part, or none: a part that cannot start stops what did and raises StartupError.

        Order: configuration, the store, the API (listening, but answering 503 until the
        rest is up), sinks and sources that have a ``start``, and only then the tasks that
        deliver, pull and seal, so no source pulls before the API port is known to be ours.
        """
        try:
            await self._start()
        except BaseException:
            await self._abort()
            raise
        self.started = True

    async def _start(self) -> None:
        from gateway.checks import deprecations

        cfg = self.config
        self.components = comp = build(cfg)
        from gateway.security.checks import security_warnings

        for warning in security_warnings(cfg, comp):
            log.warning("security: %s", warning)
        for warning in deprecations(cfg, comp):
            log.warning("deprecated setting (it still works; `gateway check` lists them all): %s", warning)
        self.store = make_store(cfg.gateway.store, base=cfg.base_dir, audit_algorithm=cfg.gateway.audit_hash)
        try:
            if self.run_delivery:
                # SQLite: one delivering process per store (it releases every lease at start-up); PostgreSQL: any.
                try:
                    self.store.lock_delivery()
                except StoreError as exc:
                    raise ConfigError(cfg.path or "<config>", [str(exc)]) from None
                self._delivery_locked = True
            await self.store.open()
        except ConfigError:
            raise
        except Exception as exc:
            raise StartupError(f"the store {cfg.gateway.store} cannot be opened: {_why(exc)}") from exc
        self._store_open = True
        await self._audit_configuration()
        assert comp.router is not None
        from gateway.exchange.watchdogs import ContactBook

        self.contacts = ContactBook()
        self.handoff = Handoff() if self.run_delivery else None
        self.ingestor = Ingestor(self.store, comp.router, comp.inbound, on_commit=self._wake_workers,
                                 cipher=comp.cipher if cfg.encryption.enabled else None,
                                 versions=cfg.exchange.versions.table(), on_outcomes=self.contacts.note,
                                 handoff=self.handoff, renderers=comp.outbound, metrics=self.metrics)
        if self.run_sources and cfg.api.enabled:
            from gateway.api.server import start_api
            from gateway.security.refusals import RefusalLog

            self.refusals = RefusalLog(self.store.audit_event)

            try:
                self.api = await start_api(self, ssl_context=self._api_tls())
            except (OSError, ValueError) as exc:
                raise StartupError(_why(exc)) from exc
            if cfg.api.push_workers:
                from gateway.api.push_workers import PushWorkerError, PushWorkers

                self.push_workers = PushWorkers(self)
                try:
                    await self.push_workers.start()
                except (PushWorkerError, OSError) as exc:
                    self.push_workers = None
                    raise StartupError(_why(exc)) from exc
        else:
            from gateway.observability.health import log_api_off

            log_api_off(self)
        await self._start_parts(comp)
        if self.run_delivery and cfg.audit.seal:
            try:
                self.sealer = self._make_sealer()
            except Exception as exc:
                raise StartupError(f"the audit sealer: {_why(exc)}") from exc
        # Everything could start: now the tasks that do the work.
        if self.refusals is not None:
            self._tasks.append(asyncio.create_task(self.refusals.run(self.stopping), name="refusals"))
        for name, worker in self.workers.items():
            self._tasks.append(asyncio.create_task(worker.run(self.stopping), name=f"deliver:{name}"))
        for name, source in self.sources.items():
            ctx = SystemContext(name, cfg.base_dir, self.ingestor, self.store, self.stopping,
                                comp.inbound[name].input)
            self._tasks.append(asyncio.create_task(self._supervise_source(name, source, ctx), name=f"source:{name}"))
        if self.run_sources and comp.supervision is not None:
            from gateway.pipeline.supervise import SupervisionFollower

            self.supervision = SupervisionFollower(self.store, comp.supervision, comp.router,
                                                   cfg.supervision.destinations, cfg.supervision.tick_interval,
                                                   metrics=self.metrics)
            self._tasks.append(asyncio.create_task(while_leading(self.store, "supervision", self.supervision.run,
                                                                 self.stopping), name="supervision"))
        if self.run_sources and cfg.exchange.enabled:
            from gateway.exchange.service import ExchangeService

            self.exchange = ExchangeService(self.store, cfg, comp.router, outbound=comp.outbound, sinks=self.sinks,
                                            cipher=comp.cipher, contacts=self.contacts, on_commit=self._wake_workers)
            self._tasks.append(asyncio.create_task(while_leading(self.store, "exchange", self.exchange.run,
                                                                 self.stopping), name="exchange"))
        if self.sealer is not None:
            self._tasks.append(asyncio.create_task(while_leading(self.store, "sealer", self.sealer.run, self.stopping),
                                                   name="sealer"))
        if self.workers:
            # Other processes' commits (PostgreSQL) wake this process's idle workers of that destination.
            self.store.watch_deliveries(self._wake_destination)
        self._tasks.append(asyncio.create_task(self._seed_contacts(), name="metrics:contacts"))

    async def _start_parts(self, comp: Components) -> None:
        """Make and start every sink and source at once; StartupError names each one that failed."""
        cfg = self.config
        assert self.store is not None
        starts: list[tuple[str, Any]] = []
        failed: list[str] = []
        if self.run_delivery:
            released = await self.store.release_leases()
            if released:
                log.info("released %d deliveries left in flight by a previous run", released)
            for name, sink_cfg in comp.sink_configs.items():
                sink_section = cfg.sinks[name]
                adapter = comp.adapters[sink_section.adapter]
                assert adapter.make_sink is not None
                try:
                    sink = adapter.make_sink(name, sink_cfg)
                except Exception as exc:
                    failed.append(f"sink {name}: {_why(exc)}")
                    continue
                self.sinks[name] = sink
                starts.append((f"sink {name}", sink.start()))
                self.workers[name] = DestinationWorker(name, sink, comp.outbound[name], self.store,
                                                       policy_for(cfg, name), cipher=comp.cipher,
                                                       metrics=self.delivery_metrics, alerts=self._gateway_alerts(),
                                                       observer=self.metrics)
                if self.handoff is not None:
                    self.handoff.add(self.workers[name])
        if self.run_sources:
            for name, src_cfg in comp.source_configs.items():
                adapter = comp.adapters[cfg.sources[name].adapter]
                assert adapter.make_source is not None
                try:
                    source = adapter.make_source(name, src_cfg)
                except Exception as exc:
                    failed.append(f"source {name}: {_why(exc)}")
                    continue
                self.sources[name] = source
                start = getattr(source, "start", None)  # optional: a source that loads something first (a WSDL)
                if start is not None:
                    starts.append((f"source {name}", start()))
        results = await asyncio.gather(*(coro for _, coro in starts), return_exceptions=True)
        for (part, _), result in zip(starts, results, strict=True):
            if isinstance(result, BaseException):
                failed.append(f"{part}: {_why(result)}")
        if failed:
            raise StartupError("; ".join(failed))

    async def _abort(self) -> None:
        """Undo a start that failed half-way: nothing may keep running (or listening) behind the error."""
        self.stopping.set()
        try:
            await self.stop(grace=2.0)
        except Exception:
            log.exception("cleaning up after a failed start")
        for source in self.sources.values():
            close = getattr(source, "close", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    log.exception("closing a source after a failed start")

    def _api_tls(self) -> Any:
        """HTTPS for the API when [api] names a certificate; mutual TLS when it names a client CA."""
        from gateway.api._push_auth import handshake_reporter
        from gateway.security.tls import server_context

        api = self.config.api
        if not api.tls_cert:
            return None
        return server_context(self.config.resolve(api.tls_cert), self.config.resolve(api.tls_key or ""),
                              client_ca=self.config.resolve(api.client_ca) if api.client_ca else None,
                              client_certificates=api.client_certificates, on_refused=handshake_reporter(self))

    def _make_sealer(self) -> Any:
        """The sealer signs the chain head periodically; a signer that fails only leaves seals pending.

        It writes the witness log, hands signed seals to the witness destinations, and raises an
        ``audit_integrity`` alert when it finds the trail tampered with and stops signing.
        """
        import os

        from gateway.audit import Sealer, load_certificates
        from gateway.audit.signers import SignerError, make_signer
        from gateway.audit.witness import WitnessLog

        a = self.config.audit
        certs_dir = self.config.resolve(self.config.gateway.certs_dir)
        if a.signer == "external":
            signer = make_signer("external", url=a.signer_url, certificate=str(self.config.resolve(
                a.signer_certificate or "")), token=os.environ.get("GATEWAY_SIGNER_TOKEN") or None)
        else:
            from gateway.audit.keys import KEY_FILE

            existed = (certs_dir / KEY_FILE).exists()
            signer = make_signer(a.signer, certs_dir=certs_dir, create=True)
            if not existed and a.signer == "local":
                log.warning("security: created a DEVELOPMENT audit seal key %s (Ed25519, self-signed for 10 years, "
                            "unencrypted on disk) because none existed; replace it for production with `gateway "
                            "audit keygen --force --cn … --org …` or use a signing service", certs_dir / KEY_FILE)
        try:  # earlier seal certificates (kept by `gateway audit keygen --force`) stay trusted
            trusted = load_certificates(certs_dir) if any(certs_dir.glob("audit-seal*.crt")) else {}
        except SignerError:
            trusted = {}
        self.alerts = self._gateway_alerts()
        return Sealer(self.store, signer, every_entries=a.seal_every_entries, every_seconds=a.seal_every_seconds,
                      witness=WitnessLog(self.config.resolve(a.witness)) if a.witness else None, trusted=trusted,
                      on_alarm=self.alerts.audit_alarm, on_signed=self.alerts.seal_signed)

    def _gateway_alerts(self) -> Any:
        """The one GatewayAlerts of this gateway: the sealer's alarms and seals, and dead-letter alerts."""
        from gateway.pipeline.alerts import GatewayAlerts

        if self.alerts is None:
            assert self.store is not None and self.components is not None and self.components.router is not None
            self.alerts = GatewayAlerts(self.store, self.components.router, self.config.supervision.destinations,
                                        self.config.audit.witness_destinations, chain=self.config.gateway.name,
                                        on_commit=self._wake_workers, metrics=self.metrics)
        return self.alerts

    async def _audit_configuration(self) -> None:
        assert self.store is not None
        digest = config_digest(self.config)
        last = await self.store.get_cursor("gateway:config_digest")
        if last != digest:
            await self.store.audit_event("config_changed", system=self.config.gateway.name, detail={
                "file": str(self.config.path) if self.config.path else None, "sha256": digest, "previous": last,
                "sources": sorted(self.config.sources), "sinks": sorted(self.config.sinks),
                "routes": [r.name for r in self.config.routes]}, cursor=("gateway:config_digest", digest))

    def _wake_destination(self, destination: str) -> None:
        worker = self.workers.get(destination)
        if worker is not None:
            worker.wake.set()

    def _wake_workers(self) -> None:
        for worker in self.workers.values():
            worker.wake.set()
        if self.supervision is not None:
            self.supervision.wake.set()
        if self.exchange is not None:
            self.exchange.wake.set()

    async def _seed_contacts(self) -> None:
        """The last contact with each counterpart before this start, for /metrics (read once, in the background)."""
        try:
            assert self.store is not None
            received, delivered = await asyncio.wait_for(self.store.last_contacts(), timeout=60.0)
        except Exception as exc:  # /metrics then shows contacts from this start on
            log.warning("metrics: the last contacts before this start could not be read: %s", _why(exc))
            return
        self.metrics.contact_seeded(received, delivered)

    def task_problems(self) -> list[str]:
        """Long-running parts that ended while the gateway was not stopping (a readiness failure)."""
        if self.stopping.is_set():
            return []
        out = []
        for task in self._tasks:
            if task.done() and not task.get_name().startswith("metrics:"):
                exc = None if task.cancelled() else task.exception()
                out.append(f"{task.get_name()} ended" + (f": {_why(exc)}" if exc is not None else ""))
        return out

    async def _supervise_source(self, name: str, source: Source, ctx: SystemContext) -> None:
        """Run a source; if it crashes, log it and start it again with a growing pause."""
        pause = 1.0
        while not self.stopping.is_set():
            try:
                await source.run(ctx)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.source_failures[name] = _why(exc)
                self.metrics.source_restarts.labels(name).inc()
                log.exception("source %s crashed; restarting in %.0fs", name, pause,
                              extra={"system": name, "restart_in": pause})
                try:
                    await asyncio.wait_for(self.stopping.wait(), timeout=pause)
                except TimeoutError:
                    pass
                pause = min(pause * 2, 60.0)

    async def stop(self, grace: float = 10.0) -> None:
        self.stopping.set()
        if self.push_workers is not None:  # first: what they hold is committed here, while the store is open
            await self.push_workers.stop(grace)
            self.push_workers = None
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("task %s ended with %r", task.get_name(), task.exception())
        self._tasks.clear()
        if self.api is not None:
            await self.api.stop()
            self.api = None
        if self.refusals is not None:
            await self.refusals.close()
            self.refusals = None
        for sink in self.sinks.values():
            try:
                await sink.close()
            except Exception:
                log.exception("closing a sink failed")
        if self.store is not None and self._store_open:
            await self.store.close()
            self._store_open = False
        if self.store is not None and self._delivery_locked:
            self.store.unlock_delivery()
            self._delivery_locked = False

    async def run_until_signalled(self, *, tune_gc: bool = False) -> None:
        """Run until SIGINT or SIGTERM. ``tune_gc`` (``gateway run``: a process of its own) sets the
        collector for a long-running batch worker once everything is loaded, see :func:`tune_collector`."""
        import signal

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.start()
        if tune_gc:
            tune_collector()
        log.info("gateway %s running: %d source(s), %d sink(s)", self.config.gateway.name,
                 len(self.sources), len(self.sinks))
        await self.stopping.wait()
        await self.stop()


def tune_collector() -> None:
    """The collector set for a gateway process that runs on its own.

    Ingest and delivery allocate many short-lived objects and keep few; reference counting frees
    almost all of them, and the cyclic collector's young-generation passes every 700 allocations
    cost about 8 % of the CPU per pushed record (measured: 262 → 230–252 µs, 50 items per push).
    What was loaded at start (modules, configuration, compiled mappings, code tables) is frozen, so
    full collections do not walk it again. Cycles are still collected, only in larger steps.
    """
    import gc

    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
