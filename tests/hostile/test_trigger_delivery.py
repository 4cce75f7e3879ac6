"""Trigger actions at delivery time, against real PostgreSQL and receivers on 127.0.0.1: an
address the operator did not allow is refused after resolution (the delivery fails at once,
not retried, saying which address and which setting), an allowed one is delivered; a declared
secret in a token field is delivered; a config that slipped past `apply` is refused again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chainlake.actions.base import RetryPolicy, Secrets
from chainlake.actions.deliver import Deliverer, DeliveryReport, default_senders
from chainlake.events import db, store
from chainlake.events.conditions import Action, Condition, Trigger
from chainlake.events.evaluate import evaluate_batch
from chainlake.events.spec import Resolver, apply_spec, parse_spec
from tests.integration.triggers_helpers import CHAIN, database, feedback, receiver

pytestmark = pytest.mark.integration


@pytest.fixture
def url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # a deployment that allowed nothing beyond public addresses
    monkeypatch.delenv("CHAINLAKE_ACTION_ALLOW_HOSTS", raising=False)
    monkeypatch.setenv("CHAINLAKE_ACTION_SECRETS", "HOOK")
    with database() as u:
        yield u


def apply(url: str, action: dict[str, Any]) -> None:
    trigger = {
        "id": "low", "chain_id": CHAIN, "registry": "reputation",
        "conditions": [{"type": "score_threshold", "operator": "lt", "value": 30}],
        "actions": [action],
    }  # fmt: skip
    with db.connection(url) as c:
        apply_spec(c, parse_spec({"user": "ops", "triggers": [trigger]}, resolver=Resolver()))


def fire(url: str, block: int = 5) -> None:
    with db.connection(url) as c:
        store.insert_events(c, [feedback(block, score=3)])
        assert evaluate_batch(c).deliveries_added == 1


def deliver(url: str, env: dict[str, str]) -> DeliveryReport:
    """Deliver with `env` as the delivering process's environment (HOOK declared)."""
    return Deliverer(
        url=url,
        senders=default_senders(),
        secrets=Secrets(getenv={"CHAINLAKE_ACTION_SECRETS": "HOOK", **env}.get),
        policy=RetryPolicy(base_delay=0.01, max_delay=0.05),
        job_id="test",
        workers=1,
    ).run()


def only_delivery(url: str) -> dict[str, Any]:
    with db.connection(url) as c:
        (row,) = c.execute("SELECT * FROM deliveries").fetchall()
    return row


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_webhook_to_loopback_is_refused_unless_allowed(url: str, host: str) -> None:
    with receiver() as rec:
        hook = rec.url.replace("127.0.0.1", host)
        apply(url, {"name": "hook", "type": "rest", "url": "${HOOK}/in"})
        fire(url)
        report = deliver(url, {"HOOK": hook})
        assert (report.failed, report.attempts, report.succeeded) == (1, 1, 0)
        d = only_delivery(url)
        assert (d["status"], d["attempts"]) == ("failed", 1)
        assert "a loopback address" in d["last_error"]
        assert "CHAINLAKE_ACTION_ALLOW_HOSTS=" in d["last_error"]
        assert f"{host} resolves to" in d["last_error"] or host == "127.0.0.1"
        assert rec.requests == []

        # the operator allows this host's loopback: replayed, it is delivered
        with db.connection(url) as c:
            store.replay_deliveries(c)
        allowed = {"HOOK": hook, "CHAINLAKE_ACTION_ALLOW_HOSTS": "127.0.0.1,::1"}
        assert deliver(url, allowed).succeeded == 1
        assert [r.path for r in rec.requests] == ["/in"]


def test_an_allow_list_entry_covers_its_network_only(url: str) -> None:
    with receiver() as rec:
        apply(url, {"name": "hook", "type": "rest", "url": "${HOOK}"})
        fire(url)
        env = {"HOOK": rec.url, "CHAINLAKE_ACTION_ALLOW_HOSTS": "10.0.0.0/8,::1"}
        assert deliver(url, env).failed == 1
        assert "127.0.0.1, a loopback address" in only_delivery(url)["last_error"]
        assert rec.requests == []


