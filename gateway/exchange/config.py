"""``[exchange]`` in gateway.toml: version policy, counterparts (watchdogs, reconciliation), 并联审批, licence effects.

Validated on its own here; what needs the rest of the configuration (do the named sources
and sinks exist, do the sinks' mappings render what they must) is checked by
:func:`exchange_problems` when the gateway is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.durations import Duration, refuse_both_names

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
GATEWAY_KINDS = ("supervision_alert", "audit_seal")  # made by the gateway: a repeat is never a conflict


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _one_name(cls, data: Any) -> Any:
        return refuse_both_names(cls, data)


def parse_hhmm(value: str) -> time:
    m = _HHMM.match(value.strip())
    if not m:
        raise ValueError(f"{value!r} is not a time of day; write it as HH:MM, such as \"09:30\"")
    return time(int(m.group(1)), int(m.group(2)))


class VersionPolicy(_Model):
    on_conflict: Literal["quarantine", "keep_first"] | None = None
    on_older: Literal["keep", "quarantine"] | None = None


class VersionsSection(BaseModel):
    """How versions meet: ``on_conflict`` for the same key and version with a different payload,
    ``on_older`` for an older version arriving after a newer one; per kind in a sub-table."""

    model_config = ConfigDict(extra="allow", frozen=True)
    on_conflict: Literal["quarantine", "keep_first"] = "quarantine"
    on_older: Literal["keep", "quarantine"] = "keep"

    @model_validator(mode="after")
    def _kinds(self) -> VersionsSection:
        from gateway.schema import KINDS

        for name, value in (self.model_extra or {}).items():
            if name not in KINDS:
                raise ValueError(f"exchange.versions.{name}: not a record kind (kinds: {', '.join(KINDS)}; "
                                 "or on_conflict / on_older for every kind)")
            VersionPolicy.model_validate(value)
        return self

    def for_kind(self, kind: str) -> tuple[str, str]:
        """(on_conflict, on_older) for ``kind``."""
        override = VersionPolicy.model_validate((self.model_extra or {}).get(kind) or {})
        return (override.on_conflict or self.on_conflict, override.on_older or self.on_older)

    def table(self) -> dict[str, tuple[str | None, str | None]]:
        """The per-kind policy the ingestor stamps on every record (gateway-made kinds keep the store's rule)."""
        from gateway.schema import KINDS

        return {k: self.for_kind(k) for k in KINDS if k not in GATEWAY_KINDS}


class WatchSettings(_Model):
    expect_by: str | None = None  # "HH:MM": records expected from this counterpart by then each working day
    silence: Duration | None = Field(None, gt=0)  # no contact (received or delivered) for this long

    @field_validator("expect_by")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None:
            parse_hhmm(value)
        return value


class ReconcileSettings(_Model):
    at: str | None = None  # "HH:MM": every day at this time, reconcile the day before
    via: str | None = None  # the sink whose adapter asks the counterpart; default: the first of its sinks that can
    slack: Duration = Field(300.0, ge=0)  # a record this close to the period's edge may sit on either side
    resend: bool = True  # send again what the counterpart says it never received
    request: bool = True  # ask the counterpart to send again what it sent and we never got

    @field_validator("at")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None:
            parse_hhmm(value)
        return value


class CounterpartSection(_Model):
    """One counterpart system, made of the sources it sends through and the sinks it receives through."""

    sources: list[str] | None = None  # default: the source of the same name, if there is one
    sinks: list[str] | None = None  # default: the sink of the same name, if there is one
    watch: WatchSettings = WatchSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    notify: list[str] = Field(default_factory=list)  # sinks its watchdog alerts also go to


class ParallelDepartment(_Model):
    name: str = Field(min_length=1)  # the department (部门), as people call it
    system: str  # the source its opinion comes back through
    sink: str | None = None  # the sink the case goes out through; default: the sink named like ``system``
    time_limit: int = Field(ge=1, le=365)  # its limit (限时), counted from the acceptance
    unit: Literal["G", "Z"] = "G"  # G working days (工作日, the State Council schedule), Z natural days

    @property
    def out(self) -> str:
        return self.sink or self.system


class ParallelScheme(_Model):
    """A 并联审批 scheme: the item codes it covers, the departments concerned and their limits."""

    name: str = Field(min_length=1)
    items: list[str] = Field(min_length=1)  # 事项编码 prefixes
    lead: str | None = None  # the lead department's system (牵头部门): only its acceptance starts the scheme
    lead_department: str | None = None  # shown on the combined result
    departments: list[ParallelDepartment] = Field(min_length=1)
    to: list[str] = Field(default_factory=list)  # where the combined result goes (besides the routes)
    dispatch_kinds: list[str] = Field(default_factory=lambda: ["case", "acceptance"])

    @model_validator(mode="after")
    def _distinct(self) -> ParallelScheme:
        names = [d.name for d in self.departments]
        if len(set(names)) != len(names):
            raise ValueError(f"exchange.parallel {self.name!r}: a department is listed twice")
        systems = [d.system for d in self.departments]
        if len(set(systems)) != len(systems):
            raise ValueError(f"exchange.parallel {self.name!r}: two departments answer through one system; "
                             "the gateway tells departments apart by the system their opinion comes from")
        return self


class EffectsSection(_Model):
    # where the notice of a suspended or revoked licence goes besides the routes of supervision_alert;
    # default: [supervision] destinations
    notify: list[str] | None = None
    # supervision results also go to the system that sent the licence's approval result (the approving
    # bureau), through its sink, when that sink renders supervision results
    to_approver: bool = True


class ExchangeSection(_Model):
    enabled: bool = True
    tick_interval: Duration = Field(30.0, gt=0)  # watchdogs, 并联审批 deadlines, the reconciliation schedule
    versions: VersionsSection = VersionsSection()
    counterparts: dict[str, CounterpartSection] = Field(default_factory=dict)
    parallel: list[ParallelScheme] = Field(default_factory=list)
    effects: EffectsSection = EffectsSection()

    @model_validator(mode="after")
    def _schemes(self) -> ExchangeSection:
        names = [s.name for s in self.parallel]
        if len(set(names)) != len(names):
            raise ValueError("exchange.parallel: two schemes share a name")
        return self


# --------------------------------------------------------------------------- counterparts


@dataclass(frozen=True)
class Counterpart:
    """A counterpart as the exchange sees it: who it is, how it sends and receives, how it is watched."""

    name: str
    sources: tuple[str, ...]
    sinks: tuple[str, ...]
    watch: WatchSettings
    reconcile: ReconcileSettings
    notify: tuple[str, ...]

    @property
    def systems(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.sources, *self.sinks)))


