"""Configuration models of the file-drop adapter: one ``gateway.toml`` section per drop folder."""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import Field, field_validator

from gateway.adapters import AdapterConfig, ConfigFacts, ConfigPath, Duration, renamed


def _default_instance() -> str:
    return socket.gethostname() or "gateway"


class FiledropConfig(AdapterConfig):
    """A drop folder a counterpart (or its front-end machine, 前置机) writes files into.

    Files are dropped at the top of ``path``; the gateway keeps ``processing/``,
    ``done/`` and ``error/`` beside them.
    """

    path: ConfigPath
    include: list[str] = Field(default_factory=lambda: ["*.xml", "*.csv", "*.json", "*.jsonl"], min_length=1)
    completion: Literal["rename", "marker"] = "rename"
    """``rename``: the sender writes a temporary name (``*.tmp``, ``*.part``, ``.*``, ``~*``) and
    renames when complete.  ``marker``: the sender writes ``X`` and then an empty ``X.done``."""
    marker_suffix: str = ".done"
    stable_for: Duration = renamed(1.0, "stable_for", "stability_seconds", ge=0)
    """Size and modification time must stay unchanged this long ("1s") before a file is claimed."""
    poll_interval: Duration = Field(1.0, gt=0)
    """How often the folder is scanned ("1s")."""
    max_attempts: int = Field(5, ge=1, le=1000)
    """Tries of a file that fails for a reason other than a store outage before it goes to ``error/``."""
    batch_size: int = Field(1000, ge=1, le=100_000)
    """Items committed per transaction (and per cursor step)."""
    instance: str = Field(default_factory=_default_instance)
    """This gateway's name under ``processing/``: gateways sharing a drop folder resume only their own
    claims.  Defaults to the host name; set it when the host name may change."""

    def facts(self, system: str) -> ConfigFacts:
        return ConfigFacts(cursors=(f"filedrop:{system}:*",), folders=(("path", self.path),))

    @field_validator("marker_suffix")
    @classmethod
    def _suffix(cls, value: str) -> str:
        if not value or "/" in value or "\\" in value:
            raise ValueError("marker_suffix must be a non-empty file-name suffix such as '.done'")
        return value

    @field_validator("instance")
    @classmethod
    def _instance(cls, value: str) -> str:
        if not value or value in (".", "..") or any(char in value for char in "/\\\0"):
            raise ValueError("instance must be usable as a folder name")
        return value

    @field_validator("include")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern or "/" in pattern or "\\" in pattern:
                raise ValueError(f"include pattern {pattern!r} must match a file name, not a path")
        return value


class FiledropReconcile(AdapterConfig):
    """Reconciliation (对账) through the front-end machine: it leaves a manifest per day, the gateway asks by file.

    The machine writes ``manifest-YYYYMMDD.json`` into ``manifests`` for each day (China time) in
    the gateway's JSON manifest contract (docs/exchange.md), under a temporary name and renamed;
    a resend request is written as ``resend-<time>.json`` into ``requests`` (default: the sink's own
    folder, beside the deliveries), ``{"from", "to", "entries": [{"kind", "key", "version"}]}``.
    """

    manifests: ConfigPath
    requests: ConfigPath | None = None
    can_resend: bool = True  # whether the machine acts on resend requests


class FiledropSinkConfig(AdapterConfig):
    """An outgoing drop folder: one file per delivery, for a front-end machine to carry across."""

    path: ConfigPath
    extension: str = "json"
    """Suffix of written files; a dict body is always written as JSON, a bytes body as is."""
    marker: bool = False
    """Also write an empty ``<file>.done`` after each file, for receivers that wait for markers."""
    marker_suffix: str = ".done"
    batch_size: int = Field(100, ge=1, le=10_000)
    fsync: bool = True
    """Flush each file and the folder to disk before reporting the delivery as sent."""
    reconcile: FiledropReconcile | None = None
    """Reconciliation with the receiving side through manifest files (``gateway reconcile``)."""

    @field_validator("extension")
    @classmethod
    def _extension(cls, value: str) -> str:
        value = value.lstrip(".")
        if not value or any(char in value for char in "/\\\0"):
            raise ValueError("extension must be a file-name suffix such as 'json' or 'xml'")
        return value
