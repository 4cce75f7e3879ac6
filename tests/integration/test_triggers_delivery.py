"""Delivering actions to real receivers: retries and backoff (429 retry_after honoured), the audit
row per attempt, failure and replay, every channel (REST, Telegram, Discord, SMTP, a real MCP
server), alerts refused or fired, and `chainlake triggers apply/list/replay`."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import yaml
from click.testing import CliRunner
from triggers_helpers import (
    CHAIN,
    WALLET,
    database,
    feedback,
    mcp_server,
    receiver,
    smtp_server,
    transfer,
)

from chainlake.actions.base import RetryPolicy, Secrets
from chainlake.actions.deliver import Deliverer, default_senders
from chainlake.actions.mcp import McpToolCall
from chainlake.actions.smtp import Email, SmtpSettings
from chainlake.events import db, store
from chainlake.events.agents import agent_resolver, new_key, set_agent_mcp_token
from chainlake.events.alerts import Alert, fire_alerts, save_alert
from chainlake.events.evaluate import evaluate_batch
from chainlake.events.expressions import ExpressionError
from chainlake.events.spec import Resolver, apply_spec, parse_spec
from cli.main import main

pytestmark = pytest.mark.integration
RESOLVER = Resolver({"devnet": CHAIN}, lambda name, cid: [WALLET])


@pytest.fixture
def url() -> Iterator[str]:
    with database() as u:
        yield u


def apply(url: str, *triggers: dict) -> None:
    with db.connection(url) as c:
        apply_spec(c, parse_spec({"user": "ops", "triggers": list(triggers)}, resolver=RESOLVER))


def low_score(action: dict, **extra: object) -> dict:
    return {
        "id": "low-score", "chain": "devnet", "registry": "reputation",
        "conditions": [{"type": "score_threshold", "operator": "lt", "value": 30}],
        "actions": [action], **extra,
    }  # fmt: skip


def evaluate(url: str, *events: dict) -> int:
    with db.connection(url) as c:
        store.insert_events(c, list(events))
        return evaluate_batch(c).deliveries_added


def deliverer(url: str, env: dict[str, str] | None = None, **kw: object) -> Deliverer:
    return Deliverer(
        url=url,
        senders=kw.pop("senders", None) or default_senders(),  # type: ignore[arg-type]
        secrets=Secrets(getenv={**os.environ, **(env or {})}.get),
        policy=RetryPolicy(base_delay=0.05, max_delay=1.0),
        job_id="test",
        workers=1,
        **kw,  # type: ignore[arg-type]
    )


def results(url: str, delivery_id: str) -> list[dict]:
    with db.connection(url) as c:
        return store.action_results_for(c, delivery_id)


def delivery(url: str, delivery_id: str) -> dict:
    with db.connection(url) as c:
        return c.execute("SELECT * FROM deliveries WHERE id = %s", (delivery_id,)).fetchone()


KEY = "low-score:31337-5-0:hook"


def test_failing_twice_then_succeeding_is_three_attempts_one_delivery(url: str) -> None:
    with receiver(responses=[(500, {}, {"error": "boom"}), (502, {}, None)]) as rec:
        apply(url, low_score({"name": "hook", "type": "rest", "url": "${HOOK}"}))
        assert evaluate(url, feedback(5, score=3)) == 1
        report = deliverer(url, {"HOOK": rec.url}).run()
    assert (report.succeeded, report.failed, report.attempts) == (1, 0, 3)
    rows = results(url, KEY)
    assert [(r["status"], r["retry_count"]) for r in rows] == [
        ("retrying", 0),
        ("retrying", 1),
        ("success", 2),
    ]
    assert all(r["duration_ms"] is not None and r["job_id"] == "test" for r in rows)
    assert "HTTP 500" in rows[0]["error_message"] and rows[0]["response_data"] == {"error": "boom"}
    d = delivery(url, KEY)
    assert (d["status"], d["attempts"], d["delivered_at"] is not None) == ("succeeded", 3, True)
    # the receiver saw the same idempotency key three times and can keep the first
    assert rec.by_key() == {KEY: 3}


def test_429_retry_after_is_honoured_inline_or_requeued(url: str) -> None:
    with receiver(responses=[(429, {"Retry-After": "1"}, None)]) as rec:
        apply(url, low_score({"name": "hook", "type": "rest", "url": "${HOOK}"}))
        evaluate(url, feedback(5, score=3))
        report = deliverer(url, {"HOOK": rec.url}).run()
        assert report.succeeded == 1
        gap = rec.requests[1].at - rec.requests[0].at
        assert gap >= 0.95, gap  # the backoff alone would have been 0.05 s

    # a receiver asking for longer than the run may wait: back to the queue, due later
    with receiver(responses=[(429, {}, {"retry_after": 120})]) as rec:
        evaluate(url, feedback(6, score=3))
        report = deliverer(url, {"HOOK": rec.url}).run()
        assert (report.requeued, report.succeeded) == (1, 0)
        d = delivery(url, "low-score:31337-6-0:hook")
        assert d["status"] == "pending" and d["attempts"] == 1
        with db.connection(url) as c:
            wait = store.next_due_in(c)
            assert wait is not None and 110 < wait <= 120
            assert store.due_deliveries(c) == []


def test_exhausted_retries_fail_and_replay_from_the_cli(url: str) -> None:
    with receiver(responses=[(503, {}, None)] * 3) as rec:
        apply(url, low_score({"name": "hook", "type": "rest", "url": "${HOOK}", "max_attempts": 3}))
        evaluate(url, feedback(5, score=3))
        report = deliverer(url, {"HOOK": rec.url}).run()
        assert (report.failed, report.attempts) == (1, 3)
        assert [r["status"] for r in results(url, KEY)] == ["retrying", "retrying", "failed"]
        assert delivery(url, KEY)["status"] == "failed"

        runner = CliRunner()
        listed = runner.invoke(main, ["triggers", "deliveries", "--url", url, "--status", "failed"])
        assert KEY in listed.output and "HTTP 503" in listed.output
        r = runner.invoke(
            main, ["triggers", "replay", "--url", url, "--failed", "--now"], env={"HOOK": rec.url}
        )
        assert r.exit_code == 0, r.output
        assert "1 delivery pending again" in r.output and "delivered: 1 ok" in r.output
    assert [r["status"] for r in results(url, KEY)] == ["retrying", "retrying", "failed", "success"]
    assert delivery(url, KEY)["status"] == "succeeded"


def test_a_client_error_is_not_retried(url: str) -> None:
    with receiver(responses=[(400, {}, {"error": "bad"})]) as rec:
        apply(url, low_score({"name": "hook", "type": "rest", "url": "${HOOK}"}))
        evaluate(url, feedback(5, score=3))
        report = deliverer(url, {"HOOK": rec.url}).run()
    assert (report.failed, report.attempts, len(rec.requests)) == (1, 1, 1)


def test_telegram_discord_and_email(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with receiver(responses=[(429, {}, {"ok": False, "error_code": 429, "parameters": {"retry_after": 0.3}})],
                  default=(200, {}, {"ok": True, "result": {"message_id": 42}})) as tg, \
         receiver(responses=[(429, {}, {"message": "rate limited", "retry_after": 0.2})],
                  default=(200, {}, {"id": "m1"})) as dc, smtp_server() as mail:  # fmt: skip
        # the operator's API bases: the stand-ins on 127.0.0.1 (a trigger cannot set them)
        monkeypatch.setenv("CHAINLAKE_TELEGRAM_API_BASE", tg.url)
        monkeypatch.setenv("CHAINLAKE_DISCORD_API_BASE", dc.url)
        apply(
            url,
            {
                "id": "big-in", "chain": "devnet", "registry": "erc20",
                "conditions": [{"type": "amount_threshold", "operator": "gte", "value": 10, "config": {"decimals": 18}}],
                "actions": [
                    {"name": "tg", "type": "telegram", "bot_token": "${TG_TOKEN}",
                     "chat_id": "-100", "message_template": "{amount_units} to {to_address}"},
                    {"name": "dc", "type": "discord", "webhook_url": f"{dc.url}/api/webhooks/1/x",
                     "content_template": "**{amount_units}**"},
                    {"name": "mail", "type": "email", "to": ["ops@example.com"],
                     "subject_template": "{trigger_id}: {amount_units}"},
                ],
            },
        )  # fmt: skip
        assert evaluate(url, transfer(7, 25 * 10**18)) == 3
        senders = default_senders(email=Email(SmtpSettings(port=mail.port)))
        report = deliverer(url, {"TG_TOKEN": "123:abc"}, senders=senders).run()
        assert (report.succeeded, report.failed) == (3, 0)
        assert [r.path for r in tg.requests] == ["/bot123:abc/sendMessage"] * 2
        assert tg.requests[1].body == {"chat_id": "-100", "text": f"25 to {WALLET}"}
        assert tg.requests[1].at - tg.requests[0].at >= 0.28
        assert dc.requests[-1].path == "/api/webhooks/1/x?wait=true" and dc.requests[-1].body == {
            "content": "**25**"
        }
        assert mail.messages[0]["rcpt"] == ["<ops@example.com>"]
        assert "Subject: big-in: 25" in mail.messages[0]["data"]
        assert "X-Idempotency-Key: big-in:31337-7-0:mail" in mail.messages[0]["data"]
    statuses = {r["action_type"]: r["status"] for r in results(url, "big-in:31337-7-0:tg")}
    assert statuses == {"telegram": "success"}


def test_slack_incoming_webhook(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slack: mrkdwn kept from the template, the event's values escaped, Retry-After honoured
    on 429, the plain-text `ok` stored; a plain-text error (404 no_service) is not retried."""
    hook = "/services/T0001/B0002/abcdefghijklmnopqrstuvwx"
    with receiver(responses=[(429, {"Retry-After": "1"}, b"rate_limited")],
                  default=(200, {}, b"ok")) as sl:  # fmt: skip
        monkeypatch.setenv("CHAINLAKE_SLACK_API_BASE", sl.url)
        apply(
            url,
            {
                "id": "slack-in", "chain": "devnet", "registry": "erc20",
                "conditions": [{"type": "amount_threshold", "operator": "gte", "value": 10, "config": {"decimals": 18}}],
                "actions": [
                    {"name": "sl", "type": "slack", "webhook_url": f"{sl.url}{hook}",
                     "text_template": "*{amount_units}* to `{to_address}` <!here>? {data.note}"},
                ],
            },
        )  # fmt: skip
        event = transfer(8, 25 * 10**18) | {"data": {"note": "<!channel> & <https://x.example|y>"}}
        assert evaluate(url, event) == 1
        report = deliverer(url, {}).run()
        assert (report.succeeded, report.failed, report.attempts) == (1, 0, 2)
        assert [r.path for r in sl.requests] == [hook, hook]
        assert sl.requests[1].at - sl.requests[0].at >= 0.95  # Retry-After: 1
        text = f"*25* to `{WALLET}` <!here>? &lt;!channel&gt; &amp; &lt;https://x.example|y&gt;"
        assert sl.requests[1].body == {
            "text": text,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": (
                    f"chain 31337 · block 8 · tx `{event['transaction_hash']}`")}]},
            ],
            "unfurl_links": False,
        }  # fmt: skip
    assert [(r["status"], r["response_data"]) for r in results(url, "slack-in:31337-8-0:sl")] == [
        ("retrying", {"text": "rate_limited"}),
        ("success", {"status_code": 200, "answer": "ok"}),
    ]
    with receiver(default=(404, {}, b"no_service")) as gone:
        monkeypatch.setenv("CHAINLAKE_SLACK_API_BASE", gone.url)
        apply(
            url,
            {
                "id": "slack-gone", "chain": "devnet", "registry": "erc20",
                "conditions": [{"type": "amount_threshold", "operator": "gte", "value": 10, "config": {"decimals": 18}}],
                "actions": [{"name": "sl", "type": "slack", "webhook_url": f"{gone.url}{hook}"}],
            },
        )  # fmt: skip
        assert evaluate(url, transfer(9, 25 * 10**18)) >= 1
        report = deliverer(url, {}).run()
        assert len(gone.requests) == 1
    assert delivery(url, "slack-gone:31337-9-0:sl")["status"] == "failed"
    assert "slack webhook: HTTP 404" in delivery(url, "slack-gone:31337-9-0:sl")["last_error"]


