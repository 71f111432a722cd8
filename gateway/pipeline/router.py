"""Routing: which destinations must know about a record, from the rules in gateway.toml.

Rules are compiled once into per-(kind, source) tuples; only rules that look at a
record's own fields — 事项编码 prefix, 事项类型, 行政区划代码 prefix, 许可类别 — are evaluated
per record. A rule that names a field matches only records that carry it: an acceptance
has no 事项类型, so a rule on item types never routes one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ITEM_FIELD = "item_code"  # 事项编码
REGION_FIELD = "region_code"  # 行政区划代码
ITEM_TYPE_FIELD = "item_type"  # 事项类型 (GB/T 39046: 01 行政许可 …)
LICENSE_CATEGORY_FIELD = "license_category"  # 许可类别 (普通, 特许, 认可, 核准, 登记, 其他)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    to: tuple[str, ...]
    kinds: frozenset[str] | None = None
    sources: frozenset[str] | None = None
    items: tuple[str, ...] | None = None
    regions: tuple[str, ...] | None = None
    item_types: frozenset[str] | None = None
    license_categories: frozenset[str] | None = None

    @property
    def conditional(self) -> bool:
        """Whether the rule looks at the record's own fields (else kind and source decide alone)."""
        return not (self.items is None and self.regions is None and self.item_types is None
                    and self.license_categories is None)

    def matches(self, data: Mapping[str, Any]) -> bool:
        if self.items is not None and not str(data.get(ITEM_FIELD) or "").startswith(self.items):
            return False
        if self.regions is not None and not str(data.get(REGION_FIELD) or "").startswith(self.regions):
            return False
        if self.item_types is not None and str(data.get(ITEM_TYPE_FIELD) or "") not in self.item_types:
            return False
        return self.license_categories is None or str(data.get(LICENSE_CATEGORY_FIELD) or "") in self.license_categories

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
                item_types=frozenset(r.item_types) if r.item_types else None,
                license_categories=frozenset(r.license_categories) if r.license_categories else None,
            )
            for r in routes
        ])

    def _plan(self, kind: str, system: str) -> tuple[tuple[str, ...], tuple[Rule, ...]]:
        fixed: list[str] = []
        conditional: list[Rule] = []
        for rule in self.rules:
            if not rule.static_match(kind, system):
                continue
            if not rule.conditional:
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
        for rule in conditional:
            if rule.matches(data):
                out.extend(d for d in rule.to if d not in out)
        return tuple(out)

    def destinations(self) -> set[str]:
        return {d for r in self.rules for d in r.to}
