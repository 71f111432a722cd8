"""``gateway adapters new``: the generated plugin installs, is listed, passes its own tests and checks as configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from importlib.resources import files
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.scaffold.commands import (
    FILES,
    ProjectNames,
    ScaffoldError,
    adapters,
    check_name,
    generate,
    render,
)

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
GATEWAY = str(VENV_BIN / "gateway")
NAME = "demo_counterpart"
DISTRIBUTION = ProjectNames.of(NAME).distribution


def run(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def pip_uninstall() -> None:
    run(sys.executable, "-m", "pip", "uninstall", "-q", "-y", DISTRIBUTION, cwd=REPO)


@pytest.fixture(scope="module")
def installed_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`gateway adapters new demo_counterpart`, then `pip install -e` it into this venv; uninstalled afterwards."""
    pip_uninstall()  # a previous run that was killed before its teardown
    parent = tmp_path_factory.mktemp("scaffold")
    made = run(GATEWAY, "adapters", "new", NAME, "--dir", str(parent), cwd=parent)
    assert made.returncode == 0, made.stderr
    project = parent / DISTRIBUTION
    installed = run(sys.executable, "-m", "pip", "install", "-q", "-e", str(project), cwd=parent)
    assert installed.returncode == 0, installed.stderr
    try:
        yield project
    finally:
        pip_uninstall()


def test_the_generated_adapter_is_listed_once_installed(installed_project: Path) -> None:
    listed = run(GATEWAY, "adapters", "list", "--json", cwd=installed_project)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert rows[NAME]["roles"] == ["source", "sink"] and rows[NAME]["api_version"] == 1
    assert rows[NAME]["distribution"] == f"{DISTRIBUTION} 0.1.0"
    assert {"push", "rest", "soap", "filedrop"} <= set(rows)


def test_the_generated_tests_pass_as_generated(installed_project: Path) -> None:
    result = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=installed_project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_the_generated_mappings_pass_mapping_test_on_their_samples(installed_project: Path) -> None:
    for mapping, sample in ((f"mappings/{NAME}.in.yaml", f"samples/{NAME}.sample.json"),
                            (f"mappings/{NAME}.out.yaml", f"samples/{NAME}.record.json")):
        result = run(GATEWAY, "mapping", "test", mapping, sample, cwd=installed_project)
        assert result.returncode == 0, result.stderr
        assert "0 errors" in result.stderr


def test_the_example_configuration_passes_gateway_check(installed_project: Path) -> None:
    result = run(GATEWAY, "check", "-c", "gateway.example.toml", cwd=installed_project)
    assert result.returncode == 0, result.stderr
    assert f"source {NAME}: adapter {NAME}" in result.stdout


def test_the_generated_project_is_ruff_clean(installed_project: Path) -> None:
    result = run(str(VENV_BIN / "ruff"), "check", "--no-cache", ".", cwd=installed_project)
    assert result.returncode == 0, result.stdout


# ---------------------------------------------------------------- names, refusals, templates


@pytest.mark.parametrize("bad", ["Demo", "1demo", "d", "demo-counterpart", "class", "x" * 41])
def test_bad_adapter_names_are_refused_with_the_rule(bad: str) -> None:
    with pytest.raises(ScaffoldError, match="adapter name"):
        check_name(bad)


def test_the_name_of_an_installed_adapter_is_refused() -> None:
    with pytest.raises(ScaffoldError, match="already installed"):
        check_name("rest")


def test_an_existing_non_empty_folder_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / ProjectNames.of("county_x").distribution
    target.mkdir()
    (target / "keep.txt").write_text("mine", encoding="utf-8")
    result = CliRunner().invoke(adapters, ["new", "county_x", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "not empty" in result.output
    assert (target / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_every_template_is_used_shipped_and_fully_filled(tmp_path: Path) -> None:
    templates = files("gateway.scaffold").joinpath("templates")
    on_disk = {p.name for p in templates.iterdir() if p.name.endswith(".tmpl")}
    assert on_disk == set(FILES)
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"]["*"]
    assert all(any(fnmatch(name, pattern) for pattern in package_data) for name in on_disk)
    project = generate("county_y", tmp_path)
    for path in project.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(encoding="utf-8"), path
    with pytest.raises(ScaffoldError, match="unknown placeholder"):
        render("{{nope}}", {}, "x.tmpl")