def test_mcp_tool_call_configured_and_resolved_from_the_agent(url: str) -> None:
    key = new_key()
    with mcp_server() as srv:
        registration = {"type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1", "name": "agent 1",
                        "endpoints": [{"name": "A2A", "endpoint": "http://127.0.0.1:9/a2a"},
                                      {"name": "MCP", "endpoint": srv.url}]}  # fmt: skip
        token_uri = (
            "data:application/json;base64,"
            + base64.b64encode(json.dumps(registration).encode()).decode()
        )
        with db.connection(url) as c:
            store.insert_events(
                c,
                [{**feedback(1), "registry": "identity", "event_type": "Registered", "token_uri": token_uri,
                  "owner": WALLET, "score": None}],
            )  # fmt: skip
            set_agent_mcp_token(c, 1, "agent-1-token", key=key)
        args = {"agent_id": "{agent_id}", "score": "{score}", "client": "{client_address}"}
        apply(
            url,
            low_score(
                {
                    "name": "fixed",
                    "type": "mcp",
                    "endpoint": srv.url,
                    "tool_name": "receive_feedback",
                    "arguments_template": args,
                }
            ),
            {
                **low_score(
                    {
                        "name": "agent",
                        "type": "mcp",
                        "resolve_endpoint": True,
                        "tool_name": "receive_feedback",
                        "arguments_template": args,
                    }
                ),
                "id": "low-score-agent",
            },
        )
        assert evaluate(url, feedback(5, score=3)) == 2
        resolver = agent_resolver(lambda: db.connect(url), key=key)
        report = deliverer(url, senders=default_senders(mcp=McpToolCall(resolver))).run()
        assert (report.succeeded, report.failed) == (2, 0), report.errors
        assert (
            srv.calls
            == [{"agent_id": 1, "score": 3, "client": "0x" + "12" * 20, "file_uri": ""}] * 2
        )
        assert "Bearer agent-1-token" in srv.auth_headers
    ok = results(url, "low-score-agent:31337-5-0:agent")[0]
    assert ok["status"] == "success", ok
    assert json.loads(ok["response_data"]["text"][0])["stored"] is True


