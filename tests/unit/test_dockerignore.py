"""The Docker build context leaves out what the image installs or mounts itself."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_build_context_leaves_out_environments_and_data() -> None:
    entries = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "node_modules", "data", ".tools", ".dagster_home", ".git"} <= entries
    # every folder the Dockerfile copies is still in the context
    copied = {
        line.split()[1].rstrip("/")
        for line in (ROOT / "docker" / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ") and not line.startswith("COPY --from")
    }
    assert not copied & entries, copied & entries
