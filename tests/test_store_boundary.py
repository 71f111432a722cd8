"""Nothing outside gateway/store/ knows which backend runs under it: no module of the gateway or its plugins imports
sqlite3, psycopg or a backend module; benchmarks that measure one backend say so below."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKEND_MODULES = {"gateway.store.sqlite", "gateway.store.postgresql"}
DRIVERS = {"sqlite3", "psycopg", "psycopg_binary", "psycopg_pool"}

# Gateway modules outside gateway/store/ that may work on a database file themselves, each with its reason
# (none: `gateway backup`, which copies the SQLite file, lives in gateway/store/backup.py).
GATEWAY_EXCEPTIONS: dict[str, str] = {}

# Benchmarks that measure the SQLite backend itself or the machine's SQLite, each with its reason.
# tests/ is not scanned: tests reach the databases behind the gateway's back on purpose (tampering).
BENCHMARK_EXCEPTIONS = {
    "bench_audit.py": "measures verification of a SQLite store file and opens SqliteStore directly",
    "bench_console.py": "generates a million-record SQLite store row by row and opens it directly",
    "bench_exchange.py": "reads result rows straight from the SQLite file after the run",
    "bench_ingest.py": "the bare durable loader (iterparse → executemany on sqlite3) is the baseline it compares with",
    "bench_metrics.py": "builds a million-record SQLite store directly and times the scrape queries on its file",
    "bench_postgresql.py": "prints the SQLite version beside PostgreSQL's in the machine line of its comparison",
    "bench_masking.py": "reads rows from the SQLite file and prints the SQLite version in the machine line",
    "bench_outage.py": "watches the outbox in the SQLite file read-only while the gateway runs",
    "bench_security.py": "prints the SQLite version in the machine line",
    "bench_versions.py": "measures version handling on SqliteStore directly",
    "bench_writer.py": "measures the SQLite store's single writer on file-ingest batches, opening SqliteStore directly",
    "compare.py": "prints the SQLite version in the machine line; the bare Python peer writes SQLite itself",
}


def backend_imports(path: Path) -> set[str]:
    """Every import of a database driver or a backend module in ``path``, wherever it stands (lazy ones too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in DRIVERS or name in BACKEND_MODULES:
                found.add(name)
    return found


def test_no_module_outside_the_store_imports_a_database_driver_or_a_backend() -> None:
    offenders = {}
    for folder in ("gateway", "adapters"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel.parts[:2] == ("gateway", "store"):
                continue
            found = backend_imports(path)
            if found and str(rel) not in GATEWAY_EXCEPTIONS:
                offenders[str(rel)] = sorted(found)
    assert offenders == {}


def test_benchmarks_import_a_backend_only_where_they_measure_it() -> None:
    importing = {p.name for p in sorted((ROOT / "benchmarks").rglob("*.py")) if backend_imports(p)}
    assert importing <= set(BENCHMARK_EXCEPTIONS), sorted(importing - set(BENCHMARK_EXCEPTIONS))


def test_the_check_itself_sees_lazy_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    import sqlite3\n    from gateway.store.postgresql import PgStore\n"
                      "    from gateway.store import sqlite\n    from gateway.store import make_store\n")
    assert backend_imports(sample) == {"sqlite3", "gateway.store.postgresql", "gateway.store.sqlite"}
