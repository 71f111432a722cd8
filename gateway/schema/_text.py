"""Which characters a value of the common schema may hold, and the one normal form text is stored in.

Rules (documented for users in docs/strict-input.md):

* every text value is normalised to Unicode NFC, so that the same name typed on two
  systems (a precomposed character, or a CJK compatibility ideograph) is stored and
  compared as the same string;
* free text refuses C0 and C1 control characters other than TAB, LF and CR, DEL, and
  lone surrogates (rule ``control_char`` / ``invalid_char``);
* identifiers and business keys (case numbers, record keys, codes, credit codes, ID and
  licence numbers) also refuse TAB, LF, CR, the Unicode line and paragraph separators
  (``control_char``), bidirectional controls such as U+202E (``bidi_char``), zero-width
  and other invisible format characters such as U+200B and U+FEFF (``invisible_char``),
  and private-use or unassigned code points (``invalid_char``).  Spaces are not refused
  here: identifier normalisation removes them.

The checks are written for the hot path: ``str.isprintable()`` is true for nearly every
real value (ASCII, Chinese), and only a value it rejects is looked at character by
character.
"""

from __future__ import annotations

import re
import unicodedata

BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Unicode bidirectional formatting characters: they reorder what a reader sees ("Trojan source")."""

# C0 controls except TAB (09), LF (0A) and CR (0D); DEL; C1 controls; surrogate code points.
_TEXT_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

TEXT_RULES = ("control_char", "bidi_char", "invisible_char", "invalid_char")
"""Rule names a character check can give."""


# Unicode gives control characters no names; these are the ones data actually carries.
_CONTROL_NAMES = {
    0x00: "NULL", 0x07: "BELL", 0x08: "BACKSPACE", 0x09: "CHARACTER TABULATION", 0x0A: "LINE FEED",
    0x0B: "LINE TABULATION", 0x0C: "FORM FEED", 0x0D: "CARRIAGE RETURN", 0x1A: "SUBSTITUTE", 0x1B: "ESCAPE",
    0x7F: "DELETE", 0x85: "NEXT LINE",
}


def describe_char(char: str) -> str:
    """``U+202E RIGHT-TO-LEFT OVERRIDE``: a character named the way a user can look it up."""
    name = unicodedata.name(char, "") or _CONTROL_NAMES.get(ord(char), "")
    if not name:
        name = {"Cc": "a control character", "Cs": "a lone surrogate", "Co": "a private-use character"}.get(
            unicodedata.category(char), "an unassigned code point"
        )
    return f"U+{ord(char):04X} {name}"


def _where(value: str, index: int, char: str) -> str:
    return f"{describe_char(char)} at character {index + 1}"


def unsafe_in_text(value: str) -> tuple[str, str] | None:
    """``(rule, detail)`` when free text holds a character it may not, else None."""
    if value.isprintable():
        return None
    found = _TEXT_UNSAFE.search(value)
    if found is None:
        return None
    char = found.group()
    if "\ud800" <= char <= "\udfff":
        return "invalid_char", _where(value, found.start(), char)
    return "control_char", _where(value, found.start(), char)


def unsafe_in_identifier(value: str) -> tuple[str, str] | None:
    """``(rule, detail)`` when an identifier or business key holds a character it may not, else None."""
    if value.isprintable():
        return None
    for index, char in enumerate(value):
        if char.isprintable():
            continue
        category = unicodedata.category(char)
        if category == "Zs":
            continue  # a space of some width: identifier normalisation removes it
        if category in ("Cc", "Zl", "Zp"):
            return "control_char", _where(value, index, char)
        if char in BIDI_CONTROLS:
            return "bidi_char", _where(value, index, char)
        if category == "Cf":
            return "invisible_char", _where(value, index, char)
        return "invalid_char", _where(value, index, char)
    return None


def nfc(value: str) -> str:
    """Unicode NFC (a no-op, without a copy, for text already in NFC)."""
    return unicodedata.normalize("NFC", value)


def escape_unprintable(value: str) -> str:
    """``value`` with every character ``isprintable`` rejects (other than spaces) written as a
    ``\\u`` escape of four hex digits (``\\u0000``).

    Used wherever a value is shown to people (errors, findings, logs), so a control or
    bidi character in data can neither garble a terminal nor reorder what a reader sees.
    """
    if value.isprintable():
        return value
    out = []
    for char in value:
        if char.isprintable() or unicodedata.category(char) == "Zs":
            out.append(char)
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)
