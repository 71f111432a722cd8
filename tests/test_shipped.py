"""gateway.shipped: the one lookup of the mappings and code tables the gateway ships (gateway_mappings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import shipped
from gateway.mapping import load_mapping
from gateway.shipped import ShippedFileError, copy_shipped_mappings, shipped_mapping, shipped_mappings

REPO = Path(__file__).resolve().parents[1]


def test_the_shipped_mappings_are_the_checkouts_mappings_folder_in_an_editable_install() -> None:
    folder = shipped_mappings()
    assert folder.samefile(REPO / "mappings")  # make venv installs editable: the same files
    assert (folder / "codetables" / "provincial.yaml").is_file()
    assert load_mapping(shipped_mapping("hall_platform.in.yaml")).name == "hall_platform"


def test_an_unknown_shipped_mapping_is_refused_naming_the_ones_there_are() -> None:
    with pytest.raises(ShippedFileError) as err:
        shipped_mapping("hall.in.yaml")
    assert str(err.value).startswith("no shipped mapping named 'hall.in.yaml'; the shipped ones are: ")
    assert "hall_platform.in.yaml" in str(err.value)
    with pytest.raises(ShippedFileError):
        shipped_mapping("../pyproject.toml")  # names inside the folder only


def test_copying_the_shipped_mappings_takes_the_data_without_the_package_marker(tmp_path: Path) -> None:
    target = copy_shipped_mappings(tmp_path / "site" / "mappings")
    copied = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    expected = sorted(p.relative_to(REPO / "mappings").as_posix() for p in (REPO / "mappings").rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts and p.name != "__init__.py")
    assert copied == expected and "codetables/provincial.yaml" in copied


def test_an_installation_without_the_shipped_mappings_says_to_reinstall(monkeypatch) -> None:
    monkeypatch.setattr(shipped, "MAPPINGS_PACKAGE", "gateway_mappings_not_installed")
    with pytest.raises(ShippedFileError) as err:
        shipped_mappings()
    assert str(err.value) == (
        "the shipped mappings (import package gateway_mappings_not_installed) are not installed: reinstall the "
        "exchange-gateway distribution (pip install exchange-gateway, or pip install -e . in a checkout)")