def test_malicious_alert_expression_is_refused_and_a_good_one_fires(url: str) -> None:
    with db.connection(url) as c:
        uid = store.ensure_user(c, "ops")
        for bad in (
            "__import__('os').system('touch /tmp/pwned')",
            "balance.__class__.__mro__",
            "eval('1') > 0",
        ):
            with pytest.raises(ExpressionError) as e:
                save_alert(
                    c, alert_id="a0", user_id=uid, name="evil", expression=bad, chain_id=CHAIN
                )
            assert "not allowed" in str(e.value) and "^" in str(e.value)
        assert c.execute("SELECT count(*) AS n FROM alerts").fetchone()["n"] == 0
        expr = 'wallet_balances.filter((pl.col("wallet_name") == "treasury") & (pl.col("balance") < 10))'
        save_alert(
            c, alert_id="low", user_id=uid, name="Low treasury", expression=expr, chain_id=CHAIN
        )
    assert not Path("/tmp/pwned").exists()
    with receiver() as rec:
        apply(
            url,
            {
                "id": "alerts", "chain": "devnet", "registry": "analytics",
                "conditions": [{"type": "event_type_equals", "value": "AlertFired"}],
                "actions": [{"name": "hook", "type": "rest", "url": rec.url,
                             "body_template": {"alert": "{alert_name}", "row": "{alert_value}"}}],
            },
        )  # fmt: skip
        frame = pl.DataFrame({"wallet_name": ["treasury", "hot"], "balance": [4.5, 1.0]})
        events = fire_alerts(
            [Alert("low", "Low treasury", expr)],
            "wallet_balances",
            frame,
            chain_id=CHAIN,
            day=dt.date(2026, 11, 2),
        )
        assert evaluate(url, *events) == 1
        assert evaluate(url, *events) == 0  # the same day's alert again: same id, nothing new
        deliverer(url).run()
    assert rec.requests[0].body == {
        "alert": "Low treasury",
        "row": {"wallet_name": "treasury", "balance": 4.5},
    }


