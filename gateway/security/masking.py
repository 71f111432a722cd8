"""Masking of personal data (个人信息) for people who may not see it: by field, and inside free text.

What is personal, where it is found, and how it is shown masked:

- 居民身份证号 and other 证件号码: fields the schema marks personal (SQRZJHM …) and, in any
  free text, 18 characters with a valid GB 11643 check character and birth date
  (full-width digits too) → ``110105********002X``. First-generation 15-digit numbers
  have no check character and are masked by field only.
- mobile numbers: fields marked personal (LXRSJ …) and, in any free text, 11 digits
  13x–19x, optionally after +86 and with - or spaces between groups → ``138****5678``.
- addresses: fields marked personal (LXRDZ …) → the administrative part stays,
  ``山东省烟台市芝罘区****``.
- names of natural persons: contact names (联系人), and the applicant's or the
  行政相对人's name when the record says it is a natural person (申请人类型 1, 自然人,
  个体工商户, a document type only persons hold, a credit code starting 92); every
  occurrence of those names elsewhere in the same record or row is masked too. A name
  keeps its first character: ``张三`` → ``张*``, ``欧阳娜娜`` → ``欧***``.

Names of civil servants acting in office (受理人, 处理人, 办结人) and legal
representatives of organisations are not masked: supervision needs to see who
handled a case, and an organisation's legal representative is public (营业执照).

Keys that are identifiers the gateway or a counterpart gave a record (case numbers,
record keys, receipts, hashes) are not scanned for numbers: an 18-digit case number
that happened to carry a valid check character would otherwise become unreadable.

The public entry points are :func:`mask_text`, :func:`mask_tree` (any JSON-like
value: API rows, CLI rows, audit entries) and :func:`payload_rules` (a counterpart's
own keys, learned from its inbound mapping, for raw payloads in quarantine).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.schema import KINDS
from gateway.schema.identifiers import check_id_number

__all__ = [
    "FieldRule",
    "MaskingFormatter",
    "PayloadRules",
    "install_log_masking",
    "mask_address",
    "mask_error",
    "mask_id",
    "mask_name",
    "mask_phone",
    "mask_text",
    "mask_tree",
    "payload_rules",
]

# --------------------------------------------------------------------------- single values

_FULLWIDTH_DIGITS = {cp: cp - 0xFEE0 for cp in range(0xFF10, 0xFF1A)}
_FULLWIDTH_DIGITS[0xFF38] = ord("X")  # Ｘ
_FULLWIDTH_DIGITS[0xFF58] = ord("X")  # ｘ


def mask_id(value: str) -> str:
    """A 证件号码: the first 6 (the region) and the last 4 characters stay; shorter numbers keep less."""
    n = len(value)
    if n >= 15:
        return value[:6] + "*" * (n - 10) + value[-4:]
    if n >= 11:
        return value[:3] + "*" * (n - 7) + value[-4:]
    if n >= 4:
        keep = n // 4
        return value[:keep] + "*" * (n - 2 * keep) + value[n - keep:]
    return "*" * n


def mask_phone(value: str) -> str:
    """A telephone number: the first 3 and the last 4 digits stay (``138****5678``), separators kept."""
    digits = [i for i, c in enumerate(value) if c.isdigit()]
    if len(digits) < 7:
        return "*" * len(value)
    hidden = set(digits[-8:-4]) if len(digits) >= 11 else set(digits[3:-4])
    return "".join("*" if i in hidden else c for i, c in enumerate(value))


def mask_name(value: str) -> str:
    """A person's name: the first character stays (``张*``, ``李**``); Latin names keep each word's initial."""
    value = value.strip()
    if not value:
        return value
    if value.isascii():
        return " ".join(w[:1] + "*" * max(1, len(w) - 1) for w in value.split())
    return value[0] + "*" * max(1, len(value) - 1)


# Administrative levels at the start of a Chinese address: province, prefecture, county.
_ADMIN_PREFIX = re.compile(
    r"^(?:[^\d省市区县旗州盟]{1,8}?(?:省|自治区|特别行政区))?"
    r"(?:[^\d省市区县旗州盟]{1,8}?(?:市|自治州|州|盟|地区))?"
    r"(?:[^\d省市区县旗州盟]{1,8}?(?:区|县|自治县|市|旗))?"
)


def mask_address(value: str) -> str:
    """An address: the administrative part (省 市 区/县) stays, the street, number and room become ``****``."""
    kept = _ADMIN_PREFIX.match(value)
    prefix = kept.group(0) if kept else ""
    return prefix + "****" if len(prefix) < len(value) else value


# --------------------------------------------------------------------------- free text

# An 18-character 居民身份证号 or a mainland mobile number (optionally +86, with - or space
# between groups), not glued to further digits. Full-width digits (typed on a Chinese IME)
# count as digits. Candidates are confirmed in _replace: an ID number needs its check
# character and a real birth date, so long numbers of other kinds stay readable.
_D = "[0-9０-９]"
_FREE_TEXT = re.compile(
    rf"(?<![0-9０-９])(?:(?P<id>[1-9１-９]{_D}{{16}}[0-9０-９XxＸｘ])"
    rf"|(?P<mobile>(?:\+?86[- ]?)?[1１][3-9３-９]{_D}(?:[- ]?{_D}{{4}}){{2}}))(?![0-9０-９])"
)
# What every match of _FREE_TEXT contains: 17 digits in a row (an ID number), or the first seven
# digits of a mobile number. Most text (log lines with their timestamps, counts and ports) has
# neither, and is spared the full search.
_QUICK = re.compile(rf"{_D}{{17}}|[1１][3-9３-９]{_D}[- ]?{_D}{{4}}")


def _replace(m: re.Match[str]) -> str:
    text = m.group(0)
    if m.group("id") is not None:
        normal = text.translate(_FULLWIDTH_DIGITS).upper()
        if check_id_number(normal) is None:
            return mask_id(text)
        # Not a valid ID number, but its last 11 digits may still be a mobile number: leave it.
        return text
    return mask_phone(text)


def mask_text(text: str, names: Iterable[str] = ()) -> str:
    """``text`` with ID numbers and mobile numbers masked, and each of ``names`` (persons' names) masked."""
    if len(text) >= 11 and _QUICK.search(text) is not None:
        text = _FREE_TEXT.sub(_replace, text)
    for name in names:
        if name in text:
            text = text.replace(name, mask_name(name))
    return text


# --------------------------------------------------------------------------- rules by field


@dataclass(frozen=True, slots=True)
class PersonTest:
    """How a record's own fields tell that a name belongs to a natural person.

    Each entry names a field in the common schema; the value of that field is compared
    in common-schema form. With none of the fields present the holder is assumed to be
    a person: masking too much is the safe mistake.
    """

    type_field: str | None = None
    person_types: frozenset[str] = frozenset()
    doc_type_field: str | None = None
    credit_fields: tuple[str, ...] = ()


# Document types (GA/T 2000.156) only natural persons hold.
PERSONAL_DOCUMENTS = frozenset({"111", "414", "516", "511", "553"})
_ALWAYS = PersonTest()

_NAME_FIELDS: dict[str, PersonTest] = {
    "contact_name": _ALWAYS,
    "applicant_name": PersonTest("applicant_type", frozenset({"1"}), "applicant_id_type", ("applicant_id_no",)),
    "counterpart_name": PersonTest("counterpart_category", frozenset({"自然人", "个体工商户"}), "counterpart_id_type",
                                   ("counterpart_credit_code", "counterpart_id_no")),
}


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one key's value is masked: ``id``, ``phone``, ``address``, or ``name`` (when ``person`` says so)."""

    how: str
    person: PersonTest | None = None
    # For a name rule: the key that holds each field ``person`` names, in this dict's own vocabulary,
    # and how to translate a counterpart's code into the common code (its mapping's lookup).
    keys: Mapping[str, str] = field(default_factory=dict)
    translate: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def _how(spec_name: str, spec_type: str) -> str:
    if spec_type == "id_number":
        return "id"
    if "phone" in spec_name or "mobile" in spec_name:
        return "phone"
    if "address" in spec_name:
        return "address"
    return "id"


def _schema_rules() -> dict[str, FieldRule]:
    """Rules for every common-schema field name and wire short code (SQRZJHM …)."""
    rules: dict[str, FieldRule] = {}
    for kind in KINDS.values():
        wire = {f.name: f.wire for f in kind.fields if f.wire}
        for spec in kind.fields:
            rule: FieldRule | None = None
            wire_rule: FieldRule | None = None
            if spec.personal:
                rule = wire_rule = FieldRule(_how(spec.name, spec.type))
            elif spec.name in _NAME_FIELDS:
                test = _NAME_FIELDS[spec.name]
                names = [n for n in (test.type_field, test.doc_type_field, *test.credit_fields) if n]
                rule = FieldRule("name", test, {n: n for n in names})
                wire_rule = FieldRule("name", test, {n: wire[n] for n in names if n in wire})
            if rule is not None:
                rules.setdefault(spec.name, rule)
                if spec.wire and wire_rule is not None:
                    rules.setdefault(spec.wire, wire_rule)
    return rules


SCHEMA_RULES: Mapping[str, FieldRule] = _schema_rules()
"""Masking rules by common-schema field name and by wire short code."""

# Identifiers of records and entries, never scanned for numbers (see the module docstring).
STRUCTURAL_KEYS = frozenset({
    "case_no", "case", "record_key", "record", "receipt", "receipt_id", "idempotency_key", "idem_key", "hash",
    "prev_hash", "payload_hash", "sha256", "statement_hash", "manifest_hash", "decision_no", "alert_id",
    "correlation_id", "remote_id", "seq", "id", "SBLSH", "@id",
})


def _is_person(d: Mapping[str, Any], rule: FieldRule) -> bool:
    test = rule.person
    if test is None or test is _ALWAYS:
        return True

    def get(name: str | None) -> str | None:
        key = rule.keys.get(name) if name else None
        if key is None:
            return None
        value = d.get(key)
        if value is None or value == "":
            return None
        text = value.get("#text") if isinstance(value, Mapping) else value
        text = str(text).strip()
        table = rule.translate.get(name)  # type: ignore[arg-type]
        return table.get(text, text) if table is not None else text

    kind = get(test.type_field)
    if kind is not None and kind in test.person_types:
        return True
    doc = get(test.doc_type_field)
    if doc is not None and doc in PERSONAL_DOCUMENTS:
        return True
    credits = [get(f) for f in test.credit_fields]
    # A 统一社会信用代码 issued to a 个体工商户 starts with 92 (GB 32100: 9 工商, 2 个体工商户).
    if any(c is not None and len(c) == 18 and c.startswith("92") for c in credits):
        return True
    return kind is None and doc is None and all(c is None for c in credits)


def _mask_value(value: Any, how: str) -> Any:
    if value is None or value == "":
        return value
    if isinstance(value, str):
        if how == "phone":
            return mask_phone(value)
        if how == "address":
            return mask_address(value)
        if how == "name":
            return mask_name(value)
        return mask_id(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return _mask_value(str(value), how)
    if isinstance(value, list):
        return [_mask_value(v, how) for v in value]
    if isinstance(value, Mapping):  # an XML element with attributes: {"#text": …, "@type": …}
        return {k: _mask_value(v, how) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- trees


class _Walker:
    """One masking pass over a JSON-like value with a fixed rule set and the names found in it.

    The hot loops test ``type(x) is dict`` rather than ``isinstance(x, Mapping)``: list pages
    mask thousands of rows and the ABC check costs more than the masking itself.
    """

    __slots__ = ("rules", "name_keys", "names")

    def __init__(self, rules: Mapping[str, FieldRule], name_keys: frozenset[str]) -> None:
        self.rules = rules
        self.name_keys = name_keys
        self.names: list[str] = []

    def collect(self, value: Any) -> None:
        """Find the names of natural persons in ``value`` (first pass)."""
        t = type(value)
        if t is dict:
            hits = value.keys() & self.name_keys
            for key in hits:
                item = value[key]
                rule = self.rules[key]
                if type(item) is str and len(item.strip()) >= 2 and _is_person(value, rule):
                    name = item.strip()
                    if name not in self.names:
                        self.names.append(name)
            for item in value.values():
                if type(item) is dict or type(item) is list:
                    self.collect(item)
        elif t is list:
            for item in value:
                if type(item) is dict or type(item) is list:
                    self.collect(item)
        elif isinstance(value, Mapping):
            self.collect(dict(value))

    def mask(self, value: Any, structural: bool = False) -> Any:
        t = type(value)
        if t is str:
            return value if structural else mask_text(value, self.names)
        if t is dict:
            out: dict[Any, Any] = {}
            rules = self.rules
            names = self.names
            for key, item in value.items():
                rule = rules.get(key)
                ti = type(item)
                if rule is not None:
                    if rule.how != "name" or _is_person(value, rule):
                        out[key] = _mask_value(item, rule.how)
                    else:
                        out[key] = self.mask(item)
                elif ti is str:
                    out[key] = item if key in STRUCTURAL_KEYS else mask_text(item, names)
                elif ti is dict or ti is list:
                    out[key] = self.mask(item, key in STRUCTURAL_KEYS)
                elif isinstance(item, Mapping):
                    out[key] = self.mask(dict(item), key in STRUCTURAL_KEYS)
                else:
                    out[key] = item
            return out
        if t is list:
            return [self.mask(v, structural) for v in value]
        if isinstance(value, Mapping):
            return self.mask(dict(value), structural)
        if isinstance(value, str):  # a str subclass
            return self.mask(str(value), structural)
        return value


def _with_attributes(rules: Mapping[str, FieldRule]) -> dict[str, FieldRule]:
    """The rules also under ``@key``: an XML attribute read into a dict keeps its ``@``."""
    return {**{"@" + k: r for k, r in rules.items()}, **rules}


def _name_keys(rules: Mapping[str, FieldRule]) -> frozenset[str]:
    return frozenset(k for k, r in rules.items() if r.how == "name")


_SCHEMA_RULES_ALL = _with_attributes(SCHEMA_RULES)
_SCHEMA_NAME_KEYS = _name_keys(_SCHEMA_RULES_ALL)


def mask_tree(value: Any, rules: Mapping[str, FieldRule] | None = None) -> Any:
    """A masked copy of ``value`` (dicts, lists, strings at any depth); the input is not changed.

    ``rules`` adds to the schema's rules (a counterpart's own keys, see :func:`payload_rules`).
    Names of natural persons found anywhere in ``value`` are masked everywhere in it, so pass
    one record (or one row) at a time, not a whole page: a name belongs to its own record.
    """
    return masker_for(rules)(value)


# --------------------------------------------------------------------------- counterpart payloads


PayloadRules = Mapping[str, FieldRule]


def payload_rules(mapping: Any) -> dict[str, FieldRule]:
    """Rules for the counterpart's own keys (``applicantIdNo`` …) that an inbound mapping reads into fields
    the schema masks, learned from the mapping itself; names carry the keys and code tables that say
    whether the holder is a natural person (``applicantType`` through ``hall.applicant_type``)."""
    rules: dict[str, FieldRule] = {}
    for output in getattr(getattr(mapping, "plan", None), "outputs", ()):
        raw_key: dict[str, str] = {}
        table: dict[str, Mapping[str, str]] = {}
        for rule in output.rules:
            if rule.spec is None:
                continue
            source = rule.source
            steps = [s for s in source.path if isinstance(s, str)]
            if source.type == "path" and steps:
                raw_key[rule.spec.name] = steps[-1]
                if rule.lookup is not None:
                    table[rule.spec.name] = rule.lookup.table
        for rule in output.rules:
            spec = rule.spec
            if spec is None:
                continue
            keys = []
            for src in (rule.source, *rule.source.items):  # a concat / first_nonempty reads several
                last = next((step for step in reversed(src.path) if isinstance(step, str)), None)
                if src.type == "path" and last:
                    keys.append(last)
            if spec.personal:
                made = FieldRule(_how(spec.name, spec.type))
            elif spec.name in _NAME_FIELDS:
                test = _NAME_FIELDS[spec.name]
                names = [n for n in (test.type_field, test.doc_type_field, *test.credit_fields) if n]
                made = FieldRule("name", test, {n: raw_key[n] for n in names if n in raw_key},
                                 {n: table[n] for n in names if n in table})
            else:
                continue
            for key in keys:
                rules.setdefault(key, made)
    return rules


# --------------------------------------------------------------------------- quarantine errors


def mask_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """A field error (``{field, rule, value, message, …}``) safe to store in the audit trail and show.

    The value of a personal field is masked by its kind (the schema masked it already, by
    a cruder rule), a name field's value is masked as a name whoever holds it (the record
    that would say whether it is a person's failed), and any other value and the message
    have ID and mobile numbers masked.
    """
    out = dict(error)
    value = out.get("value")
    rule = SCHEMA_RULES.get(str(out.get("field") or ""))
    if isinstance(value, str) and value:
        out["value"] = _mask_value(value, rule.how) if rule is not None else mask_text(value)
    message = out.get("message")
    if isinstance(message, str):
        out["message"] = mask_text(message)
    return out


# --------------------------------------------------------------------------- logs


class MaskingFormatter(logging.Formatter):
    """Formats as the wrapped formatter does, then masks ID and mobile numbers in the whole line."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(self.inner.format(record))


def install_log_masking(handlers: Iterable[logging.Handler] | None = None) -> None:
    """Wrap the formatter of each handler (default: the root logger's) so log lines leave masked."""
    for handler in handlers if handlers is not None else logging.getLogger().handlers:
        if not isinstance(handler.formatter, MaskingFormatter):
            handler.setFormatter(MaskingFormatter(handler.formatter))


def masker_for(rules: Mapping[str, FieldRule] | None) -> Callable[[Any], Any]:
    """``value -> masked copy`` with ``rules`` bound (for masking many rows with one counterpart's keys)."""
    merged = _SCHEMA_RULES_ALL if not rules else _with_attributes({**SCHEMA_RULES, **rules})
    name_keys = _SCHEMA_NAME_KEYS if not rules else _name_keys(merged)

    def run(value: Any) -> Any:
        walker = _Walker(merged, name_keys)
        walker.collect(value)
        return walker.mask(value)

    return run
