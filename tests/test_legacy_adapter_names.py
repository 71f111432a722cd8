"""The built-in adapters install as ``gateway_adapters``; plugins written against ``adapters.*`` keep working.

Each case runs in a fresh interpreter: the old names are answered by an import hook whose
findings (what ``gateway check`` reports) live for the process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from gateway.shipped import copy_shipped_mappings

GATEWAY = str(Path(sys.executable).parent / "gateway")


def python(code: str, *, cwd: Path, path: list[Path] = ()) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in path), "PYTHONWARNINGS": "default"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def old_style_plugin(root: Path) -> Path:
    """A third-party distribution written against the old names: its module imports ``adapters.rest``, and
    one of its entry points names ``adapters.filedrop:ADAPTER`` directly."""
    site = root / "site"
    (site / "old_style_plugin").mkdir(parents=True)
    (site / "old_style_plugin" / "__init__.py").write_text(textwrap.dedent("""\
        from dataclasses import replace

        from adapters.rest import ADAPTER as REST, RestSink

        ADAPTER = replace(REST, name="legacy_rest")
        """), encoding="utf-8")
    dist = site / "old_style_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: old-style-plugin\nVersion: 1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(
        "[gateway.adapters]\nlegacy_rest = old_style_plugin:ADAPTER\nlegacy_drop = adapters.filedrop:ADAPTER\n",
        encoding="utf-8")
    return site


def test_old_module_names_are_the_same_modules_as_the_new_ones_with_a_deprecation_warning(tmp_path: Path) -> None:
    result = python("""
        import warnings
        warnings.simplefilter("error", DeprecationWarning)
        import gateway
        try:
            import adapters.soap
        except DeprecationWarning as w:
            print("warned:", w)
        warnings.simplefilter("ignore", DeprecationWarning)
        import adapters.soap
        from adapters.rest import RestSink
        from adapters.soap._wsse import X509Signer
        import gateway_adapters.rest, gateway_adapters.soap, gateway_adapters.soap._wsse
        assert adapters.soap is gateway_adapters.soap
        assert RestSink is gateway_adapters.rest.RestSink
        assert X509Signer is gateway_adapters.soap._wsse.X509Signer
        # the shared module keeps its own identity, so its packaged files are still found
        from importlib import resources
        assert adapters.soap.__spec__.name == "gateway_adapters.soap"
        assert resources.files("adapters.soap").joinpath("wsdl", "provincial-exchange.wsdl").is_file()
        print("same modules")
        """, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warned: module adapters (imported by <string>:6): the built-in adapters now install as " \
           "gateway_adapters; import gateway_adapters instead" in result.stdout
    assert "same modules" in result.stdout


def test_a_plugin_naming_the_old_modules_loads_and_gateway_check_warns_with_who_named_them(tmp_path: Path) -> None:
    site = old_style_plugin(tmp_path)
    copy_shipped_mappings(tmp_path / "mappings")
    (tmp_path / "out").mkdir()
    (tmp_path / "gateway.toml").write_text(textwrap.dedent("""\
        [gateway]
        adapters = ["legacy_rest", "legacy_drop", "push"]

        [sources.hall_platform]
        adapter = "push"
        mapping = "mappings/hall_platform.in.yaml"
        auth = { anonymous = true }

        [sinks.hall_rest]
        adapter = "legacy_rest"
        mapping = "mappings/hall_platform.out.yaml"
        url = "http://127.0.0.1:9/records"

        [sinks.archive]
        adapter = "legacy_drop"
        mapping = "mappings/hall_platform.out.yaml"
        path = "out"

        [[routes]]
        name = "hall"
        sources = ["hall_platform"]
        to = ["hall_rest", "archive"]
        """), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([GATEWAY, "check", "-c", "gateway.toml"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "sink   hall_rest: adapter legacy_rest" in result.stdout
    assert "sink   archive: adapter legacy_drop" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    plugin_file = site / "old_style_plugin" / "__init__.py"
    assert (f"warning: module adapters.rest (imported by {plugin_file}:3): the built-in adapters now install as "
            "gateway_adapters; import gateway_adapters.rest instead (the old name still works but is deprecated)"
            in warnings)
    assert ("warning: adapter plugin 'legacy_drop' (old-style-plugin) is registered as adapters.filedrop:ADAPTER: "
            "the built-in adapters now install as gateway_adapters; register gateway_adapters.filedrop:ADAPTER "
            "instead (the old name still works but is deprecated)" in warnings)
    assert len(warnings) == 2, warnings


def test_another_distributions_top_level_adapters_package_is_left_alone(tmp_path: Path) -> None:
    """The reason for the new name: a distribution that owns ``adapters`` no longer shadows the built-in plugins."""
    theirs = tmp_path / "theirs"
    (theirs / "adapters").mkdir(parents=True)
    (theirs / "adapters" / "__init__.py").write_text('OWNER = "someone else"\n', encoding="utf-8")
    result = python("""
        import gateway
        from gateway.adapters import discover
        import adapters
        from gateway.legacy_imports import legacy_imports
        print(adapters.OWNER, sorted(discover(["filedrop", "push", "rest", "soap"])), legacy_imports())
        """, cwd=tmp_path, path=[theirs])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "someone else ['filedrop', 'push', 'rest', 'soap'] []"


def test_gateway_check_has_nothing_to_say_about_names_when_only_the_new_ones_are_used(tmp_path: Path) -> None:
    result = python("""
        from gateway.adapters import discover
        from gateway.checks import legacy_adapter_names
        discover()
        print(legacy_adapter_names())
        """, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
