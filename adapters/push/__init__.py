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
    kinds = ["case", "acceptance"] # optional; default: every kind the mapping produces

    [sources.hall_platform.auth]   # who may push as hall_platform (docs/security.md, "Counterparts")
    client_certificate = { subject = "CN=hall_platform,O=Yantai Hall,C=CN" }
    tokens = [{ sha256 = "…", not_after = 2026-12-31T23:59:59+08:00, label = "2026" }]

Without ``auth`` the API refuses every push to the system (403) and ``gateway check``
says so; ``auth = { anonymous = true }`` admits anyone, for development only.

Each pushed item is held to the source's input limits (``input = {max_depth = 32,
max_key_chars = 256, max_string_chars = 1048576, max_members = 10000}``, the same settings
file readers use; docs/strict-input.md). An item over one is refused alone, quarantined with
the rule it broke (``json_depth`` … for JSON, ``xml_depth`` … for XML); the other items of
the request go on.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from gateway.adapters import Adapter, AdapterConfig, SourceContext
from gateway.schema import KINDS
from gateway.security.counterparts import CounterpartAuth

__version__ = "1.0.0"

PushForm = Literal["json", "xml", "soap"]


class PushConfig(AdapterConfig):
    """What the API accepts from one pushing counterpart."""

    accept: tuple[PushForm, ...] = Field(("json", "xml", "soap"), min_length=1)
    """Body forms the counterpart may use: ``json`` and ``xml`` on /api/v1/inbound, ``soap`` on /soap."""

    max_items: int = Field(5000, ge=1, le=100_000)
    """Items one request may carry; a larger batch is refused whole (413), before anything is ingested."""

    auth: CounterpartAuth | None = None
    """How the counterpart proves it is this system; None: every push is refused until configured."""

    kinds: tuple[str, ...] | None = None
    """Record kinds the counterpart may send (403 otherwise); None: every kind its mapping produces."""

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            unknown = [k for k in value if k not in KINDS]
            if unknown:
                raise ValueError(f"unknown record kind(s) {', '.join(unknown)} (known: {', '.join(KINDS)})")
        return value


class PushSource:
    """Waits for the gateway to stop: the API does the receiving."""

    def __init__(self, system: str, config: PushConfig) -> None:
        self.system = system
        self.config = config

    async def run(self, ctx: SourceContext) -> None:
        forms = ", ".join(self.config.accept)
        auth = self.config.auth
        how = ("no credentials configured: every push is refused" if auth is None
               else "ANONYMOUS (development setting)" if auth.anonymous else ", ".join(auth.methods))
        ctx.log.info("source %s receives pushes through the HTTP API (%s; %s)", self.system, forms, how)
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
