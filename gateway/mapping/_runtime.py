"""Run-time helpers that compiled mappings call: value coercion, date and number parsing.

Everything here is on the hot path of ingest.  The common cases (a string value,
``YYYYMMDDhhmmss`` or ``YYYY-MM-DD hh:mm:ss`` in China time) take a few string
operations and no ``datetime`` objects; the rare ones fall back to the standard
library.  Problems are raised as :class:`Bad` and turned into FieldErrors by the
compiled function, never out of ``map()``.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.schema.identifiers import _is_date, normalize

CHINA = _dt.timezone(_dt.timedelta(hours=8))
CHINA_SUFFIX = "+08:00"


class Bad(Exception):
    """A value that cannot become what its field needs: ``rule`` names why."""

    __slots__ = ("rule", "value", "detail")

    def __init__(self, rule: str, value: Any, detail: str | None = None) -> None:
        self.rule = rule
        self.value = value
        self.detail = detail


class _Many:
    """A path step that reached a repeated element: any further step is ambiguous."""

    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def get(self, key: Any, default: Any = None) -> Any:
        return self


EMPTY: Mapping[str, Any] = {}


def node(value: Any) -> Any:
    """The next mapping to look into, for a value that is not already a dict."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, list):
        if len(value) == 1:
            return node(value[0])
        return _Many(value) if value else EMPTY
    if isinstance(value, _Many):
        return value
    return EMPTY  # None, "" (an empty XML element) or a scalar: nothing below it


def index(value: Any, i: int) -> Any:
    """Step ``i`` into a list (a repeated XML element, a JSON array); a single item counts as a list of one."""
    if isinstance(value, _Many):
        value = value.items
    if isinstance(value, list):
        return node(value[i]) if -len(value) <= i < len(value) else EMPTY
    if i in (0, -1) and isinstance(value, Mapping) and value:
        return value
    return EMPTY


def item(value: Any, i: int) -> Any:
    """The raw value at index ``i`` of a list (a path ending in an index)."""
    if isinstance(value, _Many):
        value = value.items
    if isinstance(value, list):
        return value[i] if -len(value) <= i < len(value) else None
    if i in (0, -1) and isinstance(value, Mapping) and value:
        return value
    return None


def resolve(payload: Any, path: tuple[str | int, ...]) -> Any:
    """Follow ``path`` through nested mappings and lists (used for ``when:``; fields use inlined steps)."""
    current = payload
    for step in path:
        if isinstance(step, int):
            current = item(node(current) if not isinstance(current, list) else current, step)
        else:
            current = node(current).get(step)
    return current


_BOOLEAN = "a boolean (true / false) is not a value of this field; send the code or text the field holds"


def occurrences(payload: Mapping[str, Any], path: tuple[str | int, ...]) -> list[Any]:
    """Every occurrence of a repeated section (``each:``), in document order.

    A repeated XML element or a JSON array gives its elements; a single section gives
    itself; a repeated section on the way (``SPGUOCHENGS/SPGUOCHENG`` with several
    wrappers) is flattened.  Empty occurrences (``<SPGUOCHENG/>``, ``{}``) are left out.
    """
    current: list[Any] = [payload]
    for step in path:
        found: list[Any] = []
        for value in current:
            if isinstance(value, _Many):
                value = value.items
            if isinstance(value, list):
                found.extend(v.get(step) if isinstance(v, Mapping) else None for v in value)
            elif isinstance(value, Mapping):
                found.append(value.get(step))
        current = []
        for value in found:
            if isinstance(value, list):
                current.extend(value)
            elif value is not None:
                current.append(value)
    return [value for value in current if present(value)]


