"""The two Dagster instance configs of a checkout: the root dagster.yaml, which a bare `dagster`
command in the root reads and which needs no variable, and config/dagster/dagster.yaml, the
PostgreSQL instance `make dev` / `make instance` link into DAGSTER_HOME (chainlake.instance)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from chainlake import instance

ROOT = Path(__file__).resolve().parents[2]
BARE = ROOT / "dagster.yaml"
POSTGRES = ROOT / "config" / "dagster" / "dagster.yaml"
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV") or ROOT / ".venv") / "bin"


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def test_the_root_config_reads_no_variable_and_keeps_storage_default() -> None:
    from dagster._core.instance.config import dagster_instance_config

    text = BARE.read_text()
    assert not re.search(r"^\s*env:", text, flags=re.M), "the root dagster.yaml reads a variable"
    validated, custom_class = dagster_instance_config(str(ROOT), "dagster.yaml")
    assert custom_class is None
    # no storage key: SQLite under DAGSTER_HOME (or the CLI's temporary folder)
    assert "storage" not in _load(BARE) and validated.get("storage") is None


def test_the_postgres_instance_differs_from_the_root_config_in_storage_only() -> None:
    from dagster._core.instance.config import dagster_instance_config

    bare, postgres = _load(BARE), _load(POSTGRES)
    assert postgres.pop("storage") == {
        "postgres": {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}
    }
    assert postgres == bare
    validated, _ = dagster_instance_config(str(POSTGRES.parent), "dagster.yaml")
    assert validated["run_coordinator"]["class"] == "ChainQueuedRunCoordinator"


def test_the_instance_links_the_postgres_config_over_an_older_link(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(BARE)  # what an older `make dev` left in .dagster_home
    link = instance.link_config(home)
    assert link.is_symlink() and link.resolve() == POSTGRES.resolve()
    assert instance.INSTANCE_CONFIG == POSTGRES
    assert instance.link_config(home) == link  # idempotent


def test_a_bare_dagster_command_in_the_root_needs_no_variable() -> None:
    """`dagster definitions validate -m pipelines.definitions` in a shell that sets nothing:
    without DAGSTER_HOME the CLI reads ./dagster.yaml, which must not ask for a variable."""
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    out = subprocess.run(
        [str(VENV_BIN / "dagster"), "definitions", "validate", "-m", "pipelines.definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "All code locations passed validation" in out.stderr + out.stdout
    assert "DAGSTER_POSTGRES_URL" not in out.stderr
