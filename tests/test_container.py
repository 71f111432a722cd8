"""The container image and the compose example, checked without a Docker daemon (none runs here).

What can be proven from the files: the Dockerfile lints clean (hadolint) and its entry point too
(shellcheck); the final stage installs the wheel with the lock and no source tree; every path
the image writes is created for the non-root user it runs as; HEALTHCHECK, EXPOSE and the API
agree; the entry point behaves as documented when run here; compose.yaml is a coherent
PostgreSQL + three gateways deployment whose configuration passes the gateway's own checks.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from gateway.app import build
from gateway.checks import run_checks
from gateway.config import ApiSection, load_config
from gateway.security.checks import security_warnings

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT = REPO / "deploy" / "docker-entrypoint.sh"
COMPOSE = REPO / "deploy" / "compose.yaml"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"expected one {keyword} in stage {self.name or self.base}, found {len(found)}"
        return found[0]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for i in self.all("ENV"):
            values.update(part.split("=", 1) for part in shlex.split(i.args))
        return values

    def runs(self) -> str:
        return "\n".join(i.args for i in self.all("RUN"))


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """ARGs before the first FROM, and the stages with their instructions (continuations joined)."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    logical, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not logical:
            start = number
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, rest = logical.partition(" ")
        keyword, rest, logical = keyword.upper(), rest.strip(), ""
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], words[0])
            stages.append(Stage(base, name, []))
        elif not stages and keyword == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append(Instruction(keyword, rest, start))
    return args, stages


def exec_form(args: str) -> list[str]:
    return yaml.safe_load(args)  # a JSON array is YAML too


ARGS, STAGES = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
BUILDER, FINAL = STAGES[0], STAGES[-1]
COMPOSE_DOC = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- linters