def text(value: Any) -> str:
    """The text of a non-str value for a number field: "" for nothing, digits for numbers.

    Booleans and structures are errors: ``true`` is not a number, and a path that ends
    at a section instead of a value is a mapping mistake to report, not to guess at.
    """
    if value is None:
        return ""
    cls = value.__class__
    if cls is int or cls is Decimal:
        return str(value)
    if cls is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise Bad("value_type", value, "not a finite number")
        return repr(value) if not value.is_integer() else str(int(value))
    if cls is bool:
        raise Bad("type", value, _BOOLEAN)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, _Many):
        raise Bad("path_ambiguous", f"{len(value.items)} repeated elements")
    if isinstance(value, Mapping):
        inner = value.get("#text")
        if isinstance(inner, str):
            return inner  # an XML element with attributes: its text
        raise Bad("value_type", value, "the path ends at a structure, not a value")
    if isinstance(value, list):
        if len(value) == 1:
            return text(value[0])
        if not value:
            return ""
        raise Bad("path_ambiguous", f"{len(value)} repeated values")
    raise Bad("value_type", value, f"unexpected {cls.__name__}")


def text_strict(value: Any) -> str:
    """:func:`text` for identifier, code and date fields: whole numbers only, no booleans or fractions.

    A JSON ``12345`` may be a case number (its digits are exact); ``true`` or ``1.5e3``
    may not, because the text the counterpart meant cannot be recovered from them.
    """
    cls = value.__class__
    if (cls is float and value == value and value not in (float("inf"), float("-inf"))) or cls is Decimal:
        raise Bad("type", value, "a number with a fraction or an exponent is not text; send it as a JSON string")
    return text(value)  # which refuses booleans, structures and non-finite numbers in its own words


def present(value: Any) -> bool:
    """For ``when: exists``: a value that is not None, not blank and not an empty structure."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (Mapping, list)):
        return bool(value)
    return not isinstance(value, _Many) or bool(value.items)


MULTI_SPLIT = re.compile(r"\s*[;；,，、]\s*")


def split_multi(value: str) -> list[str]:
    """Parts of a field holding several codes ("警告；罚款、没收违法所得")."""
    return [p for p in MULTI_SPLIT.split(value) if p]


def normalize_multi(value: str) -> str:
    return ";".join(split_multi(value))


def lookup_multi(value: str, table: Mapping[str, str], on_missing: str, default: str | None, name: str) -> str:
    out = []
    for part in split_multi(value):
        code = table.get(part)
        if code is None:
            if on_missing == "error":
                raise Bad("code_unknown", part, f"not in {name}")
            code = default if on_missing == "default" else part
        if code not in out:
            out.append(code)
    return ";".join(out)


# --------------------------------------------------------------------------- numbers

_INT_RE = re.compile(r"[+-]?\d+(?:\.0*)?\Z", re.ASCII)
_DEC_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z", re.ASCII)


_INT_DIGITS = 19  # 2**63 - 1 has 19 digits: anything longer is out of range before int() is asked


def to_int(value: Any) -> int:
    if value.__class__ is int:
        return value
    s = value if isinstance(value, str) else text(value)
    if s.isdigit() and s.isascii() and len(s) <= _INT_DIGITS:
        return int(s)
    if _INT_RE.match(s) is None:
        raise Bad("int_format", value)
    whole = s.split(".", 1)[0].lstrip("+-").lstrip("0")
    if len(whole) > _INT_DIGITS:
        raise Bad("int_range", value, "more than 64 bits")
    return int(s.split(".", 1)[0])


def to_decimal(value: Any) -> str:
    """A canonical decimal string ("1250.5"); never passes through a float."""
    s = value if isinstance(value, str) else text(value)
    if _DEC_RE.match(s) is None:
        raise Bad("decimal_format", value)
    try:
        d = Decimal(s)
    except InvalidOperation as exc:  # pragma: no cover - the pattern already rules these out
        raise Bad("decimal_format", value) from exc
    out = format(d, "f")
    return "0" if out in ("-0", "+0") else out


# --------------------------------------------------------------------------- text functions

_HALFWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_HALFWIDTH[0x3000] = 0x20
_SPACES = re.compile(r"\s+")


def halfwidth(s: str) -> str:
    return s if s.isascii() else s.translate(_HALFWIDTH)


def collapse_spaces(s: str) -> str:
    return _SPACES.sub(" ", s)


def remove_spaces(s: str) -> str:
    return _SPACES.sub("", s)


def identifier(s: str) -> str:
    """Identifier normalisation: full-width → half-width, no whitespace, upper-case."""
    if s.isascii() and " " not in s:
        return s.upper()
    return normalize(s)


def digits(s: str) -> str:
    return "".join(c for c in halfwidth(s) if "0" <= c <= "9")


TEXT_FUNCTIONS: dict[str, Callable[[str], Any]] = {
    "trim": str.strip,
    "upper": str.upper,
    "lower": str.lower,
    "halfwidth": halfwidth,
    "identifier": identifier,
    "collapse_spaces": collapse_spaces,
    "remove_spaces": remove_spaces,
    "digits": digits,
    "int": to_int,
    "decimal": to_decimal,
}
"""The named functions a mapping's ``fn:`` may use, in the order given."""


