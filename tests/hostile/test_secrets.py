"""Credentials of actions never reach the audit, the deliveries, the logs or the CLI.

Real local receivers fail on purpose, and a hostile one echoes the URL it was called at, token
and all, in its error body. The secrets travel where they do in practice: a webhook URL's
query string and userinfo, a Telegram bot token in the path (the Bot API's `/bot<token>/`), a
Discord webhook token, an MCP endpoint's query string. After the attempts, every column of
`action_results` and `deliveries`, every captured log record and the output of `chainlake
triggers deliveries` and `replay --now` are searched for each secret.

And with CHAINLAKE_SECRET_KEY unset, an agent with a stored MCP token is not called without
it: the delivery fails, saying why, and the MCP server sees no request.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

import chainlake.actions.telegram as telegram_action
from chainlake.actions.base import RetryPolicy, Secrets
from chainlake.actions.deliver import Deliverer, default_senders
from chainlake.actions.mcp import McpToolCall
from chainlake.events import db, store
from chainlake.events.agents import agent_resolver, new_key, set_agent_mcp_token
from chainlake.events.evaluate import evaluate_batch
from chainlake.events.spec import Resolver, apply_spec, parse_spec
from chainlake.uri import credentials_in, redact_text, redact_uri
from cli.main import main
from tests.integration.triggers_helpers import (
    CHAIN,
    WALLET,
    database,
    feedback,
    free_port,
    mcp_server,
    receiver,
)

pytestmark = pytest.mark.integration

RESOLVER = Resolver({"devnet": CHAIN}, lambda name, cid: [WALLET])
SECRET1 = "SECRET1-query-token-8c1f"
SECRET2 = "SECRET2-userinfo-pw-77aa"
BOT_TOKEN = "123456789:SECRET3-AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
DISCORD_TOKEN = "SECRET4discordWebhookTokenQ1w2E3r4T5y6U7i8O9p0"
SECRET5 = "SECRET5-mcp-api-key-31d9"
MCP_TOKEN = "SECRET6-mcp-bearer-token"
SECRETS = (SECRET1, SECRET2, BOT_TOKEN, "SECRET3", DISCORD_TOKEN, "SECRET4", SECRET5, MCP_TOKEN)


def assert_clean(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in {where}: {text[:3000]}"


# -- redaction, case by case ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"http://u:{SECRET2}@127.0.0.1:8080/hook?token={SECRET1}", "http://127.0.0.1:8080/hook"),
        (f"https://api.telegram.org/bot{BOT_TOKEN}/sendMessage",
         "https://api.telegram.org/bot<redacted>/sendMessage"),
        (f"https://discord.com/api/webhooks/112233445566778899/{DISCORD_TOKEN}?wait=true",
         "https://discord.com/api/webhooks/112233445566778899/<redacted>"),
        ("https://discord.com/api/webhooks/1/abcdefghijklmnop", "https://discord.com/api/webhooks/1/<redacted>"),
        ("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
         "https://hooks.slack.com/services/T00000000/B00000000/<redacted>"),
        ("https://hook.example/in/0123456789abcdef0123456789abcdef", "https://hook.example/in/<redacted>"),
        ("https://webhook.site/8f14e45f-ceea-467f-a0e6-1bbd7ac3f6c5", "https://webhook.site/<redacted>"),
        ("https://x.example/v1/sk_live_4eC39HqLyjWDarjtT1zdp7dc/charge", "https://x.example/v1/<redacted>/charge"),
        # what is not a credential stays readable
        ("https://example.com/agents/registration.json", "https://example.com/agents/registration.json"),
        ("https://ipfs.io/ipfs/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
         "https://ipfs.io/ipfs/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"),
        ("http://127.0.0.1:8000/status/503", "http://127.0.0.1:8000/status/503"),
    ],
)  # fmt: skip
def test_redact_uri_takes_credentials_out_of_urls(url: str, shown: str) -> None:
    assert redact_uri(url) == shown
    for part in credentials_in(url):
        if len(part) >= 4:
            assert part not in redact_text(f"calling {url} failed: {part}", credentials_in(url))


def test_redact_text_finds_urls_in_messages() -> None:
    message = (
        f"POST 'http://u:{SECRET2}@h:1/x?token={SECRET1}' failed (see "
        f"https://api.telegram.org/bot{BOT_TOKEN}/sendMessage)."
    )
    shown = redact_text(message)
    assert shown == (
        "POST 'http://h:1/x' failed (see https://api.telegram.org/bot<redacted>/sendMessage)."
    )
    assert redact_text(f"token {MCP_TOKEN} refused", [MCP_TOKEN]) == "token <redacted> refused"


# -- failing deliveries, end to end ---------------------------------------------------------


@pytest.fixture
def url() -> Iterator[str]:
    with database() as u:
        yield u


def rows_text(url: str) -> str:
    with db.connection(url) as c:
        results = c.execute("SELECT * FROM action_results").fetchall()
        deliveries = c.execute("SELECT * FROM deliveries").fetchall()
    assert results and deliveries
    return json.dumps([results, deliveries], default=str)


def test_failed_deliveries_keep_their_secrets_out_of_audit_logs_and_cli(
    url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    closed = free_port()  # nothing listens there: the MCP call fails to connect
    # the hostile receivers repeat their request URLs (credentials included) in their bodies
    webhook_echo = {
        "error": "rejected",
        "you_called": f"/hook?token={SECRET1}",
        "auth": f"u:{SECRET2}",
    }
    tg_echo = {
        "ok": False,
        "error_code": 500,
        "description": f"bad bot /bot{BOT_TOKEN}/sendMessage",
    }
    with (
        receiver(default=(500, {}, webhook_echo)) as hook,
        receiver(default=(500, {}, tg_echo)) as tg,
        receiver(default=(500, {}, {"message": f"token {DISCORD_TOKEN} rate"})) as dc,
    ):
        hook_url = hook.url.replace("http://", f"http://u:{SECRET2}@") + f"/hook?token={SECRET1}"
        env = {
            "CHAINLAKE_ACTION_SECRET_HOOK_URL": hook_url,
            "CHAINLAKE_ACTION_SECRET_TG_TOKEN": BOT_TOKEN,
            "CHAINLAKE_ACTION_SECRET_DISCORD_URL": (
                f"{dc.url}/api/webhooks/112233445566778899/{DISCORD_TOKEN}"
            ),
            "CHAINLAKE_ACTION_SECRET_MCP_TOKEN": MCP_TOKEN,
            # the operator's settings where actions may go: receivers on this machine, the
            # stand-ins for Telegram's and Discord's APIs
            "CHAINLAKE_ACTION_ALLOW_HOSTS": "127.0.0.1,::1",
            "CHAINLAKE_TELEGRAM_API_BASE": tg.url,
            "CHAINLAKE_DISCORD_API_BASE": dc.url,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        tg_action = {"name": "tg", "type": "telegram", "bot_token": "${CHAINLAKE_ACTION_SECRET_TG_TOKEN}",
                     "chat_id": "-100", "max_attempts": 2}  # fmt: skip
        if not hasattr(telegram_action, "telegram_api_base"):
            # a Telegram action that still takes its API base from the trigger's config
            tg_action["api_base"] = tg.url
        actions = [
            # the URL in the file itself, and the same URL from the environment
            {"name": "literal", "type": "rest", "url": hook_url, "max_attempts": 2},
            {"name": "fromenv", "type": "rest", "url": "${CHAINLAKE_ACTION_SECRET_HOOK_URL}",
             "max_attempts": 2},
            tg_action,
            {"name": "dc", "type": "discord", "webhook_url": "${CHAINLAKE_ACTION_SECRET_DISCORD_URL}",
             "max_attempts": 2},
            {"name": "mcp", "type": "mcp", "endpoint": f"http://127.0.0.1:{closed}/mcp?api_key={SECRET5}",
             "token": "${CHAINLAKE_ACTION_SECRET_MCP_TOKEN}", "tool_name": "receive_feedback", "timeout_ms": 3000,
             "max_attempts": 1},
        ]  # fmt: skip
        spec = {
            "user": "ops",
            "triggers": [
                {"id": "leaky", "chain": "devnet", "registry": "reputation",
                 "conditions": [{"type": "score_threshold", "operator": "lt", "value": 30}],
                 "actions": actions},
            ],
        }  # fmt: skip
        with db.connection(url) as c:
            apply_spec(c, parse_spec(spec, resolver=RESOLVER))
            store.insert_events(c, [feedback(5, score=3)])
            assert evaluate_batch(c).deliveries_added == len(actions)
        report = Deliverer(
            url=url,
            senders=default_senders(),
            secrets=Secrets(getenv=env.get),
            policy=RetryPolicy(base_delay=0.01, max_delay=0.05),
            job_id="test",
            workers=1,
        ).run()
        assert (report.claimed, report.failed, report.succeeded) == (5, 5, 0), report
        # the secrets did travel: the receivers were called with them
        assert hook.requests and tg.requests and dc.requests
        assert {r.path for r in tg.requests} == {f"/bot{BOT_TOKEN}/sendMessage"}
        assert all(r.path.endswith(f"token={SECRET1}") for r in hook.requests)
        for line in report.errors:
            assert_clean("the delivery report", line)
        text = rows_text(url)
        assert_clean("action_results/deliveries", text)
        assert "<redacted>" in text  # what was taken out is marked, not silently dropped

        runner = CliRunner()
        out = runner.invoke(main, ["triggers", "deliveries", "--url", url])
        assert out.exit_code == 0, out.output
        assert out.output.count("failed") >= 5
        assert_clean("`chainlake triggers deliveries`", out.output)
        # replayed from the shell, with the secrets in its environment: they fail again
        out = runner.invoke(
            main, ["triggers", "replay", "--failed", "--now", "--url", url], env=env
        )
        assert out.exit_code == 0, out.output
        assert "5 deliveries pending again" in out.output
        assert_clean("`chainlake triggers replay --now`", out.output)
    assert_clean("action_results/deliveries after the replay", rows_text(url))
    logged = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
    assert "HTTP Request" in logged  # httpx logged every request, redacted
    assert_clean("the logs", logged + caplog.text)


def test_no_mcp_call_without_its_stored_token(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """CHAINLAKE_SECRET_KEY unset: the agent's token cannot be decrypted, so its MCP server
    is not called at all (rather than called without the token)."""
    monkeypatch.setenv("CHAINLAKE_ACTION_ALLOW_HOSTS", "127.0.0.1,::1")
    monkeypatch.delenv("CHAINLAKE_SECRET_KEY", raising=False)
    key = new_key()
    operator = Secrets(getenv=os.environ.get)  # the delivering process's environment
    with mcp_server() as srv:
        registration = {"name": "agent 1", "endpoints": [{"name": "MCP", "endpoint": srv.url}]}
        token_uri = (
            "data:application/json;base64,"
            + base64.b64encode(json.dumps(registration).encode()).decode()
        )
        with db.connection(url) as c:
            store.insert_events(
                c,
                [{**feedback(1), "registry": "identity", "event_type": "Registered",
                  "token_uri": token_uri, "owner": WALLET, "score": None}],
            )  # fmt: skip
            set_agent_mcp_token(c, 1, MCP_TOKEN, key=key)
            spec = {
                "user": "ops",
                "triggers": [
                    {"id": "agent-call", "chain": "devnet", "registry": "reputation",
                     "conditions": [{"type": "score_threshold", "operator": "lt", "value": 30}],
                     "actions": [{"name": "agent", "type": "mcp", "resolve_endpoint": True,
                                  "tool_name": "receive_feedback", "max_attempts": 3,
                                  "arguments_template": {"agent_id": "{agent_id}", "score": "{score}"}}]},
                ],
            }  # fmt: skip
            apply_spec(c, parse_spec(spec, resolver=RESOLVER))
            store.insert_events(c, [feedback(5, score=3)])
            assert evaluate_batch(c).deliveries_added == 1
        senders = default_senders(
            mcp=McpToolCall(agent_resolver(lambda: db.connect(url), key=None))
        )
        report = Deliverer(
            url=url, senders=senders, secrets=operator, job_id="test", workers=1
        ).run()
        assert (report.failed, report.attempts) == (1, 1), report  # not retried: a config matter
        assert srv.calls == [] and srv.auth_headers == []  # not a single request went out
        with db.connection(url) as c:
            d = c.execute("SELECT status, last_error FROM deliveries").fetchone()
        assert d is not None and d["status"] == "failed"
        assert "CHAINLAKE_SECRET_KEY is not set" in d["last_error"]
        assert "agent 1" in d["last_error"]
        # with the key, the same delivery goes out with its token
        with db.connection(url) as c:
            store.replay_deliveries(c)
        senders = default_senders(mcp=McpToolCall(agent_resolver(lambda: db.connect(url), key=key)))
        report = Deliverer(
            url=url, senders=senders, secrets=operator, job_id="test", workers=1
        ).run()
        assert report.succeeded == 1, report.errors
        assert srv.auth_headers and all(h == f"Bearer {MCP_TOKEN}" for h in srv.auth_headers)
