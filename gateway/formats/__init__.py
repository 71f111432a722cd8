"""Safe, streaming readers for the files and bodies counterpart systems send (XML, CSV, JSON lines, JSON).

Used by the CLI (``ingest``, ``mapping test``), the HTTP inbound endpoints and the
file-drop adapter.  Everything public is re-exported here; the ``_`` modules may change.
"""

from gateway.formats._items import FileRefused, RawItem
from gateway.formats._read import FORMATS, format_of, read_items
from gateway.formats._xml import element_to_dict, parse_xml_bytes, safe_parser

__all__ = [
    "FORMATS",
    "FileRefused",
    "RawItem",
    "element_to_dict",
    "format_of",
    "parse_xml_bytes",
    "read_items",
    "safe_parser",
]
