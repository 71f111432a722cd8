"""Mapping files → compiled callables, inbound (counterpart payload → common records) and outbound.

Public surface::

    from gateway.mapping import load_mapping, MappingError, InboundMapping, OutboundMapping, Mapped
    m = load_mapping("mappings/provincial_approvedatainfo.in.yaml")
    for record in m.map(payload): ...
"""

from gateway.mapping._errors import MappingError
from gateway.mapping._inbound import InboundMapping, OverrideError
from gateway.mapping._load import load_mapping
from gateway.mapping._model import Mapped, MappedRecord
from gateway.mapping._outbound import OutboundMapping
from gateway.mapping._runtime import DATETIME_FORMATS, TEXT_FUNCTIONS

__all__ = [
    "DATETIME_FORMATS",
    "TEXT_FUNCTIONS",
    "InboundMapping",
    "Mapped",
    "MappedRecord",
    "MappingError",
    "OutboundMapping",
    "OverrideError",
    "load_mapping",
]
