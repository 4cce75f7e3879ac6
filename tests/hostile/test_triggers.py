"""Hostile triggers files: each is refused by `chainlake triggers apply` with one line naming
the file, the trigger, the action and the field, and nothing is applied.

A case is one file in `tests/hostile/triggers/`, whose first line is
`# expect: <text the error line must contain>` (the second says what the file tries). The
operator's settings are those of a deployment that declared nothing: no extra secrets, no
allowed private address, Telegram's and Discord's own API hosts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main

CASES = sorted((Path(__file__).parent / "triggers").glob("*.yaml"))
OPERATOR_SETTINGS = (
    "CHAINLAKE_ACTION_ALLOW_HOSTS",
    "CHAINLAKE_ACTION_SECRETS",
    "CHAINLAKE_TELEGRAM_API_BASE",
    "CHAINLAKE_DISCORD_API_BASE",
    "CHAINLAKE_SLACK_API_BASE",
)


def _expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: ...'"
    return first.removeprefix("# expect: ")


@pytest.fixture
def undeclared(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OPERATOR_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    # variables a hostile file reaches for, set as they would be in a deployment
    monkeypatch.setenv("CHAINLAKE_SECRET_KEY", "fernet-key-of-the-operator")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-secret-of-the-operator")


def test_there_are_trigger_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_hostile_triggers_file_is_refused_at_apply(case: Path, undeclared: None) -> None:
    out = CliRunner().invoke(main, ["triggers", "apply", str(case), "--dry-run"])
    assert out.exit_code == 1, out.output
    lines = out.output.strip().splitlines()
    # one line for the problem, one saying nothing was applied
    assert len(lines) == 2, out.output
    assert lines[-1] == f"{case}: 1 problem(s); nothing applied"
    assert lines[0].startswith(f"{case}: trigger {case.stem!r}: field 'actions[0]."), lines[0]
    assert _expected(case) in lines[0], lines[0]
    # the refusal never shows the value it would have read
    assert "of-the-operator" not in out.output


def test_declared_secrets_and_allowed_hosts_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, undeclared: None
) -> None:
    """The same shapes, as the operator allows them: a declared secret in a token field, a
    header or at the start of a URL, an allowed private address, Discord's own host."""
    monkeypatch.setenv("CHAINLAKE_ACTION_SECRETS", "OPS_HOOK_TOKEN")
    monkeypatch.setenv("CHAINLAKE_ACTION_ALLOW_HOSTS", "10.0.0.0/8")
    path = tmp_path / "fine.yaml"
    path.write_text(
        """
user: ops
triggers:
  - id: fine
    chain_id: 31337
    registry: reputation
    conditions: [{type: score_threshold, operator: lt, value: 30}]
    actions:
      - {name: hook, type: rest, url: "${CHAINLAKE_ACTION_SECRET_HOOK}/in?x=1",
         headers: {Authorization: "Bearer ${OPS_HOOK_TOKEN}"}}
      - {name: internal, type: rest, url: "http://10.0.0.5/in"}
      - {name: tg, type: telegram, chat_id: "${CHAINLAKE_ACTION_SECRET_CHAT}",
         bot_token: "${CHAINLAKE_ACTION_SECRET_BOT}"}
      - {name: dc, type: discord, webhook_url: "https://discord.com/api/webhooks/1/abc"}
      - {name: agent, type: mcp, endpoint: "${CHAINLAKE_ACTION_SECRET_MCP}",
         token: "${CHAINLAKE_ACTION_SECRET_MCP_TOKEN}", tool_name: t}
"""
    )
    out = CliRunner().invoke(main, ["triggers", "apply", str(path), "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "1 trigger(s) valid" in out.output


def test_a_malformed_allow_list_is_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, undeclared: None
) -> None:
    monkeypatch.setenv("CHAINLAKE_ACTION_ALLOW_HOSTS", "127.0.0.1,intranet.example")
    path = tmp_path / "t.yaml"
    path.write_text(
        "triggers:\n  - {id: t, chain_id: 31337, registry: reputation,\n"
        "     conditions: [{type: score_threshold, value: 3}],\n"
        "     actions: [{name: h, type: rest, url: 'https://hooks.example/x'}]}\n"
    )
    out = CliRunner().invoke(main, ["triggers", "apply", str(path), "--dry-run"])
    assert out.exit_code == 1, out.output
    assert "CHAINLAKE_ACTION_ALLOW_HOSTS: 'intranet.example' is not an IP address" in out.output
    assert "Traceback" not in out.output