# --------------------------------------------------------------------------- dates and times

DATETIME_FORMATS = (
    "YYYYMMDDhhmmss",
    "YYYY-MM-DD hh:mm:ss",
    "YYYY/MM/DD hh:mm:ss",
    "ISO8601",
    "YYYY-MM-DD",
    "YYYYMMDD",
    "YYYY/MM/DD",
)
"""The closed set of date/time formats a mapping may name (naive values are in the mapping's zone)."""

AUTO_DATETIME = ("YYYYMMDDhhmmss", "YYYY-MM-DD hh:mm:ss", "ISO8601")
AUTO_DATE = ("YYYY-MM-DD", "YYYYMMDD", "YYYYMMDDhhmmss", "YYYY-MM-DD hh:mm:ss", "ISO8601")


def zone_text(zone: _dt.timezone) -> str:
    """``+08:00`` for a zone (as mappings write it)."""
    offset = zone.utcoffset(None)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def parse_zone(spec: str) -> _dt.timezone | None:
    """``+08:00``, ``Asia/Shanghai``, ``UTC``/``Z`` or ``±hh:mm``; None when not one of those."""
    if spec in ("Asia/Shanghai", "Asia/Chongqing", "PRC", "China"):
        return CHINA
    if spec in ("UTC", "Z", "Etc/UTC"):
        return _dt.UTC
    m = re.fullmatch(r"([+-])(\d{2}):(\d{2})", spec)
    if m is None:
        return None
    hours, minutes = int(m.group(2)), int(m.group(3))
    if hours > 14 or minutes > 59:
        return None
    delta = _dt.timedelta(hours=hours, minutes=minutes)
    return _dt.timezone(-delta if m.group(1) == "-" else delta)


def _time_ok(hh: str, mm: str, ss: str) -> bool:
    # two ASCII digits each, compared as strings: no int() needed
    return "00" <= hh <= "23" and "00" <= mm <= "59" and "00" <= ss <= "59" and (hh + mm + ss).isdigit()


def _split(fmt: str, s: str) -> tuple[str, str, str, str, str, str] | None:
    """Fields of ``s`` in format ``fmt`` as strings (no range checks), or None when the shape differs."""
    n = len(s)
    if fmt == "YYYYMMDDhhmmss":
        if n == 14 and s.isdigit() and s.isascii():
            return s[0:4], s[4:6], s[6:8], s[8:10], s[10:12], s[12:14]
    elif fmt == "YYYY-MM-DD hh:mm:ss" or fmt == "YYYY/MM/DD hh:mm:ss":
        sep = fmt[4]
        if n == 19 and s[4] == sep and s[7] == sep and s[10] == " " and s[13] == ":" and s[16] == ":":
            return s[0:4], s[5:7], s[8:10], s[11:13], s[14:16], s[17:19]
    elif fmt == "YYYY-MM-DD" or fmt == "YYYY/MM/DD":
        sep = fmt[4]
        if n == 10 and s[4] == sep and s[7] == sep:
            return s[0:4], s[5:7], s[8:10], "00", "00", "00"
    elif fmt == "YYYYMMDD":
        if n == 8 and s.isdigit() and s.isascii():
            return s[0:4], s[4:6], s[6:8], "00", "00", "00"
    return None


def _iso(s: str, zone: _dt.timezone) -> _dt.datetime | None:
    # ISO 8601 needs the date, a T (or space) and a time; a bare date is its own format
    if len(s) < 19 or s[4] != "-" or s[10] not in "T ":
        return None
    try:
        value = _dt.datetime.fromisoformat(s)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(CHINA)


