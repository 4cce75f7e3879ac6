"""The message of each phase of a fast trigger's delivery on the text channels, at real local
receivers: Telegram, Discord and Slack stand-ins and an SMTP server. The unconfirmed message is
marked [UNCONFIRMED], its follow-up [RETRACTED] (or [CONFIRMED]); the template's own text
follows the mark unchanged."""

from __future__ import annotations

import os

import pytest
from triggers_helpers import CHAIN, WALLET, database, receiver, smtp_server, transfer

from chainlake.actions.base import Secrets
from chainlake.actions.deliver import Deliverer, default_senders
from chainlake.actions.smtp import Email, SmtpSettings
from chainlake.events import db, phases
from chainlake.events.head import evaluate_at_head, insert_head_events
from chainlake.events.spec import Resolver, apply_spec, parse_spec

pytestmark = pytest.mark.integration
SLACK_HOOK = "/services/T0001/B0002/abcdefghijklmnopqrstuvwx"


def test_text_channels_mark_each_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    ok_tg = (200, {}, {"ok": True, "result": {"message_id": 42}})
    with (
        database() as url,
        receiver(default=ok_tg) as tg,
        receiver(default=(200, {}, {"id": "m1"})) as dc,
        receiver(default=(200, {}, b"ok")) as sl,
        smtp_server() as mail,
    ):
        monkeypatch.setenv("CHAINLAKE_TELEGRAM_API_BASE", tg.url)
        monkeypatch.setenv("CHAINLAKE_DISCORD_API_BASE", dc.url)
        monkeypatch.setenv("CHAINLAKE_SLACK_API_BASE", sl.url)
        spec = parse_spec(
            {"user": "ops", "triggers": [{
                "id": "fast-in", "chain": "devnet", "registry": "erc20", "phase": "fast",
                "conditions": [{"type": "amount_threshold", "operator": "gte", "value": 10,
                                "config": {"decimals": 18}}],
                "actions": [
                    {"name": "tg", "type": "telegram", "bot_token": "${TG_TOKEN}",
                     "chat_id": "-100", "message_template": "{amount_units} to {to_address}"},
                    {"name": "dc", "type": "discord", "webhook_url": f"{dc.url}/api/webhooks/1/x",
                     "content_template": "**{amount_units}** ({phase})"},
                    {"name": "sl", "type": "slack", "webhook_url": f"{sl.url}{SLACK_HOOK}",
                     "text_template": "*{amount_units}*", "context_template": None},
                    {"name": "mail", "type": "email", "to": ["ops@example.com"],
                     "subject_template": "{trigger_id}: {amount_units}"},
                ],
            }]},
            resolver=Resolver({"devnet": CHAIN}, lambda name, cid: [WALLET]),
        )  # fmt: skip
        event = transfer(7, 25 * 10**18)
        with db.connection(url) as c:
            apply_spec(c, spec)
            added, fired, failures = evaluate_at_head(c, CHAIN, insert_head_events(c, [event]))
        assert (len(added), fired, failures) == (4, 1, [])
        deliverer = Deliverer(
            url=url,
            senders=default_senders(email=Email(SmtpSettings(port=mail.port))),
            secrets=Secrets(getenv={**os.environ, "TG_TOKEN": "123:abc"}.get),
            workers=1,
        )
        assert deliverer.run().succeeded == 4
        # another block at height 7: the follow-ups say the event was retracted
        with db.connection(url) as c:
            assert len(phases.retract_replaced(c, CHAIN, {7: "0x" + "ee" * 32})) == 4
        assert deliverer.run().succeeded == 4

    assert [r.body["text"] for r in tg.requests] == [
        f"[UNCONFIRMED] 25 to {WALLET}",
        f"[RETRACTED] 25 to {WALLET}",
    ]
    assert [r.body["content"] for r in dc.requests] == [
        "[UNCONFIRMED] **25** (unconfirmed)",
        "[RETRACTED] **25** (retracted)",
    ]
    assert [r.body["text"] for r in sl.requests] == ["[UNCONFIRMED] *25*", "[RETRACTED] *25*"]
    assert [r.body["blocks"][0]["text"]["text"] for r in sl.requests] == [
        "[UNCONFIRMED] *25*",
        "[RETRACTED] *25*",
    ]
    subjects = [
        line
        for m in mail.messages
        for line in m["data"].splitlines()
        if line.startswith("Subject:")
    ]
    assert subjects == ["Subject: [UNCONFIRMED] fast-in: 25", "Subject: [RETRACTED] fast-in: 25"]
