"""Safe, streaming readers for the files and bodies counterpart systems send (XML, CSV, JSON lines, JSON).

Used by the CLI (``ingest``, ``mapping test``), the HTTP inbound endpoints and the
file-drop adapter.  Everything public is re-exported here; the ``_`` modules may change.
The rules they enforce (limits, duplicate keys, charsets, BOMs) are in docs/strict-input.md.
"""

from gateway.formats._charset import CharsetRefused, decode_body, xml_body_bytes
from gateway.formats._items import FileRefused, RawItem
from gateway.formats._json import read_json_text
from gateway.formats._options import DEFAULT_LIMITS, InputLimits, merge_input, override_problems
from gateway.formats._read import FORMATS, format_of, read_items
from gateway.formats._split import Part, split_file
from gateway.formats._xml import element_to_dict, parse_xml_bytes, safe_parser

__all__ = [
    "DEFAULT_LIMITS",
    "FORMATS",
    "CharsetRefused",
    "FileRefused",
    "InputLimits",
    "Part",
    "RawItem",
    "decode_body",
    "element_to_dict",
    "format_of",
    "merge_input",
    "override_problems",
    "parse_xml_bytes",
    "read_items",
    "read_json_text",
    "safe_parser",
    "split_file",
    "xml_body_bytes",
]