def counterparts(config: GatewayConfig) -> dict[str, Counterpart]:
    """Every counterpart: those configured under [exchange.counterparts], then each source or sink left over
    as its own (a source and a sink of the same name are one)."""
    ex = config.exchange
    out: dict[str, Counterpart] = {}
    claimed: set[tuple[str, str]] = set()
    for name, cp in ex.counterparts.items():
        sources = tuple(cp.sources if cp.sources is not None else ([name] if name in config.sources else []))
        sinks = tuple(cp.sinks if cp.sinks is not None else ([name] if name in config.sinks else []))
        claimed.update(("source", s) for s in sources)
        claimed.update(("sink", s) for s in sinks)
        out[name] = Counterpart(name, sources, sinks, cp.watch, cp.reconcile, tuple(cp.notify))
    for name in dict.fromkeys((*config.sources, *config.sinks)):
        if name in out:
            continue
        sources = (name,) if name in config.sources and ("source", name) not in claimed else ()
        sinks = (name,) if name in config.sinks and ("sink", name) not in claimed else ()
        if sources or sinks:
            out[name] = Counterpart(name, sources, sinks, WatchSettings(), ReconcileSettings(), ())
    return out


def exchange_problems(config: GatewayConfig, outbound: dict[str, Any]) -> list[str]:
    """What [exchange] names that the rest of the configuration does not have."""
    from gateway.schema import KINDS

    ex = config.exchange
    problems: list[str] = []

    def sink(where: str, name: str, kinds: tuple[str, ...] = ()) -> None:
        if name not in config.sinks:
            problems.append(f"{where}: {name!r} is not a configured sink")
            return
        out = outbound.get(name)
        missing = [k for k in kinds if out is not None and k not in out.kinds]
        if missing:
            problems.append(f"{where}: sink {name!r} mapping {out.path} has no output for kind(s) {', '.join(missing)}")

    for name, cp in ex.counterparts.items():
        where = f"exchange.counterparts.{name}"
        for s in cp.sources or ():
            if s not in config.sources:
                problems.append(f"{where}.sources: {s!r} is not a configured source")
        for s in cp.sinks or ():
            if s not in config.sinks:
                problems.append(f"{where}.sinks: {s!r} is not a configured sink")
        if cp.sources is None and cp.sinks is None and name not in config.sources and name not in config.sinks:
            problems.append(f"{where}: no source or sink is named {name!r}; list its sources and sinks")
        for s in cp.notify:
            sink(f"{where}.notify", s, ("supervision_alert",))
        via = cp.reconcile.via
        if via is not None and via not in (cp.sinks or ([name] if name in config.sinks else [])):
            problems.append(f"{where}.reconcile.via: {via!r} is not one of this counterpart's sinks")
    for i, scheme in enumerate(ex.parallel):
        where = f"exchange.parallel[{i}] ({scheme.name})"
        if scheme.lead is not None and scheme.lead not in config.sources:
            problems.append(f"{where}.lead: {scheme.lead!r} is not a configured source")
        for kind in scheme.dispatch_kinds:
            if kind not in KINDS:
                problems.append(f"{where}.dispatch_kinds: {kind!r} is not a record kind")
        for d in scheme.departments:
            if d.system not in config.sources:
                problems.append(f"{where}.departments ({d.name}).system: {d.system!r} is not a configured source "
                                "(the department's opinions come back through it)")
            sink(f"{where}.departments ({d.name}).sink", d.out,
                 tuple(k for k in scheme.dispatch_kinds if k in KINDS))
        for s in scheme.to:
            sink(f"{where}.to", s, ("process_step",))
    for s in ex.effects.notify or ():
        sink("exchange.effects.notify", s, ("supervision_alert",))
    return problems
