"""A throw-away PostgreSQL server for the tests and benchmarks: Debian's binaries, a temporary directory, a socket.

``PostgresServer`` runs ``initdb`` in a fresh temporary directory (as the ``postgres`` system
user via ``runuser`` when the tests run as root, since PostgreSQL refuses to run as root) and
starts the server listening only on a Unix socket inside that directory: nothing on the
network can reach it. ``fresh_database`` clones a migrated template, so each test gets an
empty store in milliseconds.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL server binaries were not found (looked for initdb and pg_ctl under "
    "/usr/lib/postgresql/*/bin and on PATH). The PostgreSQL store tests need a real server: "
    "install Debian's package with `apt-get install -y postgresql` (or set GATEWAY_PG_BIN to the "
    "folder holding initdb and pg_ctl) and run the tests again."
)


class PostgresUnavailable(RuntimeError):
    pass


def find_bin() -> Path:
    """The folder with initdb and pg_ctl: $GATEWAY_PG_BIN, the newest /usr/lib/postgresql/*/bin, or PATH."""
    chosen = os.environ.get("GATEWAY_PG_BIN")
    candidates = [Path(chosen)] if chosen else []
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                      if Path(p).parent.name.isdigit() else 0, reverse=True)
    candidates += [Path(p) for p in versions]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise PostgresUnavailable(INSTALL_HINT)


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, reachable through a socket in that directory only."""

    def __init__(self, *, durable: bool = False, port: int = 5432, settings: dict[str, str] | None = None) -> None:
        self.bin = find_bin()
        self.durable = durable  # False: fsync off (tests); True: the server's defaults (benchmarks)
        self.port = port
        self.settings = dict(settings or {})
        self.root: Path | None = None
        self._user: str | None = None
        self._template_ready = False
        self._counter = 0

    # ------------------------------------------------------------------ lifecycle

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if self._user is None:
            return argv
        return ["runuser", "-u", self._user, "--", *argv]

    def start(self) -> PostgresServer:
        self.root = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        data = self.root / "data"
        if os.geteuid() == 0:
            # PostgreSQL will not run as root: hand the directory to an unprivileged system user.
            for name in ("postgres", "nobody"):
                try:
                    entry = pwd.getpwnam(name)
                except KeyError:
                    continue
                self._user = name
                os.chown(self.root, entry.pw_uid, entry.pw_gid)
                break
            else:
                raise PostgresUnavailable("running as root and neither a 'postgres' nor a 'nobody' user exists to "
                                          "run the PostgreSQL server as")
        os.chmod(self.root, 0o755)  # the socket lives here; the data folder below stays 0700
        run = subprocess.run(self._as_server_user([
            str(self.bin / "initdb"), "-D", str(data), "-U", "gateway", "--auth=trust", "--encoding=UTF8",
            "--locale=C", "--no-instructions"]), capture_output=True, text=True)
        if run.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {run.stderr.strip() or run.stdout.strip()}")
        options = {
            "listen_addresses": "''", "unix_socket_directories": f"'{self.root}'", "port": str(self.port),
            "max_connections": "300", "shared_buffers": "128MB", "log_min_messages": "warning",
        }
        if not self.durable:
            options.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        options.update(self.settings)
        with open(data / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
            for key, value in options.items():
                conf.write(f"{key} = {value}\n")
        log = self.root / "server.log"
        run = subprocess.run(self._as_server_user([
            str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start"]),
            capture_output=True, text=True)
        if run.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailable(f"pg_ctl start failed: {run.stderr.strip()}\n{tail}")
        return self

    def stop(self) -> None:
        if self.root is None:
            return
        subprocess.run(self._as_server_user([str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                                             "-w", "stop"]), capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ databases

    def url(self, database: str = "postgres") -> str:
        assert self.root is not None, "the server is not started"
        return f"postgresql://gateway@/{database}?host={self.root}&port={self.port}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str, template: str | None = None) -> str:
        self.admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def fresh_database(self) -> tuple[str, str]:
        """(name, URL) of a new database holding a migrated, empty gateway store."""
        if not self._template_ready:
            self._make_template()
        self._counter += 1
        name = f"t{os.getpid()}_{self._counter}_{int(time.time() * 1000) % 100000}"
        return name, self.create_database(name, "gateway_template")

    def _make_template(self) -> None:
        from gateway.store.postgresql import PgStore

        self.create_database("gateway_template")
        PgStore(self.url("gateway_template"))._migrate()  # synchronous; leaves no connection open
        # The first store opened on a copy chooses its audit hash algorithm (and its creation time).
        import psycopg

        with psycopg.connect(self.url("gateway_template"), autocommit=True) as conn:
            conn.execute("DELETE FROM meta")
        self._template_ready = True
