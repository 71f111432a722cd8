"""Checks for the national identifiers that records carry, and masking of personal ones.

Every ``check_*`` function takes an already normalised value (see :func:`normalize`)
and returns ``None`` when it is valid or the name of the rule it breaks
(``"credit_code_check"``, ``"id_number_birth_date"`` …); :data:`RULE_MESSAGES`
says what each rule means in words a user can act on.  The functions are on the
hot ingest path, so they avoid allocations beyond what the arithmetic needs.
"""

from __future__ import annotations

import datetime as _dt
from operator import mul as _mul

__all__ = [
    "CREDIT_CODE_CHARS",
    "RULE_MESSAGES",
    "check_credit_code",
    "check_document",
    "check_id_number",
    "check_license_id",
    "check_org_code",
    "check_region_code",
    "credit_code_check_char",
    "id_number_check_char",
    "license_id_check_char",
    "mask",
    "normalize",
    "org_code_check_char",
]

# --------------------------------------------------------------------------- GB 32100 统一社会信用代码

CREDIT_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""The 31 symbols of GB 32100 (no I, O, S, V, Z); a symbol's value is its index."""

_CC_VALUE = {c: i for i, c in enumerate(CREDIT_CODE_CHARS)}
_CC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

# GB 11714 组织机构代码: body characters are digits and upper-case letters (A = 10 … Z = 35).
_ORG_VALUE = {c: i for i, c in enumerate("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")}
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def org_code_check_char(body: str) -> str:
    """GB 11714 check character for the first 8 characters of an organisation code."""
    total = sum(map(_mul, _ORG_WEIGHTS, [_ORG_VALUE[c] for c in body[:8]]))
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def check_org_code(value: str) -> str | None:
    """组织机构代码 (GB 11714): 8 body characters and a check character, without the hyphen."""
    if len(value) == 10 and value[8] == "-":  # printed form "12345678-9"
        value = value[:8] + value[9]
    if len(value) != 9:
        return "org_code_length"
    try:
        expected = org_code_check_char(value)
    except KeyError:
        return "org_code_charset"
    if value[8] != expected:
        return "org_code_check"
    return None


def credit_code_check_char(body: str) -> str:
    """GB 32100 check character for the first 17 characters of a credit code."""
    total = sum(map(_mul, _CC_WEIGHTS, [_CC_VALUE[c] for c in body[:17]]))
    return CREDIT_CODE_CHARS[(31 - total % 31) % 31]


# Byte translation tables: a character's value in one C-level pass (0xFF marks "not allowed").
_CC_BYTES = bytes(_CC_VALUE.get(chr(b), 0xFF) for b in range(256))
_ORG_BYTES = bytes(_ORG_VALUE.get(chr(b), 0xFF) for b in range(256))


def check_credit_code(value: str) -> str | None:
    """统一社会信用代码 (GB 32100-2015), including the embedded GB 11714 organisation code."""
    if len(value) != 18:
        return "credit_code_length"
    if not value.isascii():
        return "credit_code_charset"
    raw = value.encode("ascii")
    values = raw.translate(_CC_BYTES)
    if 0xFF in values:
        return "credit_code_charset"
    if CREDIT_CODE_CHARS[(31 - sum(map(_mul, _CC_WEIGHTS, values)) % 31) % 31] != value[17]:
        return "credit_code_check"
    # characters 9-17 are the organisation code; its own check character is the 17th
    check = 11 - sum(map(_mul, _ORG_WEIGHTS, raw[8:16].translate(_ORG_BYTES))) % 11
    if value[16] != ("X" if check == 10 else "0" if check == 11 else _DIGITS[check]):
        return "credit_code_org_check"
    return None


_DIGITS = "0123456789"

# --------------------------------------------------------------------------- GB 11643 居民身份证号

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# Every valid "MMDD" (29 February included; its year is checked apart): 366 strings.
_MONTH_DAYS = frozenset(f"{month:02d}{day:02d}" for month, last in
                        enumerate((31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31), 1) for day in range(1, last + 1))


