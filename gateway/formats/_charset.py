"""The charset rule for bodies that arrive with a declared charset (HTTP ``Content-Type: …; charset=``).

A declared charset is honoured or the body is refused; it is never guessed around,
and text is never stored as mojibake (docs/strict-input.md):

* UTF-8 (any alias) or no charset: decoded as UTF-8, strictly (a BOM is skipped).
  JSON is UTF-8 by RFC 8259 §8.1; XML without a declaration is UTF-8 too.
* GB18030, GBK, GB2312: decoded as GB18030 (GBK and GB2312 are subsets of it), strictly.
* US-ASCII, and any other charset that agrees with ASCII on ASCII bytes (ISO-8859-1,
  windows-1252 …): honoured for a body that is entirely ASCII, because every such
  charset reads it identically.  A body with other bytes is refused (415,
  ``charset_unsupported``): a UTF-8 body declared as latin-1 would otherwise be stored
  as mojibake, and a real Latin-1 body has no business in a Chinese exchange.
* Any other charset (UTF-16, UTF-32, EBCDIC …) or an unknown name: refused (415).

Bytes that are not valid in the charset honoured are refused with 400 (``encoding``),
naming the byte offset.
"""

from __future__ import annotations

import codecs
import re

_GB = frozenset({"gb18030", "gbk", "gb2312", "cp936", "ms936", "euc_cn", "hz"})
_ASCII_PROBE = bytes(range(0x20, 0x7F)) + b"\t\r\n"
_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']", re.IGNORECASE)


class CharsetRefused(Exception):
    """A body refused under the charset rule: ``status`` 415 (charset) or 400 (bytes), ``rule`` names why."""

    def __init__(self, status: int, rule: str, message: str, **detail: object) -> None:
        super().__init__(message)
        self.status = status
        self.rule = rule
        self.message = message
        self.detail = detail


def _lookup(charset: str) -> str:
    try:
        return codecs.lookup(charset).name
    except LookupError:
        raise CharsetRefused(415, "charset_unsupported", f"unknown charset {charset!r} in Content-Type; "
                             "send UTF-8 (charset=utf-8)", charset=charset) from None


def _ascii_compatible(codec: str) -> bool:
    try:
        return _ASCII_PROBE.decode(codec) == _ASCII_PROBE.decode("ascii")
    except (UnicodeDecodeError, LookupError):
        return False


def honoured_codec(body: bytes, charset: str | None, what: str = "JSON") -> str:
    """The codec the rule decodes ``body`` with ("utf-8", "utf-8-sig", "gb18030" or "ascii"), or a refusal."""
    if not charset:
        return "utf-8-sig" if body.startswith(codecs.BOM_UTF8) else "utf-8"
    codec = _lookup(charset.strip().strip('"'))
    if codec in ("utf-8", "utf-8-sig"):
        return "utf-8-sig" if body.startswith(codecs.BOM_UTF8) else "utf-8"
    if codec in _GB:
        return "gb18030"
    if codec == "ascii" or _ascii_compatible(codec):
        if body.isascii():
            return "ascii"
        valid_utf8 = True
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            valid_utf8 = False
        hint = (" Its bytes are valid UTF-8, so it probably is UTF-8 declared wrongly: send charset=utf-8."
                if valid_utf8 else " Send it as UTF-8 (charset=utf-8) or GB18030.")
        raise CharsetRefused(
            415, "charset_unsupported",
            f"the body declares charset={charset} and holds non-ASCII bytes; {what} is accepted as UTF-8 "
            f"(or GB18030), and another charset is honoured only for a body that is pure ASCII.{hint}",
            charset=charset,
        )
    raise CharsetRefused(415, "charset_unsupported",
                         f"charset={charset} is not accepted for {what}; send UTF-8 (charset=utf-8) or GB18030",
                         charset=charset)


def decode_body(body: bytes, charset: str | None, what: str = "JSON") -> str:
    """``body`` as text under the charset rule; raises :class:`CharsetRefused`."""
    codec = honoured_codec(body, charset, what)
    try:
        return body.decode(codec)
    except UnicodeDecodeError as exc:
        shown = body[exc.start : exc.start + 4].hex(" ")
        label = codec.upper().removesuffix("-SIG")
        raise CharsetRefused(
            400, "encoding",
            f"the body is not valid {label}: byte {exc.start} ({shown}) {exc.reason}; "
            f"{what} must be sent as UTF-8 (or name its charset in Content-Type)",
            encoding=label.lower(), byte_offset=exc.start,
        ) from None


def xml_body_bytes(body: bytes, charset: str | None) -> bytes:
    """An XML body ready for the parser under the charset rule (its own declaration agreeing with the header).

    Without a charset, or with UTF-8/16/32, the document is passed as it is: the parser
    honours its BOM and declaration.  With GB18030 (or a subset) it is decoded and
    handed over as UTF-8 when it declares nothing, and must declare the same family
    when it declares something.  Any other charset follows :func:`honoured_codec`.
    """
    if not charset:
        return body
    codec = _lookup(charset.strip().strip('"'))
    if codec.startswith(("utf-8", "utf-16", "utf-32")):
        return body
    declared = _XML_DECL.match(body)
    if declared is not None:
        try:
            own = codecs.lookup(declared.group(1).decode("ascii")).name
        except LookupError:
            own = declared.group(1).decode("ascii", "replace")
        if own == codec or (own in _GB and codec in _GB):
            return body  # header and document agree; the parser reads the declaration
        if body.isascii() and _ascii_compatible(codec):
            return body
        raise CharsetRefused(415, "charset_mismatch",
                             f"the Content-Type says charset={charset} but the XML declares encoding="
                             f"{declared.group(1).decode('ascii', 'replace')}; send one encoding (UTF-8)",
                             charset=charset)
    codec_used = honoured_codec(body, charset, "XML")
    if codec_used == "ascii":
        return body
    return decode_body(body, charset, "XML").encode("utf-8")
