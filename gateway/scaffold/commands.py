"""``gateway adapters``: list the installed adapter plugins, and scaffold a new one as its own package.

``gateway adapters new NAME`` writes a ready-to-install project: pyproject.toml with the
entry point, a package with typed configuration, a Source and a Sink on the aiohttp
client, sample inbound and outbound mappings with a sample file, a README, and tests
that run against a local aiohttp server.  The templates are text files in
``gateway/scaffold/templates``; see ``docs/adapter-guide.md`` for the walk-through.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, entry_points, version
from importlib.resources import files
from pathlib import Path

import click

from gateway.adapters import API_VERSION, ENTRY_POINT_GROUP, AdapterLoadError, discover

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


@dataclass(frozen=True)
class ProjectNames:
    """Every name the templates need, derived from the adapter name."""

    name: str  # entry-point name and the ``adapter = "…"`` value in gateway.toml: demo_counterpart
    package: str  # import package: gateway_adapter_demo_counterpart
    distribution: str  # pip name: gateway-adapter-demo-counterpart
    class_prefix: str  # DemoCounterpart
    title: str  # demo counterpart

    @classmethod
    def of(cls, name: str) -> ProjectNames:
        return cls(
            name=name,
            package=f"gateway_adapter_{name}",
            distribution=f"gateway-adapter-{name.replace('_', '-')}",
            class_prefix="".join(part.capitalize() for part in name.split("_") if part),
            title=name.replace("_", " "),
        )


# template file → where it goes in the new project ({package} and {name} are filled in)
FILES: dict[str, str] = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "gitignore.tmpl": ".gitignore",
    "gateway.example.toml.tmpl": "gateway.example.toml",
    "package_init.py.tmpl": "{package}/__init__.py",
    "package_config.py.tmpl": "{package}/_config.py",
    "package_source.py.tmpl": "{package}/_source.py",
    "package_sink.py.tmpl": "{package}/_sink.py",
    "mapping.in.yaml.tmpl": "mappings/{name}.in.yaml",
    "mapping.out.yaml.tmpl": "mappings/{name}.out.yaml",
    "sample.json.tmpl": "samples/{name}.sample.json",
    "record.sample.json.tmpl": "samples/{name}.record.json",
    "tests_conftest.py.tmpl": "tests/conftest.py",
    "tests_adapter.py.tmpl": "tests/test_{name}.py",
}


class ScaffoldError(Exception):
    """The project cannot be generated as asked; the message says what to change."""


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise ScaffoldError(f"adapter name {name!r}: use 2-40 lower-case letters, digits and _, starting with a "
                            "letter (it becomes the entry-point name and part of the package name)")
    if keyword.iskeyword(name):
        raise ScaffoldError(f"adapter name {name!r} is a Python keyword")
    taken = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name in taken:
        raise ScaffoldError(f"an adapter named {name!r} is already installed "
                            f"(installed: {', '.join(sorted(taken))}); choose another name")


def _gateway_version() -> str:
    try:
        return version("exchange-gateway")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.1.0"


def render(text: str, values: dict[str, str], template: str) -> str:
    """Fill ``{{ name }}`` placeholders; an unknown one is a bug in the template, not a silent blank."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise ScaffoldError(f"template {template}: unknown placeholder {{{{{key}}}}}")
        return values[key]

    return _PLACEHOLDER.sub(fill, text)


def generate(name: str, parent: Path) -> Path:
    """Write the project for adapter ``name`` into ``parent``/<distribution>; returns that folder."""
    check_name(name)
    names = ProjectNames.of(name)
    target = parent / names.distribution
    if target.exists() and any(target.iterdir()):
        raise ScaffoldError(f"{target} already exists and is not empty; choose another --dir or remove it")
    values = {
        "name": names.name, "package": names.package, "distribution": names.distribution,
        "class_prefix": names.class_prefix, "title": names.title, "env_prefix": names.name.upper(),
        "gateway_version": _gateway_version(), "api_version": str(API_VERSION),
    }
    templates = files("gateway.scaffold").joinpath("templates")
    for template, destination in FILES.items():
        text = templates.joinpath(template).read_text(encoding="utf-8")
        out = target / destination.format(package=names.package, name=names.name)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(text, values, template), encoding="utf-8")
    return target


# --------------------------------------------------------------------------- commands


@click.group("adapters")
def adapters() -> None:
    """Adapter plugins: list the installed ones, scaffold a new one."""


def _distribution_of(entry_point_value: str) -> str:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.value == entry_point_value and ep.dist is not None:
            return f"{ep.dist.name} {ep.dist.version}"
    return "?"


@adapters.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per adapter.")
def list_command(as_json: bool) -> None:
    """Installed adapters (entry-point group gateway.adapters): name, version, roles, distribution."""
    try:
        found = discover()
    except AdapterLoadError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    values = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    rows = []
    for name, adapter in sorted(found.items()):
        roles = [role for role, maker in (("source", adapter.make_source), ("sink", adapter.make_sink)) if maker]
        rows.append({"name": name, "version": adapter.version, "api_version": adapter.api_version,
                     "roles": roles, "description": adapter.description,
                     "distribution": _distribution_of(values[name])})
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    if not rows:
        click.echo("no adapters installed (entry-point group gateway.adapters)")
        return
    for row in rows:
        click.echo(f"{row['name']:<20} {row['version']:<8} api {row['api_version']}  "
                   f"{'/'.join(row['roles']):<11} {row['distribution']}")
        click.echo(f"{'':<20} {row['description']}")


@adapters.command("new")
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder in which the project folder is created.")
def new_command(name: str, parent: Path) -> None:
    """Scaffold the adapter plugin NAME as a project of its own (package, mappings, tests)."""
    try:
        target = generate(name, parent)
    except ScaffoldError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    names = ProjectNames.of(name)
    click.echo(f"created {target}")
    click.echo("next steps:")
    click.echo(f"  cd {target}")
    click.echo("  pip install -e '.[test]'          # registers the adapter with the gateway")
    click.echo(f"  gateway adapters list             # shows {name}")
    click.echo("  pytest -q                         # the generated tests run against a local server")
    click.echo(f"  gateway mapping test mappings/{name}.in.yaml samples/{name}.sample.json")
    click.echo(f"then edit {names.package}/_config.py, _source.py, _sink.py and the mappings; see README.md")
