"""The wheel is the whole gateway: built from the project, installed with the lock into a fresh virtual
environment outside the checkout, ``gateway demo`` runs there (issue 13).

One module-scoped build and install, then what the image and a user rely on. The install uses uv
(locked in the dev extra) with the same constraints file pip gets in the image: on the 2-core
machine uv takes about 2 s from its cache where pip takes about 30 s (15 s with --no-compile),
which would be a third of the whole suite.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"gateway": "gateway", "gateway_adapters": "adapters", "gateway_mappings": "mappings"}
# In the checkout, not needed at run time: the script that refreshes the vendored chart library.
NOT_SHIPPED = {"gateway/console/static/vendor/update-echarts.sh"}


def run(*args: str | Path, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    # Nothing of the checkout may leak in: no PYTHONPATH, and never the checkout as the working directory.
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**clean, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **(env or {})})
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def tracked_files(folder: str) -> list[str]:
    """The checkout's files under ``folder`` as git knows them (what a clean clone, and CI, has)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", folder], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):  # an unpacked source archive: no git, no ignored files
        listed = [p.relative_to(REPO).as_posix() for p in (REPO / folder).rglob("*")
                  if "__pycache__" not in p.parts and not p.name.endswith(".pyc")]
    return [p for p in listed if (REPO / p).is_file()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel (built from a copy of the sources, so the checkout gets no build/ or egg-info) and a fresh
    virtual environment with it and the locked dependencies installed."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "constraints.txt"):
        shutil.copy(REPO / name, source / name)
    for folder in PACKAGES.values():
        for path in tracked_files(folder):
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / path, source / path)
    started = time.monotonic()
    # --no-build-isolation: the dev environment already holds the locked setuptools and wheel
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", base / "dist", source,
        cwd=base)
    (wheel,) = (base / "dist").glob("exchange_gateway-*.whl")
    built_at = time.monotonic()
    venv = base / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base)
    run(Path(sys.executable).parent / "uv", "pip", "install", "--quiet", "--python", venv / "bin" / "python",
        "--constraint", REPO / "constraints.txt", wheel, cwd=base, timeout=600)
    print(f"\nwheel built in {built_at - started:.1f}s, installed with its locked dependencies in "
          f"{time.monotonic() - built_at:.1f}s")
    return {"wheel": wheel, "venv": venv, "base": base}


def test_the_wheel_installs_the_three_import_packages_and_every_file_they_hold_in_the_checkout(
        built: dict[str, Path]) -> None:
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = set(wheel.namelist())
        entry_points = next(wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == set(PACKAGES), "no top-level name but ours: no 'adapters' for another distribution to collide with"
    missing = []
    for package, folder in PACKAGES.items():
        for path in tracked_files(folder):
            if path in NOT_SHIPPED:
                continue
            if f"{package}/{path.removeprefix(folder + '/')}" not in names:
                missing.append(path)
    assert missing == [], f"files of the checkout missing from the wheel (add their pattern to package-data): {missing}"
    for needed in ("gateway_mappings/hall_platform.in.yaml", "gateway_mappings/codetables/provincial.yaml",
                   "gateway_adapters/soap/wsdl/provincial-exchange.wsdl", "gateway/store/sql/sqlite/0001_init.sql",
                   "gateway/api/openapi.json", "gateway/console/static/app.js"):
        assert needed in names
    assert any(n.startswith("gateway/scaffold/templates/") and n.endswith(".tmpl") for n in names)
    for adapter in ("filedrop", "rest", "soap", "push"):
        assert f"{adapter} = gateway_adapters.{adapter}:ADAPTER" in entry_points


def test_the_installed_gateway_finds_everything_in_its_own_site_packages(built: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    python = built["venv"] / "bin" / "python"
    shown = run(python, "-c", "import gateway, gateway_adapters.soap, gateway_mappings;"
                "from gateway.shipped import shipped_mappings;"
                "print(gateway.__file__, gateway_adapters.soap.__file__, shipped_mappings(), sep='\\n')",
                cwd=tmp_path).stdout.split()
    site = str(built["venv"] / "lib")
    assert all(path.startswith(site) for path in shown), shown
    listed = run(built["venv"] / "bin" / "gateway", "adapters", "list", cwd=tmp_path).stdout
    for adapter in ("filedrop", "rest", "soap", "push"):
        assert re.search(rf"^\s*{adapter}\b", listed, re.MULTILINE), listed
    # what the image's HEALTHCHECK and entry point call
    run(built["venv"] / "bin" / "gateway", "probe", "--help", cwd=tmp_path)


def test_gateway_demo_runs_from_the_wheel_outside_the_checkout(built: dict[str, Path], tmp_path: Path) -> None:
    started = time.monotonic()
    demo = run(built["venv"] / "bin" / "gateway", "demo", "--records", "50", cwd=tmp_path, timeout=300)
    print(f"\ngateway demo --records 50 from the wheel: {time.monotonic() - started:.1f}s")
    (site,) = tmp_path.glob("gateway-demo-*")
    assert f"working directory: {site}" in demo.stdout
    summary = demo.stdout.split("summary", 1)[1]
    assert re.search(r"^  records received\s+\d+", summary, re.MULTILINE)
    assert re.search(r"^  quarantined\s+\d+", summary, re.MULTILINE)
    assert re.search(r"^  delivered\s+[1-9]", summary, re.MULTILINE)
    # the shipped mappings were copied in as data, without the package's marker or byte-code
    copied = {p.relative_to(site / "mappings").as_posix() for p in (site / "mappings").rglob("*") if p.is_file()}
    shipped = {p.removeprefix("mappings/") for p in tracked_files("mappings")} - {"__init__.py"}
    assert copied == shipped
    verified = run(built["venv"] / "bin" / "gateway", "audit", "verify", "-c", site / "gateway.toml", cwd=tmp_path)
    assert "OK" in verified.stdout or "ok" in verified.stdout.lower(), verified.stdout


def test_xmlsec_from_the_lock_carries_its_own_libxmlsec1_so_the_image_installs_no_system_library(
        built: dict[str, Path], tmp_path: Path) -> None:
    """The Dockerfile installs no libxmlsec1: WS-Security signing works from the wheels alone."""
    if shutil.which("ldd") is None:
        pytest.skip("needs ldd")
    (extension,) = (built["venv"] / "lib").glob("python3.*/site-packages/xmlsec*.so")
    linked = run("ldd", extension, cwd=tmp_path).stdout
    assert "not found" not in linked
    assert not re.search(r"libxmlsec1|libxml2|libxslt|libssl|libcrypto", linked), linked
    versions = run(built["venv"] / "bin" / "python", "-c",
                   "import lxml.etree, xmlsec; print(xmlsec.get_libxml_version() == lxml.etree.LIBXML_VERSION)",
                   cwd=tmp_path).stdout
    assert versions.strip() == "True"  # the pinned pair agrees on libxml2 (adapters/soap/README.md)
