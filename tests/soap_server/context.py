"""An in-memory SourceContext for the SOAP tests and benchmark: cursors are committed with the
batch they came with, as the core's store does, and a "crash" can be staged after N batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.adapters import IngestOutcome, RawRecord


class Crash(Exception):
    """The staged failure of an ingest call: the batch and its cursor are not committed."""


class MemoryContext:
    def __init__(self, system: str = "county-hall", cursors: dict[str, str] | None = None) -> None:
        self.system = system
        self.data_dir = Path(".")
        self.log = logging.getLogger(f"test.soap.{system}")
        self.stopping = asyncio.Event()
        self.cursors: dict[str, str] = dict(cursors or {})
        self.batches: list[list[RawRecord]] = []
        self.cursor_log: list[tuple[str, str] | None] = []
        self.crash_after_batches: int | None = None  # the next ingest after this many raises Crash
        self.stop_after_batches: int | None = None  # set ``stopping`` once this many batches committed
        self.crashes = 0  # staged failures raised so far

    @property
    def records(self) -> list[RawRecord]:
        return [record for batch in self.batches for record in batch]

    async def ingest(
        self, records: Sequence[RawRecord], *, cursor: tuple[str, str] | None = None
    ) -> list[IngestOutcome]:
        if self.crash_after_batches is not None and len(self.batches) >= self.crash_after_batches:
            self.crashes += 1
            raise Crash(f"staged crash before batch {len(self.batches) + 1}")
        # One "transaction": the records and the cursor become visible together.
        self.batches.append(list(records))
        self.cursor_log.append(cursor)
        if cursor is not None:
            self.cursors[cursor[0]] = cursor[1]
        if self.stop_after_batches is not None and len(self.batches) >= self.stop_after_batches:
            self.stopping.set()
        return [IngestOutcome(ref=record.ref, status="accepted") for record in records]

    async def get_cursor(self, name: str) -> str | None:
        return self.cursors.get(name)

    def input_options(self) -> Mapping[str, Any]:
        return {}