def make_datetime_parser(formats: tuple[str, ...], zone: _dt.timezone, *, date_only: bool) -> Callable[[str], str]:
    """A function turning text in one of ``formats`` into the canonical datetime or date string.

    Canonical datetimes are China time with offset ("2026-09-29T10:00:00+08:00");
    naive input is read in ``zone``.  Raises :class:`Bad` ("datetime_format" or
    "date_format") naming the formats tried.
    """
    rule = "date_format" if date_only else "datetime_format"
    tried = ", ".join(formats)
    china = zone == CHINA
    simple = tuple(f for f in formats if f != "ISO8601")
    use_iso = "ISO8601" in formats

    def from_parts(parts: tuple[str, str, str, str, str, str], s: str) -> str | None:
        y, mo, d, hh, mm, ss = parts
        if not _is_date(y + mo + d) or not _time_ok(hh, mm, ss):
            return None
        if china:
            if date_only:
                return f"{y}-{mo}-{d}"
            return f"{y}-{mo}-{d}T{hh}:{mm}:{ss}{CHINA_SUFFIX}"
        local = _dt.datetime(int(y), int(mo), int(d), int(hh), int(mm), int(ss), tzinfo=zone).astimezone(CHINA)
        return local.date().isoformat() if date_only else local.isoformat()

    fast_compact = china and not date_only and formats[:1] == ("YYYYMMDDhhmmss",)
    fast_dashed = china and not date_only and "YYYY-MM-DD hh:mm:ss" in formats

    def parse(s: str) -> str:
        n = len(s)
        # the two forms provincial systems send most, in China time: a few slices, no datetime objects
        if n == 14 and fast_compact and s.isdigit() and s.isascii():
            day = s[:8]
            hh, mm, ss = s[8:10], s[10:12], s[12:14]
            if _is_date(day) and hh < "24" and mm < "60" and ss < "60":
                return f"{s[:4]}-{s[4:6]}-{s[6:8]}T{hh}:{mm}:{ss}+08:00"
        elif n == 19 and fast_dashed and s[4] == "-" and s[7] == "-" and s[10] == " " and s[13] == ":" and s[16] == ":":
            day = s[:4] + s[5:7] + s[8:10]
            hh, mm, ss = s[11:13], s[14:16], s[17:19]
            if (
                day.isdigit() and day.isascii() and (hh + mm + ss).isdigit()
                and _is_date(day) and hh < "24" and mm < "60" and ss < "60"
            ):
                return f"{s[:10]}T{s[11:19]}+08:00"
        for fmt in simple:
            parts = _split(fmt, s)
            if parts is not None:
                out = from_parts(parts, s)
                if out is not None:
                    return out
                raise Bad(rule, s, f"not a real date or time ({fmt})")
        if use_iso:
            value = _iso(s, zone)
            if value is not None:
                return value.date().isoformat() if date_only else value.isoformat()
        raise Bad(rule, s, f"expected one of: {tried}")

    return parse


def make_datetime_formatter(fmt: str, zone: _dt.timezone) -> Callable[[Any], str]:
    """Outbound: canonical datetime or date string → text in ``fmt``, in ``zone``."""

    def render(value: Any) -> str:
        if not isinstance(value, str):
            raise Bad("datetime_format", value, "expected an ISO 8601 string")
        try:
            if len(value) == 10:
                moment = _dt.datetime.fromisoformat(value).replace(tzinfo=CHINA)
                is_date = True
            else:
                moment = _dt.datetime.fromisoformat(value)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=CHINA)
                is_date = False
        except ValueError as exc:
            raise Bad("datetime_format", value, "not ISO 8601") from exc
        if not is_date:
            moment = moment.astimezone(zone)
        if fmt == "ISO8601":
            return moment.date().isoformat() if is_date else moment.isoformat()
        out = fmt.replace("YYYY", f"{moment.year:04d}").replace("MM", f"{moment.month:02d}")
        out = out.replace("DD", f"{moment.day:02d}").replace("hh", f"{moment.hour:02d}")
        return out.replace("mm", f"{moment.minute:02d}").replace("ss", f"{moment.second:02d}")

    return render
