"""Where the files the gateway ships live once installed: the mappings and their code tables.

One lookup for every caller (the demo, tests, the scaffold), through importlib.resources,
so a wheel, an editable install and a source checkout all find the same folder.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

__all__ = ["MAPPINGS_PACKAGE", "ShippedFileError", "copy_shipped_mappings", "shipped_mapping", "shipped_mappings"]

# mappings/ in the checkout installs under this import name (setup.py)
MAPPINGS_PACKAGE = "gateway_mappings"


class ShippedFileError(LookupError):
    """A file the gateway ships is missing: the installation is incomplete."""


def shipped_mappings() -> Path:
    """The folder of the shipped mappings (``*.in.yaml``, ``*.out.yaml``) with ``codetables/`` inside."""
    try:
        folder = resources.files(MAPPINGS_PACKAGE)
    except ModuleNotFoundError:
        raise ShippedFileError(
            f"the shipped mappings (import package {MAPPINGS_PACKAGE}) are not installed: reinstall the "
            "exchange-gateway distribution (pip install exchange-gateway, or pip install -e . in a checkout)"
        ) from None
    # A wheel installs into a folder; callers copy the folder and hand its files to the mapping loader.
    path = Path(str(folder))
    if not (path / "codetables").is_dir():
        raise ShippedFileError(f"{path} holds no codetables/ folder: the installation of {MAPPINGS_PACKAGE} "
                               "is incomplete; reinstall exchange-gateway")
    return path


def shipped_mapping(name: str) -> Path:
    """One shipped mapping file by name (``hall_platform.in.yaml``); ShippedFileError names the choices."""
    path = shipped_mappings() / name
    if not path.is_file() or path.parent != shipped_mappings():
        known = ", ".join(sorted(p.name for p in shipped_mappings().glob("*.yaml")))
        raise ShippedFileError(f"no shipped mapping named {name!r}; the shipped ones are: {known}")
    return path


def copy_shipped_mappings(target: Path) -> Path:
    """Copy the shipped mappings and code tables into ``target`` (a gateway directory's ``mappings/``).

    Only the data: the package marker and byte-code stay behind. Files already there are overwritten.
    """
    shutil.copytree(shipped_mappings(), target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__init__.py", "__pycache__", "*.pyc"))
    return target
