"""constraints.txt pins every dependency pyproject.toml names, within what pyproject.toml allows.

``make venv`` (and so CI) installs with it; ``make lock`` regenerates it. A dependency added to
pyproject.toml without re-locking fails here, naming the package and the command.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
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


def test_the_lock_is_what_make_lock_writes_today(tmp_path: Path) -> None:
    """A dependency's new transitive requirement (an extra added in pyproject.toml) shows up here: uv re-resolves,
    keeping every pin it can, and the result must be the committed file."""
    out = tmp_path / "constraints.txt"
    shutil.copy(REPO / "constraints.txt", out)  # uv keeps the pins of the file it writes to
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]
    args = " ".join(line.strip().rstrip("\\") for line in recipe.splitlines()[1:])
    args = args.replace("$(BIN)/uv", str(Path(sys.executable).parent / "uv")).replace("$(UPGRADE)", "")
    args = args.replace("$(LOCK)", str(out))
    assert "$(" not in args, args
    result = subprocess.run(args, shell=True, cwd=REPO, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and any(word in result.stderr for word in ("Failed to fetch", "dns", "connect")):
        pytest.skip(f"the package index is unreachable: {result.stderr.strip()[-300:]}")
    assert result.returncode == 0, result.stderr
    assert out.read_text(encoding="utf-8") == (REPO / "constraints.txt").read_text(encoding="utf-8"), (
        "constraints.txt is not what `make lock` writes: run it and commit the result")
