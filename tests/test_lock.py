"""constraints.txt pins every dependency pyproject.toml names, within what pyproject.toml allows.

``make venv`` (and so CI) installs with it; ``make lock`` regenerates it. A dependency added to
pyproject.toml without re-locking fails here, naming the package and the command.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            found[canonicalize_name(match[1])] = match[2]
    return found


def requirements() -> list[tuple[str, Requirement]]:
    project = PYPROJECT["project"]
    named = [("dependencies", r) for r in project["dependencies"]]
    named += [(f"optional-dependencies.{extra}", r) for extra, reqs in project["optional-dependencies"].items()
              for r in reqs]
    named += [("build-system.requires", r) for r in PYPROJECT["build-system"]["requires"]]
    named += [("constraints.in", line.strip()) for line in (REPO / "constraints.in").read_text("utf-8").splitlines()
              if line.strip() and not line.startswith("#")]
    return [(where, Requirement(text)) for where, text in named]


@pytest.mark.parametrize(("where", "requirement"), requirements(), ids=lambda v: str(v))
def test_every_declared_dependency_is_pinned_within_its_range(where: str, requirement: Requirement) -> None:
    pinned = pins().get(canonicalize_name(requirement.name))
    assert pinned is not None, f"{where}: {requirement} is not in constraints.txt; run `make lock` and commit it"
    assert requirement.specifier.contains(pinned, prereleases=True), (
        f"{where}: constraints.txt pins {requirement.name}=={pinned}, outside {requirement.specifier}; "
        "run `make lock` and commit it")


def test_the_lock_pins_the_lxml_and_xmlsec_pair_pyproject_names() -> None:
    """lxml and xmlsec each bundle libxml2; WS-Security needs both on one version (adapters/soap/README.md)."""
    declared = {canonicalize_name(Requirement(r).name): str(Requirement(r).specifier)
                for r in PYPROJECT["project"]["dependencies"]}
    assert f"=={pins()['lxml']}" == declared["lxml"]
    assert f"=={pins()['xmlsec']}" == declared["xmlsec"]


def test_the_lock_holds_exact_pins_only() -> None:
    """Only ``name==version`` lines under uv's header: no ranges, URLs or editable lines."""
    lines = (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()
    requirement_lines = [line for line in lines if line and not line.startswith((" ", "#"))]
    assert requirement_lines and all(PIN.match(line) for line in requirement_lines), [
        line for line in requirement_lines if not PIN.match(line)]
    assert "make lock" in "\n".join(lines[:3])
