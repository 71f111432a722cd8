"""``on_invalid``: which field errors quarantine a record and which are accepted as findings.

DOMAIN.md: an invalid identifier is a data-quality finding; the record is quarantined,
or accepted with the finding where configuration says so.  A policy maps rules,
fields, or a field and a rule to ``quarantine`` (the default) or
``accept_with_finding``; the most specific entry wins (field and rule, then field,
then rule).  A mapping file holds one (top-level ``on_invalid:`` and per field), and a
source in gateway.toml may lay its own over it.

A record is accepted only when every error it has is accepted.  Key fields are never
accepted with a finding (they identify the record), nor are the rules that say the
mapping or the record's shape is wrong (``required``, ``path_ambiguous`` …).  An
accepted finding keeps the field's value when only a check on it failed (a check
character, a birth date, a province prefix), so the stored record still satisfies the
published JSON Schema; otherwise the field is left empty, and a required field left
empty sends the record to quarantine after all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gateway.schema import FieldError, FieldSpec, RecordKind
from gateway.schema._text import TEXT_RULES
from gateway.schema.identifiers import RULE_MESSAGES

QUARANTINE = "quarantine"
ACCEPT = "accept_with_finding"
ACTIONS = (QUARANTINE, ACCEPT)

ACCEPTABLE_RULES = frozenset(
    {
        *RULE_MESSAGES,
        *TEXT_RULES,
        "max_length",
        "type",
        "int_format",
        "int_range",
        "decimal_format",
        "datetime_format",
        "date_format",
        "code_unknown",
        "code_invalid",
        "enum_invalid",
    }
)
"""Rules an ``on_invalid`` entry may accept; every other rule always quarantines."""

NEVER_ACCEPTED = frozenset({"required", "unknown_field", "value_type", "path_ambiguous", "no_output", "internal"})

# For each identifier type, the rules after which the value still has the type's published shape.
_KEEPS_VALUE = {
    "credit_code": frozenset({"credit_code_check", "credit_code_org_check"}),
    "region_code": frozenset({"region_code_province"}),
    "license_id": frozenset({"license_id_check"}),
    "id_number": frozenset(RULE_MESSAGES),
}


def keeps_value(spec: FieldSpec, rule: str) -> bool:
    """Whether an accepted finding of ``rule`` leaves the value in the record (else the field is emptied)."""
    return rule in _KEEPS_VALUE.get(spec.type, ())


class PolicyError(ValueError):
    """An ``on_invalid`` entry that cannot be: ``key`` is the entry, the message says why and what is allowed."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


@dataclass(frozen=True)
class InvalidPolicy:
    """What to do with each field error, by rule, by field, and by field and rule.

    Field keys are ``(kind, field)`` with ``kind`` None when the entry names the field
    without a kind (it then applies to that field in every output).
    """

    rules: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[tuple[str | None, str], str] = field(default_factory=dict)
    field_rules: Mapping[tuple[str | None, str, str], str] = field(default_factory=dict)

    def action(self, kind: str, field_name: str, rule: str) -> str:
        for table, keys in (
            (self.field_rules, ((kind, field_name, rule), (None, field_name, rule))),
            (self.fields, ((kind, field_name), (None, field_name))),
        ):
            for key in keys:
                found = table.get(key)  # type: ignore[call-overload]
                if found is not None:
                    return found
        return self.rules.get(rule, QUARANTINE)

    def over(self, base: InvalidPolicy) -> InvalidPolicy:
        """This policy laid over ``base``: at the same level of detail, this one's entries win."""
        return InvalidPolicy(
            MappingProxyType({**base.rules, **self.rules}),
            MappingProxyType({**base.fields, **self.fields}),
            MappingProxyType({**base.field_rules, **self.field_rules}),
        )

    def may_accept(self, kind: RecordKind) -> bool:
        """Whether any error of a record of ``kind`` could be accepted (else no judging code is emitted)."""
        if any(v == ACCEPT for v in self.rules.values()):
            return True
        entries: Iterable[tuple[tuple[Any, ...], str]] = (*self.fields.items(), *self.field_rules.items())
        return any(v == ACCEPT and k[0] in (None, kind.name) and k[1] in kind.field_map for k, v in entries)

    def describe(self) -> list[str]:
        """Entries as ``key = action`` lines, most specific last (for ``mapping show`` and ``check``)."""
        out = [f"{rule} = {action}" for rule, action in sorted(self.rules.items())]
        out += [f"{_field_key(k, f)} = {a}" for (k, f), a in sorted(self.fields.items(), key=_sort_key)]
        out += [f"{_field_key(k, f)}: {r} = {a}" for (k, f, r), a in sorted(self.field_rules.items(), key=_sort_key)]
        return out

    def __bool__(self) -> bool:
        return bool(self.rules or self.fields or self.field_rules)


EMPTY = InvalidPolicy()


def _field_key(kind: str | None, name: str) -> str:
    return f"{kind}.{name}" if kind else name


