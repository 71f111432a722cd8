"""File-drop adapter: take records from files a counterpart drops into a folder, and drop files for it.

Front-end machines (前置机) between isolated networks exchange files this way.  The
source claims each complete file, ingests it in committed batches and files it under
``done/`` or ``error/``; the sink writes one file per delivery.  Public surface:
:data:`ADAPTER` (registered as ``filedrop``), the configuration models, the source
and the sink.  Everything in ``_``-modules may change.
"""

from __future__ import annotations

from gateway.adapters import Adapter

from ._config import FiledropConfig, FiledropSinkConfig
from ._sink import FiledropSink, file_name
from ._source import FiledropSource, FileStats, claimed_name, is_temporary, original_name

__version__ = "1.0.0"


def make_source(system: str, config: FiledropConfig) -> FiledropSource:
    return FiledropSource(system, config)


def make_sink(destination: str, config: FiledropSinkConfig) -> FiledropSink:
    return FiledropSink(destination, config)


ADAPTER = Adapter(
    name="filedrop",
    version=__version__,
    description="Drop folders: claim complete files (rename or .done marker), ingest in committed batches, "
    "file them under done/ or error/; write one file per delivery for outgoing folders.",
    source_config=FiledropConfig,
    sink_config=FiledropSinkConfig,
    make_source=make_source,
    make_sink=make_sink,
)

__all__ = [
    "ADAPTER",
    "FileStats",
    "FiledropConfig",
    "FiledropSink",
    "FiledropSinkConfig",
    "FiledropSource",
    "claimed_name",
    "file_name",
    "is_temporary",
    "original_name",
]