def test_a_declared_secret_in_a_token_field_is_delivered(url: str) -> None:
    with receiver(default=(200, {}, {"ok": True, "result": {"message_id": 7}})) as tg:
        apply(
            url,
            {"name": "tg", "type": "telegram", "chat_id": "-100",
             "bot_token": "${CHAINLAKE_ACTION_SECRET_BOT}", "message_template": "low {score}"},
        )  # fmt: skip
        fire(url)
        env = {
            "CHAINLAKE_ACTION_SECRET_BOT": "123:declared",
            "CHAINLAKE_TELEGRAM_API_BASE": tg.url,
            "CHAINLAKE_ACTION_ALLOW_HOSTS": "127.0.0.1",
        }
        assert deliver(url, env).succeeded == 1
        assert [r.path for r in tg.requests] == ["/bot123:declared/sendMessage"]
        assert tg.requests[0].body == {"chat_id": "-100", "text": "low 3"}


def test_a_config_that_bypassed_apply_is_refused_when_delivering(url: str) -> None:
    """A trigger row written without `apply` (or applied before an operator narrowed the
    secrets) reaching for chainlake's own credential: nothing is sent."""
    with receiver() as rec:
        steal = Action(
            0, "steal", "rest",
            {"url": rec.url, "headers": {"X-Key": "${AWS_SECRET_ACCESS_KEY}"}},
        )  # fmt: skip
        cond = Condition("score_threshold", "score", "lt", "30")
        with db.connection(url) as c:
            user = store.ensure_user(c, "ops")
            store.save_trigger(
                c, Trigger("raw", "raw", CHAIN, "reputation", (cond,), (steal,), user_id=user)
            )
        fire(url)
        env = {
            "AWS_SECRET_ACCESS_KEY": "s3-secret-of-the-operator",
            "CHAINLAKE_ACTION_ALLOW_HOSTS": "127.0.0.1",
        }
        report = deliver(url, env)
        assert (report.failed, report.attempts) == (1, 1)
        error = only_delivery(url)["last_error"]
        assert "refused by the action policy" in error and "headers.X-Key" in error
        assert "of-the-operator" not in error
        assert rec.requests == []


def test_telegram_api_base_in_a_stored_config_is_ignored_and_refused(url: str) -> None:
    with receiver() as evil:
        tg = Action(0, "tg", "telegram", {"chat_id": "-1", "api_base": evil.url})
        cond = Condition("score_threshold", "score", "lt", "30")
        with db.connection(url) as c:
            user = store.ensure_user(c, "ops")
            store.save_trigger(
                c, Trigger("raw", "raw", CHAIN, "reputation", (cond,), (tg,), user_id=user)
            )
        fire(url)
        env = {"TELEGRAM_BOT_TOKEN": "1:operator", "CHAINLAKE_ACTION_ALLOW_HOSTS": "127.0.0.1"}
        assert deliver(url, env).failed == 1
        assert "api_base" in only_delivery(url)["last_error"]
        assert evil.requests == []


def test_an_agents_registration_file_on_loopback_is_not_fetched(url: str) -> None:
    """The MCP endpoint of `resolve_endpoint` comes from the agent's token URI, written on
    chain by anyone: fetching it goes through the same outbound policy."""
    from chainlake.actions.mcp import McpToolCall
    from chainlake.events.agents import agent_resolver

    with receiver(default=(200, {}, {"endpoints": []})) as internal:
        with db.connection(url) as c:
            store.insert_events(
                c,
                [{**feedback(1), "registry": "identity", "event_type": "Registered",
                  "token_uri": f"{internal.url}/registration.json", "score": None}],
            )  # fmt: skip
        apply(url, {"name": "agent", "type": "mcp", "resolve_endpoint": True, "tool_name": "t"})
        fire(url, block=5)
        senders = default_senders(
            mcp=McpToolCall(agent_resolver(lambda: db.connect(url), key=None))
        )
        report = Deliverer(
            url=url,
            senders=senders,
            secrets=Secrets(getenv={}.get),
            policy=RetryPolicy(base_delay=0.01, max_delay=0.05),
            job_id="test",
            workers=1,
        ).run()
        assert report.failed == 1 and report.attempts == 1
        assert "127.0.0.1, a loopback address" in only_delivery(url)["last_error"]
        assert internal.requests == []
