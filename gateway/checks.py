"""What ``gateway check`` finds beyond a configuration that validates: clashes, missing things, deprecations.

``cursor_collisions`` also stops ``gateway run`` (two sources sharing one watermark lose
records); the rest are found before a start, so an operator learns them at their desk
rather than from a gateway that waits for a folder or fails on a WSDL import.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.adapters import AdapterConfig, ConfigFacts
from gateway.durations import deprecated_settings

if TYPE_CHECKING:
    from gateway.app import Components
    from gateway.config import GatewayConfig


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)  # the gateway would not work as configured
    warnings: list[str] = field(default_factory=list)  # it works, but something should change


def _facts(comp: Components) -> Iterator[tuple[str, str, ConfigFacts | str]]:
    """(section, name, facts — or the reason they could not be had) of every built source and sink."""
    for section, configs in (("sources", comp.source_configs), ("sinks", comp.sink_configs)):
        for name, cfg in configs.items():
            if not isinstance(cfg, AdapterConfig):
                continue
            try:
                yield section, name, cfg.facts(name)
            except Exception as exc:  # a plugin's facts() must not hide every other finding
                yield section, name, f"{type(exc).__name__}: {exc}"


def cursor_collisions(comp: Components) -> list[str]:
    """Sources that would write the same cursor (watermark): each would skip what the other committed."""
    owners: dict[str, list[str]] = {}
    for section, name, facts in _facts(comp):
        if section == "sources" and isinstance(facts, ConfigFacts):
            for cursor in facts.cursors:
                owners.setdefault(cursor, []).append(name)
    return [
        f"sources {', '.join(names)}: all store their watermark as cursor {cursor!r}, so each would skip "
        "what the others committed; give each its own cursor name (or leave the name out: the default "
        "includes the system name)"
        for cursor, names in owners.items() if len(names) > 1
    ]


def _raw(config: GatewayConfig) -> dict[str, Any]:
    if config.path is None or not Path(config.path).is_file():
        return {}
    try:
        return tomllib.loads(Path(config.path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def deprecations(config: GatewayConfig, comp: Components | None) -> list[str]:
    """Old key names and bare-number durations, core and adapters, as ``where: what to write instead``."""
    from gateway.config import GatewayConfig
    from gateway.supervision import SupervisionConfig

    raw = _raw(config)
    found = deprecated_settings(GatewayConfig, raw)
    rules = (raw.get("supervision") or {}).get("rules")
    found += deprecated_settings(SupervisionConfig, rules, "supervision.rules")
    from gateway.pipeline.delivery import delivery_deprecations

    found += delivery_deprecations(config)
    found += legacy_adapter_names()
    if comp is not None:
        for section, role in (("sources", "source_config"), ("sinks", "sink_config")):
            for name, options in (raw.get(section) or {}).items():
                spec = getattr(config, section).get(name)
                adapter = comp.adapters.get(spec.adapter) if spec is not None else None
                model = getattr(adapter, role, None) if adapter is not None else None
                if model is not None:
                    found += deprecated_settings(model, options, f"{section}.{name}")
    return found


def legacy_adapter_names() -> list[str]:
    """Plugins and entry points that reached the built-in adapters by their old import name ``adapters``."""
    from importlib.metadata import entry_points

    from gateway.adapters import ENTRY_POINT_GROUP
    from gateway.legacy_imports import current_name, legacy_imports

    found = legacy_imports()
    asked = {f.name for f in found}
    out, named = [], set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.module in asked:
            dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
            out.append(f"adapter plugin {ep.name!r} ({dist}) is registered as {ep.value}: the built-in adapters "
                       f"now install as gateway_adapters; register {current_name(ep.module)}:{ep.attr} instead "
                       "(the old name still works but is deprecated)")
            named.add(ep.module)
    out += [f.message() for f in found if f.name not in named]
    return out


def run_checks(config: GatewayConfig, comp: Components) -> CheckReport:
    """Everything ``gateway check`` adds to ``build``: missing folders and files, shared folders, deprecations."""
    report = CheckReport()
    folders: dict[Path, list[str]] = {}
    for section, name, facts in _facts(comp):
        if isinstance(facts, str):
            report.problems.append(f"{section}.{name}: its adapter could not describe its settings: {facts}")
            continue
        for setting, folder in facts.folders:
            where = f"{section}.{name}.{setting}"
            if not Path(folder).is_dir():
                report.problems.append(f"{where}: folder {folder} does not exist (create it, or mount it; "
                                       "the gateway waits for it and reads nothing meanwhile)")
            folders.setdefault(Path(folder).resolve(), []).append(where)
        for setting, path in facts.files:
            if not Path(path).is_file():
                report.problems.append(f"{section}.{name}.{setting}: file {path} does not exist")
        report.problems.extend(f"{section}.{name}.{problem}" for problem in facts.problems)
    for folder, users in folders.items():
        if len(users) > 1:
            report.problems.append(f"{' and '.join(users)} are the same folder {folder}: two sources would "
                                   "take each other's files")
    report.warnings.extend(deprecations(config, comp))
    report.warnings.extend(container_findings(config))
    return report


def container_findings(config: GatewayConfig) -> list[str]:
    """A loopback host in gateway.toml where the environment asks for a reachable API (the container image sets
    GATEWAY_API_HOST=0.0.0.0): the API would answer nothing but its own health probe."""
    wanted = os.environ.get("GATEWAY_API_HOST", "").strip()
    host = config.api.host
    if not (config.api.enabled and wanted) or wanted == host or not (
            host == "localhost" or host.startswith("127.") or host == "::1"):
        return []
    return [f"api.host = {host!r} in the configuration overrides GATEWAY_API_HOST={wanted}: inside a container "
            "nothing outside it reaches the API; leave host out, or write the address to listen on "
            "(docs/container.md)"]
