"""Secrets referenced from gateway.toml: ``{env = "NAME"}`` or ``{file = "path"}``, never the value itself.

A file is re-read when its modification time changes, so an operator rotates a secret
by replacing the file; an environment variable is read once.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

from gateway.adapters import ConfigPath


class SecretError(Exception):
    """A referenced secret is missing, empty or unreadable; the message says which and where."""


class SecretRef(BaseModel):
    """Where a secret lives: exactly one of an environment variable or a file (its content, trimmed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    env: str | None = None
    file: ConfigPath | None = None  # relative paths resolve against the folder of gateway.toml

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("name exactly one of 'env' (an environment variable) or 'file' (a path)")
        return self

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env is not None else f"file {self.file}"


class SecretReader:
    """Reads one secret when asked; see the module docstring for rotation."""

    def __init__(self, ref: SecretRef, *, owner: str, what: str) -> None:
        self.ref = ref
        self._owner = owner
        self._what = what
        self._cached: str | None = None
        self._mtime: int | None = None

    def value(self) -> str:
        if self.ref.env is not None:
            if self._cached is None:
                raw = os.environ.get(self.ref.env, "")
                if not raw.strip():
                    raise SecretError(f"{self._owner}: {self._what} is configured to come from environment "
                                      f"variable {self.ref.env}, which is not set or empty")
                self._cached = raw.strip()
            return self._cached
        path = Path(self.ref.file)  # type: ignore[arg-type]  # the model guarantees one of the two
        try:
            mtime = path.stat().st_mtime_ns
            if self._cached is None or mtime != self._mtime:
                text = path.read_text(encoding="utf-8").strip()
                if not text:
                    raise SecretError(f"{self._owner}: {self._what} file {path} is empty")
                self._cached, self._mtime = text, mtime
        except OSError as exc:
            raise SecretError(f"{self._owner}: cannot read {self._what} file {path}: {exc.strerror}") from exc
        return self._cached