def test_the_dockerfile_passes_hadolint_with_every_rule_it_ignores_justified_inline() -> None:
    result = subprocess.run([str(BIN / "hadolint"), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], \
                f"Dockerfile:{i + 1}: say why the rule does not apply, in a comment above the ignore"


def test_the_entrypoint_passes_shellcheck_as_a_posix_sh_script() -> None:
    assert ENTRYPOINT.read_text(encoding="utf-8").startswith("#!/bin/sh\n")
    result = subprocess.run([str(BIN / "shellcheck"), "--shell=sh", "--severity=style", str(ENTRYPOINT)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------- the image


def test_the_image_is_built_in_two_stages_and_the_final_one_installs_the_wheel_with_the_lock() -> None:
    assert len(STAGES) == 2 and BUILDER.name == "builder"
    assert FINAL.base == BUILDER.base and re.fullmatch(r"python:3\.11-slim-\w+", FINAL.base)
    # the builder has what setup.py and pyproject.toml need to build the wheel
    copied = {word for i in BUILDER.all("COPY") for word in i.args.split()[:-1]}
    assert {"pyproject.toml", "setup.py", "README.md", "constraints.txt", "gateway", "adapters", "mappings"} <= copied
    assert "pip wheel" in BUILDER.runs() and "PIP_CONSTRAINT=/src/constraints.txt" in BUILDER.runs()
    # the final stage: no source tree, no editable install, the locked wheels only
    final_copies = [i.args for i in FINAL.all("COPY")]
    assert final_copies == ["--chmod=0755 deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint"]
    install = next(i.args for i in FINAL.all("RUN") if "pip install" in i.args)
    assert "--mount=type=bind,from=builder,source=/wheels,target=/wheels" in install
    assert "--no-index" in install and "--constraint /wheels/constraints.txt" in install
    assert " -e " not in install and "--editable" not in install
    assert "cp constraints.txt /wheels/" in BUILDER.runs()


def test_the_build_context_holds_what_the_dockerfile_copies_and_not_the_checkouts_bulk() -> None:
    """.dockerignore lists what is sent: everything else (.venv, .git, benchmark data) stays out."""
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = [word for stage in STAGES for i in stage.all("COPY") if "--from=" not in i.args
               for word in i.args.split()[:-1] if not word.startswith("--")]
    assert set(sources) == allowed, "copy what is allowed into the context, allow what is copied"
    for source in sources:
        assert (REPO / source).exists(), source
    assert {"**/__pycache__", "**/*.pyc"} <= set(lines)


def test_the_image_runs_as_a_fixed_non_root_user_that_owns_every_path_it_writes() -> None:
    user = FINAL.one("USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid == uid
    runs = FINAL.runs()
    assert f"useradd --system --uid {uid} --gid gateway" in runs and f"groupadd --system --gid {gid} gateway" in runs
    user_line = FINAL.one("USER").line
    created_for_user = set()
    for i in FINAL.all("RUN"):
        for match in re.finditer(r"install -d -o gateway -g gateway -m 0750 ((?:/\S+ ?)+)", i.args):
            assert i.line < user_line, "folders are made before USER drops root"
            created_for_user |= set(match[1].split())
    volumes = exec_form(FINAL.one("VOLUME").args)
    env = FINAL.env()
    writable = {*volumes, FINAL.one("WORKDIR").args, env["GATEWAY_DATA"]}
    assert writable <= created_for_user, f"not created for the user: {writable - created_for_user}"
    # the configuration is readable by the group, writable by nobody but root
    assert "install -d -o root -g gateway -m 0750 /etc/gateway" in runs
    assert Path(env["GATEWAY_CONFIG"]).parent == Path("/etc/gateway")


def test_the_api_listens_on_all_interfaces_on_the_exposed_port_and_the_healthcheck_probes_readyz() -> None:
    env = FINAL.env()
    assert env["GATEWAY_API_HOST"] == "0.0.0.0"
    assert FINAL.one("EXPOSE").args == str(ApiSection.model_fields["port"].default) == "8080"
    health = FINAL.one("HEALTHCHECK").args
    options, _, command = health.partition("CMD ")
    assert exec_form(command)[:2] == ["gateway", "probe"]  # gateway.observability.probe: no curl needed
    timeout = re.search(r"--timeout=(\d+)s", options)[1]
    probe_timeout = exec_form(command)[exec_form(command).index("--timeout") + 1]
    assert int(probe_timeout.rstrip("s")) < int(timeout), "the probe gives up before Docker kills it"
    assert "curl" not in DOCKERFILE.read_text(encoding="utf-8").split("HEALTHCHECK", 1)[1]


def test_tini_is_pid_1_and_runs_the_entrypoint_which_runs_the_gateway() -> None:
    assert "apt-get install -y --no-install-recommends tini" in FINAL.runs()
    assert "rm -rf /var/lib/apt/lists/*" in FINAL.runs()
    assert exec_form(FINAL.one("ENTRYPOINT").args) == ["tini", "--", "docker-entrypoint"]
    assert exec_form(FINAL.one("CMD").args) == ["run"]
    assert "libxmlsec1" not in FINAL.runs()  # the xmlsec wheel carries its own (tests/test_wheel_install.py)


# ---------------------------------------------------------------------------- the entry point, run here


def fake_gateway(folder: Path) -> Path:
    """Stands in for the installed gateway the entry point execs: prints its arguments and the secrets it got."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "gateway"
    script.write_text('#!/bin/sh\necho "gateway $*"\necho "PGPASSWORD=${PGPASSWORD-unset}"\n'
                      'echo "PGPASSWORD_FILE=${PGPASSWORD_FILE-unset}"\n', encoding="utf-8")
    script.chmod(0o755)
    return folder


def entrypoint(*args: str, env: dict[str, str], path: Path | None = None,
               user: str | None = None) -> subprocess.CompletedProcess[str]:
    command = ["/bin/sh", str(ENTRYPOINT), *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    base = {"PATH": f"{path}:{os.environ['PATH']}" if path else os.environ["PATH"], "HOME": "/tmp"}
    return subprocess.run(command, env={**base, **env}, capture_output=True, text=True, timeout=120)


def test_the_entrypoint_reads_the_postgresql_password_from_its_secret_file_and_runs_the_command(
        tmp_path: Path) -> None:
    secret = tmp_path / "pg_password"
    secret.write_text("s3cret-from-file\n", encoding="utf-8")
    result = entrypoint("check", "-c", "/etc/gateway/gateway.toml", path=fake_gateway(tmp_path / "bin"),
                        env={"PGPASSWORD_FILE": str(secret), "GATEWAY_DATA": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["gateway check -c /etc/gateway/gateway.toml",
                                          "PGPASSWORD=s3cret-from-file", "PGPASSWORD_FILE=unset"]


@pytest.mark.parametrize(("env", "message"), [
    ({"PGPASSWORD": "x", "PGPASSWORD_FILE": "{tmp}/pg"}, "both PGPASSWORD and PGPASSWORD_FILE are set: set one"),
    ({"PGPASSWORD_FILE": "{tmp}/missing"}, "PGPASSWORD_FILE names {tmp}/missing, which is not a file uid"),
    ({"GATEWAY_SIGNER_TOKEN_FILE": "{tmp}/empty"}, "GATEWAY_SIGNER_TOKEN_FILE names {tmp}/empty, which is empty"),
])
def test_the_entrypoint_refuses_secrets_it_cannot_use_and_says_which(tmp_path: Path, env: dict[str, str],
                                                                     message: str) -> None:
    (tmp_path / "pg").write_text("pw", encoding="utf-8")
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    result = entrypoint("run", path=fake_gateway(tmp_path / "bin"), env={**env, "GATEWAY_DATA": str(tmp_path)})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("docker-entrypoint: " + message.format(tmp=tmp_path))


def test_the_entrypoint_creates_the_data_folders_the_configuration_expects_before_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    result = entrypoint(path=fake_gateway(tmp_path / "bin"),
                        env={"GATEWAY_DATA": str(data), "GATEWAY_DATA_DIRS": "drop/county:/drop/county-out"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "gateway run"  # the image's CMD, when no command is given
    assert (data / "drop" / "county").is_dir() and (data / "drop" / "county-out").is_dir()
    assert not list(data.glob(".write-probe*"))
    escaping = entrypoint("run", path=fake_gateway(tmp_path / "bin"),
                          env={"GATEWAY_DATA": str(data), "GATEWAY_DATA_DIRS": "drop/../../etc"})
    assert escaping.returncode == 2
    assert escaping.stderr == f"docker-entrypoint: GATEWAY_DATA_DIRS: drop/../../etc is not a folder under {data}\n"


def test_the_entrypoint_stops_run_at_once_when_the_data_volume_is_missing_or_not_writable(tmp_path: Path) -> None:
    bin_dir = fake_gateway(tmp_path / "bin")
    missing = entrypoint("run", path=bin_dir, env={"GATEWAY_DATA": str(tmp_path / "nowhere")})
    assert missing.returncode == 2
    assert missing.stderr.startswith(f"docker-entrypoint: {tmp_path}/nowhere does not exist: mount a volume there")
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the entry point as another user")
    # A host folder owned by someone else, as a bind mount keeps its host owner: the entry point runs as
    # another user (nobody) than the folder's owner (this test). Outside pytest's private tmp folders,
    # which nobody may enter.
    with tempfile.TemporaryDirectory() as shared:
        root = Path(shared)
        root.chmod(0o755)
        data, bin_dir = root / "data", fake_gateway(root / "bin")
        data.mkdir(mode=0o755)
        refused = entrypoint("run", path=bin_dir, env={"GATEWAY_DATA": str(data)}, user="65534")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert refused.stderr.startswith(f"docker-entrypoint: {data} is not writable by uid 65534 gid 65534: use "
                                         "a named volume, or chown the host folder to 65534:65534")
        # commands that only read go ahead
        reader = entrypoint("check", path=bin_dir, env={"GATEWAY_DATA": str(data)}, user="65534")
        assert reader.returncode == 0 and reader.stdout.startswith("gateway check\n"), reader.stderr


def test_the_real_gateway_runs_behind_the_entrypoint(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[api]\nport = 8080\n", encoding="utf-8")
    result = entrypoint("check", path=BIN, env={"GATEWAY_CONFIG": str(config), "GATEWAY_DATA": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{config}: OK")


# ---------------------------------------------------------------------------- compose


def gateways() -> dict[str, dict]:
    return {name: svc for name, svc in COMPOSE_DOC["services"].items() if name.startswith("gateway-")}


def mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """container path -> (source, read-only)"""
    out = {}
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        out[parts[1]] = (parts[0], len(parts) > 2 and parts[2] == "ro")
    return out


def test_compose_runs_three_gateways_on_the_official_postgresql_image_once_it_is_healthy() -> None:
    services = COMPOSE_DOC["services"]
    assert set(services) == {"postgres", "gateway-1", "gateway-2", "gateway-3"}
    pg = services["postgres"]
    assert re.fullmatch(r"postgres:\d+[\w.-]*", pg["image"])
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert mounts(pg)["/var/lib/postgresql/data"][0] in COMPOSE_DOC["volumes"]
    assert pg["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/pg_password" and "pg_password" in pg["secrets"]
    hostnames, host_ports = set(), set()
    for name, svc in gateways().items():
        assert svc["depends_on"] == {"postgres": {"condition": "service_healthy"}}, name
        assert svc["build"]["context"] == ".." and (COMPOSE.parent / svc["build"]["context"] / "Dockerfile").is_file()
        hostnames.add(svc["hostname"])
        for port in svc["ports"]:
            host, container = port.split(":")
            assert container == FINAL.one("EXPOSE").args, name
            host_ports.add(host)
        env = svc["environment"]
        secret = env["PGPASSWORD_FILE"]
        assert secret.startswith("/run/secrets/") and secret.removeprefix("/run/secrets/") in svc["secrets"]
        for secret_name in svc["secrets"]:
            assert secret_name in COMPOSE_DOC["secrets"], f"{name}: secret {secret_name} is not declared"
        assert svc["read_only"] is True and "/tmp" in svc["tmpfs"]
    assert len(hostnames) == len(host_ports) == 3  # stable, distinct drop-folder claims; one port each


def test_compose_mounts_configuration_certificates_and_mappings_read_only_and_state_on_volumes() -> None:
    env = FINAL.env()
    for name, svc in gateways().items():
        mounted = mounts(svc)
        config_dir = str(Path(svc["environment"]["GATEWAY_CONFIG"]).parent)
        assert svc["environment"]["GATEWAY_CONFIG"] == env["GATEWAY_CONFIG"]
        for path, (source, read_only) in mounted.items():
            if path.startswith(config_dir):
                assert read_only, f"{name}: {path} is configuration, mount it read-only"
                assert (COMPOSE.parent / source).exists() or source.startswith("./config/certs"), source
        for volume in exec_form(FINAL.one("VOLUME").args):
            source, read_only = mounted[volume]
            assert source in COMPOSE_DOC["volumes"] and not read_only, f"{name}: {volume} is state: a volume"


def test_the_compose_configuration_passes_gateway_check_once_the_entrypoint_made_its_folders(tmp_path: Path,
                                                                                              monkeypatch) -> None:
    """Load deploy/config/gateway.toml as the container sees it: every problem left is a folder on a volume
    that GATEWAY_DATA_DIRS creates; every path the gateway writes is on a volume, never in /etc/gateway."""
    svc = gateways()["gateway-1"]
    site = tmp_path / "etc-gateway"
    shutil.copytree(REPO / "mappings", site / "mappings")
    shutil.copy(COMPOSE.parent / "config" / "gateway.toml", site / "gateway.toml")
    monkeypatch.setenv("GATEWAY_API_HOST", FINAL.env()["GATEWAY_API_HOST"])
    config = load_config(site / "gateway.toml")
    assert config.gateway.store.startswith("postgresql://") and "@postgres:" in config.gateway.store
    assert ":" not in config.gateway.store.split("//", 1)[1].split("@", 1)[0], "no password in the URL"
    assert config.api.host == "0.0.0.0" and str(config.api.port) == FINAL.one("EXPOSE").args
    volumes = [Path(v) for v in exec_form(FINAL.one("VOLUME").args)]
    written = [Path(config.audit.witness), Path(config.audit.archives_dir)]
    written += [Path(s.adapter_options()["path"]) for s in config.sources.values() if s.adapter == "filedrop"]
    for path in written:
        assert path.is_absolute() and any(path.is_relative_to(v) for v in volumes), path
    report = run_checks(config, build(config))
    data = Path(FINAL.env()["GATEWAY_DATA"])
    made = {data / d for d in svc["environment"]["GATEWAY_DATA_DIRS"].split(":")}
    for problem in report.problems:
        folder = re.search(r"folder (\S+) does not exist", problem)
        assert folder and Path(folder[1]) in made, problem
    assert report.warnings == []
    assert config.api.tls_cert and config.api.tls_key  # off loopback, so over TLS
    assert not [w for w in security_warnings(config, build(config)) if w.topic == "api"], "no API warning"
