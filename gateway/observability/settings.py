"""The ``[logging]`` and ``[metrics]`` sections of gateway.toml (operations: docs/operations.md)."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.durations import Duration

__all__ = ["LOG_FORMATS", "LoggingSection", "MetricsSection", "level_number"]

LOG_FORMATS = ("auto", "json", "console")


def level_number(name: str | int) -> int:
    """A logging level from its name ("info", "WARNING") or number; ValueError naming the choices."""
    if isinstance(name, int) and not isinstance(name, bool):
        return name
    number = logging.getLevelName(str(name).strip().upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {name!r} (use DEBUG, INFO, WARNING, ERROR or CRITICAL)")
    return number


class LoggingSection(BaseModel):
    """How ``gateway run`` writes its log: JSON lines, or a readable console format on a terminal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # auto: console on a terminal outside a container, JSON lines otherwise. GATEWAY_LOG_FORMAT and
    # `gateway --log-format` override it.
    format: Literal["auto", "json", "console"] = "auto"
    level: str = "INFO"
    # Per-logger levels, e.g. {"gateway.delivery" = "DEBUG"} for one line per delivery.
    levels: dict[str, str] = Field(default_factory=dict)

    @field_validator("level")
    @classmethod
    def _level(cls, v: str) -> str:
        level_number(v)
        return v.upper()

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: dict[str, str]) -> dict[str, str]:
        for logger, level in v.items():
            try:
                level_number(level)
            except ValueError as exc:
                raise ValueError(f"{logger}: {exc}") from None
        return {k: level.upper() for k, level in v.items()}


class MetricsSection(BaseModel):
    """What ``/metrics`` reads from the store at most once per ``cache`` (scrapes in between reuse it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cache: Duration = Field(5.0, ge=0)
    store_timeout: Duration = Field(5.0, gt=0)  # a store that does not answer in time is reported down
