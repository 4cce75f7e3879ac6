"""Telegram Bot API `sendMessage`. The base URL is the operator's (`CHAINLAKE_TELEGRAM_API_BASE`,
a local stand-in in tests), never a trigger's; the bot token is the operator's
`TELEGRAM_BOT_TOKEN` or a declared action secret, resolved at delivery time. A 429 carries
`parameters.retry_after`, which the retry loop honours."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chainlake.actions.base import ActionError, ConfigError, SendContext, http_request, require
from chainlake.actions.policy import DEFAULT_TELEGRAM_API_BASE, telegram_api_base
from chainlake.actions.templates import check_template, phase_mark, render

DEFAULT_API_BASE = DEFAULT_TELEGRAM_API_BASE  # the operator may set another one
DEFAULT_MESSAGE = "{trigger_name}: {registry} {event_type} on chain {chain_id} (event {event_id})"


class Telegram:
    """Sends a message to a Telegram chat through the Bot API."""

    action_type = "telegram"
    # read without the config naming it: taken out of errors like the config's own references
    implied_secrets = ("TELEGRAM_BOT_TOKEN",)

    def validate(self, config: Mapping[str, Any]) -> None:
        """Check the chat id, the parse mode and the message template."""
        require(config, "chat_id", (str, int))
        if config.get("parse_mode") not in (None, "Markdown", "MarkdownV2", "HTML"):
            raise ConfigError(
                "parse_mode", f"{config['parse_mode']!r} is not Markdown, MarkdownV2 or HTML"
            )
        check_template(config.get("message_template", DEFAULT_MESSAGE), path="message_template")

    def send(self, config: Mapping[str, Any], ctx: SendContext) -> Any:
        """Send the rendered message with the bot token (default `${TELEGRAM_BOT_TOKEN}`)."""
        # the API base is the operator's, whatever the config says (policy refuses it there)
        api_base = telegram_api_base(ctx.secrets.getenv)
        cfg = ctx.secrets.resolve({"bot_token": "${TELEGRAM_BOT_TOKEN}", **config})
        payload: dict[str, Any] = {
            "chat_id": cfg["chat_id"],
            "text": phase_mark(ctx.context)
            + render(cfg.get("message_template", DEFAULT_MESSAGE), ctx.context),
        }
        if cfg.get("parse_mode"):
            payload["parse_mode"] = cfg["parse_mode"]
        url = f"{api_base}/bot{cfg['bot_token']}/sendMessage"
        _, body = http_request(
            ctx.http,
            "POST",
            url,
            json=payload,
            timeout=float(cfg.get("timeout_s", 30)),
            what="telegram sendMessage",
        )
        if isinstance(body, Mapping) and body.get("ok") is False:
            raise ActionError(
                f"telegram sendMessage: {body.get('description', 'not ok')}",
                retryable=False,
                response=body,
            )
        result = body.get("result", {}) if isinstance(body, Mapping) else {}
        return {
            "ok": True,
            "message_id": result.get("message_id") if isinstance(result, Mapping) else None,
        }
