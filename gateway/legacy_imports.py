"""The built-in plugins' old import name ``adapters`` (they used to install as a top-level ``adapters``).

They now install as ``gateway_adapters``, a name no other distribution claims. A third-party
plugin or an entry point still naming ``adapters.soap``, ``adapters.rest._http`` … keeps
working: this finder answers those names with the very module objects of ``gateway_adapters``
(so classes stay identical), warns once per name, and records who asked, for ``gateway check``.

It only steps in while no other ``adapters`` is importable: if another distribution owns that
top-level name, the name is theirs and nothing is aliased.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["LEGACY", "CURRENT", "LegacyImport", "install", "legacy_imports", "current_name"]

LEGACY = "adapters"
CURRENT = "gateway_adapters"


@dataclass(frozen=True)
class LegacyImport:
    """One old module name resolved, and the file whose code asked for it (None: unknown)."""

    name: str
    current: str
    importer: str | None

    def message(self) -> str:
        who = f" (imported by {self.importer})" if self.importer else ""
        return (f"module {self.name}{who}: the built-in adapters now install as {CURRENT}; "
                f"import {self.current} instead (the old name still works but is deprecated)")


_seen: dict[str, LegacyImport] = {}
_lock = threading.Lock()


def current_name(name: str) -> str | None:
    """``gateway_adapters.x`` for ``adapters.x``; None for a name outside the old package."""
    if name == LEGACY or name.startswith(LEGACY + "."):
        return CURRENT + name[len(LEGACY):]
    return None


def legacy_imports() -> list[LegacyImport]:
    """Every old name resolved in this process so far, in the order first asked.

    The bare package is left out where a submodule was asked for from the same place
    (``import adapters.soap`` resolves ``adapters`` first): one finding per import.
    """
    with _lock:
        found = list(_seen.values())
    deeper = {(f.importer, f.name.split(".")[0]) for f in found if "." in f.name}
    return [f for f in found if "." in f.name or (f.importer, f.name) not in deeper]


def _importer() -> str | None:
    """The first frame outside the import machinery and this module: the code that wrote the import."""
    here = Path(__file__).resolve()
    for frame in reversed(traceback.extract_stack()[:-2]):
        filename = frame.filename
        if filename.startswith("<frozen") or "importlib" in filename or Path(filename).resolve() == here:
            continue
        return f"{filename}:{frame.lineno}"
    return None


def _other_owner() -> bool:
    """Whether a top-level ``adapters`` other than our own folder is importable (another distribution's)."""
    spec = importlib.machinery.PathFinder.find_spec(LEGACY)
    if spec is None:
        return False
    ours = importlib.util.find_spec(CURRENT)
    mine = {Path(p).resolve() for p in (ours.submodule_search_locations or [])} if ours else set()
    theirs = {Path(p).resolve() for p in (spec.submodule_search_locations or [])}
    # A source checkout on sys.path finds adapters/ itself: that is ours under its old name.
    return not theirs <= mine


class _AliasLoader(importlib.abc.Loader):
    """Loads an old name as the module already known by its new one (imported first if need be)."""

    def __init__(self, current: str) -> None:
        self.current = current
        self._spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.current)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped the alias spec on the shared module; give it back its own, so
        # importlib.resources and reloads keep working on gateway_adapters.
        if self._spec is not None:
            module.__spec__ = self._spec
            module.__loader__ = self._spec.loader


class _LegacyFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        current = current_name(fullname)
        if current is None:
            return None
        if fullname == LEGACY and _other_owner():
            return None
        if fullname != LEGACY and getattr(sys.modules.get(LEGACY), "__name__", None) != CURRENT:
            return None  # the top-level name belongs to someone else (or was never aliased)
        found = importlib.util.find_spec(current)
        if found is None:
            return None
        record = LegacyImport(fullname, current, _importer())
        with _lock:
            first = fullname not in _seen
            _seen.setdefault(fullname, record)
        if first:
            warnings.warn(record.message(), DeprecationWarning, stacklevel=2)
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(current),
                                              is_package=found.submodule_search_locations is not None)


_finder = _LegacyFinder()


def install() -> None:
    """Answer the old names from now on (idempotent). Placed first: the path finder would otherwise load
    a second copy of a plugin module from a checkout's adapters/ folder under its old name."""
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
