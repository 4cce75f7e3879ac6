"""Bad values of a trigger's `phase` (two-phase alerts): `chainlake triggers apply` refuses the
file with one line naming the file, the trigger, the field and the value, and applies nothing;
the other triggers of the file are still checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main

GOOD = """
  - id: fine
    chain_id: 31337
    registry: erc20
    phase: fast
    conditions: [{type: amount_threshold, operator: gte, value: 1}]
    actions: [{name: hook, type: rest, url: "${CHAINLAKE_ACTION_SECRET_HOOK}"}]
"""
CASES = {
    # case: (the trigger's phase line and registry, text the error line must contain)
    "unknown-word": ("phase: slow", "erc20", "'slow' is not one of confirmed, fast"),
    "upper-case": ("phase: FAST", "erc20", "'FAST' is not one of confirmed, fast"),
    "a-list": ("phase: [fast]", "erc20", "['fast'] is not one of confirmed, fast"),
    "a-boolean": ("phase: true", "erc20", "True is not one of confirmed, fast"),
    "empty": ("phase:", "erc20", "None is not one of confirmed, fast"),
    "fast-analytics": ("phase: fast", "analytics", "'fast' needs events read at the chain's head"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_phase_is_refused_naming_file_trigger_and_field(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAINLAKE_ACTION_SECRET_HOOK", "https://hooks.example.com/x")
    line, registry, expected = CASES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(
        "user: ops\ntriggers:\n"
        f"  - id: {case}\n    chain_id: 31337\n    registry: {registry}\n    {line}\n"
        "    conditions: [{type: amount_threshold, operator: gte, value: 1}]\n"
        '    actions: [{name: hook, type: rest, url: "${CHAINLAKE_ACTION_SECRET_HOOK}"}]\n' + GOOD
    )
    out = CliRunner().invoke(main, ["triggers", "apply", str(path), "--dry-run"])
    assert out.exit_code == 1, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 2, out.output
    assert lines[0].startswith(f"{path}: trigger {case!r}: field 'phase': "), lines[0]
    assert expected in lines[0], lines[0]
    assert lines[1] == f"{path}: 1 problem(s); nothing applied"