def _is_date(yyyymmdd: str) -> bool:
    """True when the string is eight ASCII digits naming a real calendar date (years 0001-9999).

    Compared as text (about 0.2 µs a call): no memo, so nothing grows with the values a file holds
    (the memo this replaced held up to 200,000 strings: 19 MB of one process's memory when a file
    sends eight random digits where a date belongs), and no ``int()``, which reads " 9", "+9" and
    other scripts' digits as a month or day.
    """
    if len(yyyymmdd) != 8 or not yyyymmdd.isascii() or not yyyymmdd.isdigit():
        return False
    month_day = yyyymmdd[4:]
    if month_day not in _MONTH_DAYS or yyyymmdd[:4] == "0000":
        return False
    if month_day == "0229":
        year = int(yyyymmdd[:4])
        return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return True


def id_number_check_char(body: str) -> str:
    """ISO 7064 MOD 11-2 check character for the first 17 digits of an identity card number."""
    return _ID_CHECK[sum(map(_mul, _ID_WEIGHTS, map(int, body[:17]))) % 11]


_ID_DIGIT_OFFSET = 48 * sum(_ID_WEIGHTS)  # the weighted sum of ASCII "0"s, removed in one step


def check_id_number(value: str) -> str | None:
    """居民身份证号 (GB 11643): 18 characters, MOD 11-2 check, positions 7-14 a real birth date."""
    if len(value) != 18:
        return "id_number_length"
    body = value[:17]
    if not (body.isdigit() and body.isascii()) or value[17] not in "0123456789X":
        return "id_number_charset"
    birth = value[6:14]
    if not _is_date(birth) or birth < "1900" or not _not_in_future(birth):
        return "id_number_birth_date"
    # weighted sum over the ASCII codes, minus the weighted "0"s: no int() per digit
    if _ID_CHECK[(sum(map(_mul, _ID_WEIGHTS, body.encode("ascii"))) - _ID_DIGIT_OFFSET) % 11] != value[17]:
        return "id_number_check"
    return None


_latest_today = ["00000000"]  # YYYYMMDD of the latest "today" seen; only ever moves forward


def _not_in_future(yyyymmdd: str) -> bool:
    """True when the date is not after today (asks the clock only for dates past the last today seen)."""
    if yyyymmdd <= _latest_today[0]:
        return True
    _latest_today[0] = _dt.date.today().strftime("%Y%m%d")
    return yyyymmdd <= _latest_today[0]


def check_document(id_type: str | None, value: str) -> str | None:
    """Check a 证件号码 by its 证件类型 (GA/T 2000.156 code).

    111 居民身份证 → GB 11643; 821 营业执照 → the 18-character 统一社会信用代码 (GB 32100)
    or the old 15-digit 注册号; 811 组织机构代码证 → GB 11714.  Other document types
    have no check the gateway can apply.
    """
    if id_type == "111":
        return check_id_number(value)
    if id_type == "821":
        if len(value) == 18:
            return check_credit_code(value)
        if len(value) == 15 and value.isdigit() and value.isascii():
            return None
        return "business_license_length"
    if id_type == "811":
        return check_org_code(value)
    return None


# --------------------------------------------------------------------------- GB/T 2260 行政区划代码

# Province-level prefixes of GB/T 2260; "10" is accepted only as 100000, the code many
# service platforms use for central-government departments.
_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 "
    "50 51 52 53 54 61 62 63 64 65 71 81 82".split()
)
_NATIONAL = frozenset({"100000", "100000000", "100000000000"})


def check_region_code(value: str) -> str | None:
    """行政区划代码: 6 digits (GB/T 2260) or the 9 / 12 digit statistical forms."""
    n = len(value)
    if n != 6 and n != 9 and n != 12:
        return "region_code_length"
    if not (value.isdigit() and value.isascii()):
        return "region_code_charset"
    if value[:2] not in _PROVINCES and value not in _NATIONAL:
        return "region_code_province"
    return None


# --------------------------------------------------------------------------- GB/T 36904 电子证照标识

LICENSE_ID_PREFIX = "1.2.156.3005.2"
_LICENSE_PARTS = 10  # 1 2 156 3005 2 type issuer serial version check
_MOD36 = {c: i for i, c in enumerate("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")}
_MOD36_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def license_id_check_char(body: str) -> str:
    """ISO/IEC 7064 MOD 37,36 (hybrid system) check character over ``body`` (dots removed)."""
    p = 36
    for c in body:
        s = (p + _MOD36[c]) % 36 or 36
        p = (s * 2) % 37
    return _MOD36_CHARS[(37 - p) % 36]


