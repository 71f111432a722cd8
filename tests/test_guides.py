"""The guides for the three users say only what works: every `gateway …` command line in them names a command
and options that exist, the integration guide's files map and check as the guide says, and the supervisor
guide explains every alert type the gateway can raise."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gateway.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs"
GUIDES = ["integration-guide.md", "zh/operator.md", "zh/supervisor.md"]
_BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)
_INLINE = re.compile(r"`((?:\S*/)?gateway [^`]+)`")
_LAST_GATEWAY = re.compile(r"^(?:.*[\s=/])?gateway\s+(\S.*)$")


def command_lines(text: str) -> list[str]:
    """Every gateway command line: in code blocks (after a path, a cron schedule or ExecStart=) and inline."""
    lines = []
    for _lang, body in _BLOCK.findall(text):
        for line in body.splitlines():
            m = _LAST_GATEWAY.match(line.strip().removeprefix("$ "))
            if m and not line.lstrip().startswith("#"):
                lines.append("gateway " + m.group(1))
    outside = _BLOCK.sub("", text)
    lines += [m.group(1)[m.group(1).index("gateway "):] for m in _INLINE.finditer(outside)]
    return lines


def resolve(line: str) -> tuple[list[str], click.Command, list[str]]:
    """(the command path, the command, the option names used) of one command line; fails on what does not exist."""
    tokens = []
    for token in shlex.split(line, comments=True)[1:]:
        if token in ("|", "&&", ";", ">", "2>&1") or token.startswith(">"):
            break
        tokens.append(token)
    cmd: click.Command = main
    path: list[str] = []
    used: list[str] = []
    while tokens:
        token = tokens.pop(0)
        if token.startswith("-"):
            used.append(token.split("=", 1)[0])
            option = next((p for p in cmd.params if token.split("=", 1)[0] in (*p.opts, *p.secondary_opts)), None)
            if option is not None and not getattr(option, "is_flag", False) and "=" not in token and tokens \
                    and isinstance(cmd, click.Group):
                tokens.pop(0)  # a group option's value (--log-format json)
            continue
        if isinstance(cmd, click.Group):
            sub = cmd.commands.get(token)
            assert sub is not None, f"{line!r}: `{' '.join(['gateway', *path, token])}` is not a command"
            cmd = sub
            path.append(token)
    return path, cmd, used


@pytest.mark.parametrize("guide", GUIDES)
def test_every_command_line_in_the_guide_names_a_command_and_options_that_exist(guide: str) -> None:
    lines = command_lines((DOCS / guide).read_text(encoding="utf-8"))
    assert len(lines) >= 8, lines
    runner = CliRunner()
    helped: set[tuple[str, ...]] = set()
    for line in lines:
        path, cmd, used = resolve(line)
        known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"-h", "--help"}
        known |= {o for p in main.params for o in (*p.opts, *p.secondary_opts)}
        unknown = [u for u in used if u not in known]
        assert not unknown, f"{guide}: {line!r}: `gateway {' '.join(path)}` has no option {unknown}"
        if tuple(path) not in helped:
            helped.add(tuple(path))
            result = runner.invoke(main, [*path, "--help"])
            assert result.exit_code == 0, (line, result.output)


def test_the_check_catches_a_command_or_option_that_does_not_exist() -> None:
    with pytest.raises(AssertionError, match="is not a command"):
        resolve("gateway store vacuum -c gateway.toml")
    path, cmd, used = resolve("gateway backup create -c gateway.toml --compress /backup/")
    assert path == ["backup", "create"] and "--compress" in used
    assert "--compress" not in {o for p in cmd.params for o in p.opts}


def _guide_files(text: str) -> dict[str, str]:
    files = {}
    for _lang, body in _BLOCK.findall(text):
        first, _, rest = body.partition("\n")
        if first.startswith("# file: "):
            files[first[len("# file: "):].split(" (", 1)[0].strip()] = rest
    return files


def test_the_integration_guides_mapping_sample_and_source_work_as_it_says(tmp_path, monkeypatch) -> None:
    from gateway.demo.scenario import MAPPINGS_DIR

    text = (DOCS / "integration-guide.md").read_text(encoding="utf-8")
    files = _guide_files(text)
    assert set(files) == {"samples/zhujian.jsonl", "mappings/zhujian_permits.in.yaml", "gateway.toml"}
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    checked = runner.invoke(main, ["mapping", "check", "mappings/zhujian_permits.in.yaml"])
    assert checked.exit_code == 0 and "zhujian_permits@1 (approval_result)" in checked.output, checked.output
    tested = runner.invoke(main, ["mapping", "test", "mappings/zhujian_permits.in.yaml", "samples/zhujian.jsonl"])
    assert tested.exit_code == 1  # as the guide says: two records and one refused item
    assert tested.output.count('"kind": "approval_result"') == 2
    expected = next(line for line in text.splitlines() if line.startswith("ERROR zhujian.jsonl line 3"))
    assert expected.split("…")[0] in tested.output and "(value '91370602F8MGMB4C7A')" in tested.output
    # the guide's source section, in a gateway.toml with the hall sink it routes to
    shutil.copy(MAPPINGS_DIR / "hall_platform.out.yaml", tmp_path / "mappings")
    shutil.copytree(MAPPINGS_DIR / "codetables", tmp_path / "mappings" / "codetables")
    (tmp_path / "gateway.toml").write_text(
        '[gateway]\nstore = "sqlite:///gateway.db"\n\n[api]\nenabled = false\n\n[audit]\nseal = false\n\n'
        '[sinks.hall_platform]\nadapter = "rest"\nmapping = "mappings/hall_platform.out.yaml"\n'
        'url = "https://hall.example.gov.cn/api/records"\n' + files["gateway.toml"], encoding="utf-8")
    monkeypatch.setenv("ZHUJIAN_TOKEN", "a-token-for-the-test")
    check = runner.invoke(main, ["check", "-c", "gateway.toml"])
    assert check.exit_code == 0, check.output
    assert "source zhujian: adapter rest, mapping zhujian_permits@1 (approval_result)" in check.output


def test_the_supervisor_guide_explains_every_alert_type_the_gateway_raises() -> None:
    from gateway.supervision.alerts import ALERT_TYPES

    text = (DOCS / "zh" / "supervisor.md").read_text(encoding="utf-8")
    for code, kind in ALERT_TYPES.items():
        assert f"| `{code}` | {kind.label} |" in text, code


def test_readme_points_at_the_guides_and_the_references() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    for target in ("docs/integration-guide.md", "docs/zh/operator.md", "docs/zh/supervisor.md",
                   "docs/reference/configuration.md", "docs/reference/schema.md"):
        assert f"({target})" in readme, target
