"""The console script under hostile input: one or two lines naming the cause, exit 1, no
traceback on the console (it goes to a log file whose path is printed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAINLAKE = str(Path(sys.executable).parent / "chainlake")
DOWN = "postgresql://postgres:hunter2@127.0.0.1:1/nowhere"  # nothing listens on port 1


def _run(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHAINLAKE, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": str(Path(sys.executable).parent), "CHAINLAKE_LOG_DIR": str(tmp)},
    )


@pytest.mark.parametrize(
    "args", [("triggers", "list"), ("triggers", "deliveries"), ("db", "health")], ids=" ".join
)
def test_postgres_down_is_one_line(args: tuple[str, ...], tmp_path: Path) -> None:
    out = _run(*args, "--url", DOWN, tmp=tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "Traceback" not in text and "hunter2" not in text, text
    assert len(text.strip().splitlines()) <= 2, text
    assert "127.0.0.1" in text and "port 1" in text, text


def test_an_unforeseen_error_leaves_its_traceback_in_the_log(tmp_path: Path) -> None:
    out = _run("triggers", "list", "--url", DOWN, tmp=tmp_path)
    log = tmp_path / "cli-errors.log"
    assert str(log) in out.stderr
    assert "Traceback" in log.read_text() and "OperationalError" in log.read_text()


def test_a_huge_name_and_an_endless_cooldown_are_refused_by_field(tmp_path: Path) -> None:
    spec = tmp_path / "huge.yaml"
    spec.write_text(
        "triggers:\n"
        "  - id: big\n"
        f"    name: {'x' * 1_000_000}\n"
        "    chain: devnet\n"
        "    registry: erc20\n"
        "    cooldown: 99999999999d\n"
        "    conditions: [{type: event_type_equals, value: Transfer}]\n"
        '    actions: [{type: rest, url: "http://127.0.0.1:9/hook"}]\n'
    )
    out = _run("triggers", "apply", str(spec), "--dry-run", "--url", DOWN, tmp=tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[:2000]
    assert "Traceback" not in text
    assert "field 'name': 1000000 characters; at most 200" in text
    assert "field 'cooldown': '99999999999d' is longer than 366 days" in text
    assert len(text) < 2_000, "the name is not echoed back"


def test_version_and_short_help(tmp_path: Path) -> None:
    assert _run("--version", tmp=tmp_path).stdout.startswith("chainlake, version ")
    assert "Usage: chainlake" in _run("-h", tmp=tmp_path).stdout
