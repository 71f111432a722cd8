"""Push adapter: counterparts POST their records to the gateway's HTTP API (JSON, XML or SOAP).

A source configured with ``adapter = "push"`` runs no connection of its own: the API's
inbound endpoints (``POST /api/v1/inbound/{system}/{kind}``, ``POST /soap/{system}``)
ingest what the counterpart sends and answer only after the records committed. The
source task merely keeps the system alive in the gateway's lifecycle until it stops.

    [sources.hall_platform]
    adapter = "push"
    mapping = "mappings/hall_platform.in.yaml"
    accept = ["json", "soap"]      # optional; default: json, xml and soap
    max_items = 1000               # optional; items per request
    max_depth = 32                 # optional, per item: nesting, field-name and text length, fields per object
    max_key_length = 256
    max_string_length = 65536
    max_fields = 2000

An item over one of the per-item limits is refused alone (quarantined with the rule it
broke: max_depth, max_key_length, max_string_length, max_fields; integers beyond 64 bits
are integer_range, lone surrogates unicode); the other items of the request go on.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.adapters import Adapter, AdapterConfig, SourceContext

__version__ = "1.0.0"

PushForm = Literal["json", "xml", "soap"]


class PushConfig(AdapterConfig):
    """What the API accepts from one pushing counterpart."""

    accept: tuple[PushForm, ...] = Field(("json", "xml", "soap"), min_length=1)
    """Body forms the counterpart may use: ``json`` and ``xml`` on /api/v1/inbound, ``soap`` on /soap."""

    max_items: int = Field(5000, ge=1, le=100_000)
    """Items one request may carry; a larger batch is refused whole (413), before anything is ingested."""

    max_depth: int = Field(32, ge=2, le=200)
    """Objects and arrays inside one another in one item (the item is level 1)."""

    max_key_length: int = Field(256, ge=8, le=65_536)
    """Characters of one field name."""

    max_string_length: int = Field(65_536, ge=64, le=16 * 1024 * 1024)
    """Characters of one text value."""

    max_fields: int = Field(2_000, ge=16, le=1_000_000)
    """Members of one object or entries of one array."""


class PushSource:
    """Waits for the gateway to stop: the API does the receiving."""

    def __init__(self, system: str, config: PushConfig) -> None:
        self.system = system
        self.config = config

    async def run(self, ctx: SourceContext) -> None:
        forms = ", ".join(self.config.accept)
        ctx.log.info("source %s receives pushes through the HTTP API (%s)", self.system, forms)
        await ctx.stopping.wait()


def make_source(system: str, config: PushConfig) -> PushSource:
    return PushSource(system, config)


ADAPTER = Adapter(
    name="push",
    version=__version__,
    description="Counterparts push records to the gateway's HTTP API: JSON or XML on "
    "/api/v1/inbound/{system}/{kind}, SOAP 1.1 on /soap/{system}; answered after commit.",
    source_config=PushConfig,
    make_source=make_source,
)

__all__ = ["ADAPTER", "PushConfig", "PushSource", "make_source"]
