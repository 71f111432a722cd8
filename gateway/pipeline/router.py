"""Routing: which destinations must know about a record, from the rules in gateway.toml.

Rules are compiled once into per-(kind, source) tuples; only rules that look at a
record's item code or region are evaluated per record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ITEM_FIELD = "item_code"  # 事项编码
REGION_FIELD = "region_code"  # 行政区划代码


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    to: tuple[str, ...]
    kinds: frozenset[str] | None = None
    sources: frozenset[str] | None = None
    items: tuple[str, ...] | None = None
    regions: tuple[str, ...] | None = None

    def static_match(self, kind: str, system: str) -> bool:
        return (self.kinds is None or kind in self.kinds) and (self.sources is None or system in self.sources)


class Router:
    """``router(kind, system, data)`` → the destinations, in rule order, without repeats."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self._plans: dict[tuple[str, str], tuple[tuple[str, ...], tuple[Rule, ...]]] = {}

    @classmethod
    def from_config(cls, routes: Sequence[Any]) -> Router:
        return cls([
            Rule(
                name=r.name,
                to=tuple(r.to),
                kinds=frozenset(r.kinds) if r.kinds else None,
                sources=frozenset(r.sources) if r.sources else None,
                items=tuple(r.items) if r.items else None,
                regions=tuple(r.regions) if r.regions else None,
            )
            for r in routes
        ])

    def _plan(self, kind: str, system: str) -> tuple[tuple[str, ...], tuple[Rule, ...]]:
        fixed: list[str] = []
        conditional: list[Rule] = []
        for rule in self.rules:
            if not rule.static_match(kind, system):
                continue
            if rule.items is None and rule.regions is None:
                fixed.extend(d for d in rule.to if d not in fixed)
            else:
                conditional.append(rule)
        plan = (tuple(fixed), tuple(conditional))
        self._plans[(kind, system)] = plan
        return plan

    def __call__(self, kind: str, system: str, data: Mapping[str, Any]) -> tuple[str, ...]:
        plan = self._plans.get((kind, system)) or self._plan(kind, system)
        fixed, conditional = plan
        if not conditional:
            return fixed
        out = list(fixed)
        item = str(data.get(ITEM_FIELD) or "")
        region = str(data.get(REGION_FIELD) or "")
        for rule in conditional:
            if rule.items is not None and not item.startswith(rule.items):
                continue
            if rule.regions is not None and not region.startswith(rule.regions):
                continue
            out.extend(d for d in rule.to if d not in out)
        return tuple(out)

    def destinations(self) -> set[str]:
        return {d for r in self.rules for d in r.to}