def test_apply_list_from_the_cli_all_or_nothing(url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    good = {
        "user": "ops",
        "triggers": [low_score({"name": "hook", "type": "rest", "url": "${HOOK}"})],
    }
    bad = {"user": "ops", "triggers": [
        {**low_score({"name": "hook", "type": "rest", "url": "${HOOK}"}), "id": "fine"},
        low_score({"name": "hook", "type": "rest", "url": "${HOOK}", "body_template": {"x": "{nope}"}}),
    ]}  # fmt: skip
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(good))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    env = {"CHAINS_CONFIG": str(Path(__file__).resolve().parents[2] / "config" / "chains.yaml")}
    r = runner.invoke(
        main, ["triggers", "apply", str(tmp_path / "bad.yaml"), "--url", url], env=env
    )
    assert r.exit_code == 1
    assert (
        "trigger 'low-score': field 'actions[0].body_template.x': unknown field {nope}" in r.output
    )
    with db.connection(url) as c:
        assert store.load_triggers(c, enabled_only=False) == []  # 'fine' was not applied either
    r = runner.invoke(
        main, ["triggers", "apply", str(tmp_path / "good.yaml"), "--url", url], env=env
    )
    assert r.exit_code == 0, r.output
    with db.connection(url) as c:
        first = store.load_triggers(c)[0].actions[0].id
    assert (
        runner.invoke(
            main, ["triggers", "apply", str(tmp_path / "good.yaml"), "--url", url], env=env
        ).exit_code
        == 0
    )
    with db.connection(url) as c:
        assert store.load_triggers(c)[0].actions[0].id == first  # idempotency keys stay valid
    listed = runner.invoke(main, ["triggers", "list", "--url", url])
    assert "low-score  [reputation on chain 31337]" in listed.output
    assert "if score_threshold: score lt 30" in listed.output and "-> hook (rest)" in listed.output


def test_concurrent_evaluations_of_one_batch_count_once(url: str) -> None:
    """Two runs evaluating the same events (an overlapping tick, a retried run) at the same time:
    one delivery per match, and the stateful condition sees each event once."""
    import threading

    apply(url, {
        "id": "ema", "chain": "devnet", "registry": "reputation",
        "conditions": [{"type": "ema_threshold", "operator": "lt", "value": 50, "config": {"window_size": 1, "alpha": 0.5}}],
        "actions": [{"name": "hook", "type": "rest", "url": "http://127.0.0.1:9"}],
    })  # fmt: skip
    with db.connection(url) as c:
        store.insert_events(c, [feedback(b, score=10) for b in range(1, 51)])
    added: list[int] = []

    def run() -> None:
        with db.connection(url) as c:
            added.append(evaluate_batch(c).deliveries_added)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(added) == [0, 0, 50]
    with db.connection(url) as c:
        state = store.get_trigger_state(c, "ema")
    assert state["conditions"]["0:ema_threshold"]["count"] == 50 and state["last_seq"] == 50
