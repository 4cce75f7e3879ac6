"""pyproject.toml declares what the code imports: every third-party module imported by the
shipped packages is a declared dependency (the dev group counts for tests, tools and bench), and
every declared runtime dependency is imported somewhere (no package kept by habit)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("chainlake", "assets", "resources", "sensors", "pipelines", "cli")
DEV_ONLY = ("tools", "tests", "bench", "docker")
# docker/minio_init.py is imported by the compose test by its own name
LOCAL = {*SHIPPED, *DEV_ONLY, *(p.stem for p in (ROOT / "docker").glob("*.py"))}
# Declared for what they provide, not imported by name: the Dagster packages Dagster loads from
# configuration (storage, launchers, executors, webserver), drivers picked by URL scheme, the
# keccak backend, DuckDB's bundled extensions, chdb behind clickhouse-connect, pyarrow behind
# polars/deltalake, pandera's polars extra, the MCP client's transport.
NOT_IMPORTED_BY_NAME = {
    "dagster-webserver", "dagster-postgres", "dagster-duckdb", "dagster-docker", "dagster-k8s",
    "dagster-celery", "psycopg2-binary", "eth-hash", "duckdb-extensions",
    "duckdb-extension-delta", "duckdb-extension-httpfs", "duckdb-extension-aws", "chdb",
    "sqlalchemy", "cryptography", "mcp", "orjson", "alembic", "boto3",
}  # fmt: skip


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0]).lower()


def _declared() -> tuple[set[str], set[str]]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return (
        {_name(d) for d in doc["project"]["dependencies"]},
        {_name(d) for d in doc["dependency-groups"]["dev"]},
    )


def _imports(folders: tuple[str, ...]) -> dict[str, set[str]]:
    """Top-level third-party module -> files importing it."""
    out: dict[str, set[str]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            if any(part.startswith(".venv") for part in path.relative_to(ROOT).parts):
                continue  # the benchmarks' own environments (bench/.venv-etl, .venv-cryo)
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in LOCAL or top == "__future__":
                        continue
                    # a module beside a test, imported by its own name from pytest's rootdir
                    if (path.parent / f"{top}.py").exists():
                        continue
                    out.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return out


@cache
def _installed() -> dict[str, list[str]]:
    return packages_distributions()


def _distributions(module: str) -> set[str]:
    return {_name(d) for d in _installed().get(module, [])}


def test_shipped_code_imports_only_declared_dependencies() -> None:
    runtime, _ = _declared()
    missing = {
        m: sorted(files)[:3]
        for m, files in _imports(SHIPPED).items()
        if not _distributions(m) & runtime
    }
    assert not missing, f"imported but not in [project.dependencies]: {missing}"


def test_tools_and_tests_import_only_declared_dependencies() -> None:
    runtime, dev = _declared()
    missing = {
        m: sorted(files)[:3]
        for m, files in _imports(DEV_ONLY).items()
        if not _distributions(m) & (runtime | dev)
    }
    assert not missing, f"imported but not declared (dev group included): {missing}"


def test_every_runtime_dependency_is_imported_or_explained() -> None:
    runtime, _ = _declared()
    imported = {d for m in _imports(SHIPPED + DEV_ONLY) for d in _distributions(m)}
    unused = runtime - imported - NOT_IMPORTED_BY_NAME
    assert not unused, f"declared but never imported (say why in NOT_IMPORTED_BY_NAME): {unused}"
