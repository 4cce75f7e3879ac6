"""Telegram Bot API `sendMessage`. The base URL is configurable (a local stand-in in tests);
the bot token is a `${...}` reference resolved at delivery time. A 429 carries
`parameters.retry_after`, which the retry loop honours."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chainlake.actions.base import ActionError, ConfigError, SendContext, http_request, require
from chainlake.actions.templates import check_template, render

DEFAULT_API_BASE = "https://api.telegram.org"
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
        cfg = ctx.secrets.resolve(
            {"bot_token": "${TELEGRAM_BOT_TOKEN}", "api_base": DEFAULT_API_BASE, **config}
        )
        payload: dict[str, Any] = {
            "chat_id": cfg["chat_id"],
            "text": render(cfg.get("message_template", DEFAULT_MESSAGE), ctx.context),
        }
        if cfg.get("parse_mode"):
            payload["parse_mode"] = cfg["parse_mode"]
        url = f"{str(cfg['api_base']).rstrip('/')}/bot{cfg['bot_token']}/sendMessage"
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