def _sort_key(item: tuple[tuple[Any, ...], str]) -> tuple[str, ...]:
    return tuple(str(p) for p in item[0])


def _action(key: str, value: Any) -> str:
    if value not in ACTIONS:
        raise PolicyError(key, f"on_invalid for {key!r} is {value!r}; use {' or '.join(ACTIONS)}")
    return str(value)


def _rule(key: str, rule: Any) -> str:
    if rule in NEVER_ACCEPTED:
        raise PolicyError(key, f"rule {rule!r} always quarantines (it means the mapping or the record's shape is wrong)")
    if rule not in ACCEPTABLE_RULES:
        raise PolicyError(key, f"{rule!r} is not a rule on_invalid can name; rules: {', '.join(sorted(ACCEPTABLE_RULES))}")
    return str(rule)


def _field(key: str, kinds: Sequence[RecordKind]) -> tuple[str | None, str, list[RecordKind]]:
    """(kind, field, kinds that have it) for ``field`` or ``kind.field``."""
    kind_name, _, name = key.rpartition(".")
    candidates = [k for k in kinds if not kind_name or k.name == kind_name]
    if kind_name and not candidates:
        raise PolicyError(key, f"{kind_name!r} is not a kind this mapping produces ({', '.join(k.name for k in kinds)})")
    having = [k for k in candidates if name in k.field_map]
    if not having:
        where = kind_name or " or ".join(k.name for k in kinds)
        raise PolicyError(key, f"{key!r} is neither a rule nor a field of {where}")
    for kind in having:
        if name in kind.key_fields:
            raise PolicyError(
                key, f"{kind.name}.{name} is part of the record's key; a record with an invalid key is always quarantined"
            )
    return (kind_name or None), name, having


def parse_policy(raw: Any, kinds: Sequence[RecordKind], where: str = "on_invalid") -> InvalidPolicy:
    """A policy from a mapping file's top-level ``on_invalid:`` or a source's ``on_invalid`` in gateway.toml.

    Keys are rules (``credit_code_check``), fields (``authority_code`` or
    ``approval_result.authority_code``); a field's value may be a table of rule → action.
    """
    if raw is None:
        return EMPTY
    if not isinstance(raw, Mapping):
        raise PolicyError(where, f"{where} is a table of rule or field = quarantine | accept_with_finding")
    rules: dict[str, str] = {}
    fields: dict[tuple[str | None, str], str] = {}
    field_rules: dict[tuple[str | None, str, str], str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key:
            raise PolicyError(str(key), f"{where}: keys are rule or field names")
        if key in ACCEPTABLE_RULES or key in NEVER_ACCEPTED:
            rules[_rule(key, key)] = _action(key, value)
            continue
        kind_name, name, _ = _field(key, kinds)
        if isinstance(value, Mapping):
            for rule, action in value.items():
                field_rules[(kind_name, name, _rule(f"{key}.{rule}", rule))] = _action(f"{key}.{rule}", action)
        else:
            fields[(kind_name, name)] = _action(key, value)
    return InvalidPolicy(MappingProxyType(rules), MappingProxyType(fields), MappingProxyType(field_rules))


def parse_field_policy(raw: Any, kind: RecordKind, spec: FieldSpec) -> InvalidPolicy:
    """A field rule's own ``on_invalid:``: an action for every rule of the field, or a table of rule → action."""
    key = f"{kind.name}.{spec.name}"
    _field(key, [kind])
    if isinstance(raw, Mapping):
        entries = {(kind.name, spec.name, _rule(f"{key}.{r}", r)): _action(f"{key}.{r}", a) for r, a in raw.items()}
        return InvalidPolicy(field_rules=MappingProxyType(entries))
    return InvalidPolicy(fields=MappingProxyType({(kind.name, spec.name): _action(key, raw)}))


def make_judge(
    policy: InvalidPolicy, kind: RecordKind
) -> Callable[[list[FieldError], dict[str, Any]], tuple[list[FieldError], list[FieldError]]]:
    """``judge(errors, data) -> (errors, findings)`` for records of ``kind`` (called only when there are errors).

    Either every error is accepted (errors empty, findings all of them, values that do
    not keep their shape removed from ``data``) or none is (the record is quarantined
    with every reason, findings empty).
    """
    fields = kind.field_map
    keys = frozenset(kind.key_fields)
    action = policy.action

    def judge(errors: list[FieldError], data: dict[str, Any]) -> tuple[list[FieldError], list[FieldError]]:
        for e in errors:
            if e.rule not in ACCEPTABLE_RULES or e.field in keys or e.field not in fields:
                return errors, []
            if action(kind.name, e.field, e.rule) != ACCEPT:
                return errors, []
        emptied = [e.field for e in errors if not keeps_value(fields[e.field], e.rule)]
        for name in emptied:
            if fields[name].required:
                return errors, []
        for name in emptied:
            data.pop(name, None)
        return [], errors

    return judge