def check_license_id(value: str) -> str | None:
    """电子证照标识: ``1.2.156.3005.2.{type}.{issuer credit code}.{serial}.{version}.{check}``."""
    parts = value.split(".")
    if len(parts) != _LICENSE_PARTS or not all(parts):
        return "license_id_format"
    if ".".join(parts[:5]) != LICENSE_ID_PREFIX:
        return "license_id_prefix"
    if len(parts[9]) != 1:
        return "license_id_format"
    if check_credit_code(parts[6]) is not None:
        return "license_id_issuer"
    body = "".join(parts[:9])
    if any(c not in _MOD36 for c in body) or parts[9] not in _MOD36:
        return "license_id_charset"
    if license_id_check_char(body) != parts[9]:
        return "license_id_check"
    return None


# --------------------------------------------------------------------------- normalisation and masking

# Full-width ASCII variants (U+FF01-U+FF5E) and the ideographic space, as typed on Chinese IMEs.
_HALFWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_HALFWIDTH[0x3000] = 0x20
_WHITESPACE_DROP = dict.fromkeys(map(ord, " \t\r\n\u00a0"), None)


def normalize(value: str) -> str:
    """Identifier normalisation: full-width → half-width, drop whitespace, upper-case."""
    if not value.isascii():
        value = value.translate(_HALFWIDTH)
    if " " in value or "\t" in value or "\n" in value or "\r" in value or "\u00a0" in value:
        value = value.translate(_WHITESPACE_DROP)
    return value.upper()


def mask(value: str | None) -> str:
    """Mask a personal identifier for logs and errors: keep the first 6 and the last 4 characters.

    Short values keep proportionally less (a phone number keeps 3 + 4) so that the
    masked form never reveals most of the value.
    """
    if not value:
        return ""
    n = len(value)
    if n >= 15:
        return value[:6] + "*" * (n - 10) + value[-4:]
    if n >= 11:
        return value[:3] + "*" * (n - 7) + value[-4:]
    if n >= 4:
        keep = n // 4
        return value[:keep] + "*" * (n - 2 * keep) + value[n - keep :]
    return "*" * n


RULE_MESSAGES: dict[str, str] = {
    "credit_code_length": "统一社会信用代码 must be 18 characters (GB 32100)",
    "credit_code_charset": "统一社会信用代码 uses only 0-9 and A-Z without I, O, S, V, Z (GB 32100)",
    "credit_code_check": "统一社会信用代码 check character (18th) does not match (GB 32100)",
    "credit_code_org_check": "the embedded 组织机构代码 (characters 9-17) fails its GB 11714 check",
    "org_code_length": "组织机构代码 must be 9 characters (GB 11714)",
    "org_code_charset": "组织机构代码 uses only digits and upper-case letters (GB 11714)",
    "org_code_check": "组织机构代码 check character does not match (GB 11714)",
    "id_number_length": "居民身份证号 must be 18 characters (the old 15-digit form is not accepted)",
    "id_number_charset": "居民身份证号 is 17 digits and a digit or X",
    "id_number_birth_date": "居民身份证号 positions 7-14 are not a plausible birth date",
    "id_number_check": "居民身份证号 check character does not match (GB 11643, MOD 11-2)",
    "business_license_length": "营业执照号码 must be the 18-character 统一社会信用代码 or the old 15-digit 注册号",
    "region_code_length": "行政区划代码 must have 6, 9 or 12 digits",
    "region_code_charset": "行政区划代码 must be digits only",
    "region_code_province": "行政区划代码 does not start with a province code of GB/T 2260",
    "license_id_format": "电子证照标识 must read 1.2.156.3005.2.{type}.{issuer}.{serial}.{version}.{check}",
    "license_id_prefix": "电子证照标识 must start with 1.2.156.3005.2 (GB/T 36904)",
    "license_id_issuer": "电子证照标识 issuer part is not a valid 统一社会信用代码",
    "license_id_charset": "电子证照标识 uses only digits and upper-case letters between the dots",
    "license_id_check": "电子证照标识 check character does not match (ISO/IEC 7064 MOD 37,36)",
}
