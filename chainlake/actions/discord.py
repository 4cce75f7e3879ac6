"""Discord webhook: POST `content` to the webhook URL (`?wait=true` so the message id comes
back). Discord says how long to wait on 429 in the body's `retry_after` and in `Retry-After`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chainlake.actions.base import ActionError, ConfigError, SendContext, http_request, require
from chainlake.actions.policy import discord_url_refusal
from chainlake.actions.templates import check_template, phase_mark, render

DEFAULT_CONTENT = (
    "**{trigger_name}**: {registry} {event_type} on chain {chain_id} (event {event_id})"
)


class Discord:
    """Posts a message to a Discord webhook."""

    action_type = "discord"

    def validate(self, config: Mapping[str, Any]) -> None:
        """Check the webhook URL, the content template and the optional username."""
        require(config, "webhook_url")
        content = config.get("content_template", DEFAULT_CONTENT)
        check_template(content, path="content_template")
        if config.get("username") is not None and not isinstance(config["username"], str):
            raise ConfigError("username", "expected text")

    def send(self, config: Mapping[str, Any], ctx: SendContext) -> Any:
        """Post the rendered content (at most 2000 characters); return the status and message id."""
        cfg = ctx.secrets.resolve(dict(config))
        payload: dict[str, Any] = {
            "content": (
                phase_mark(ctx.context)
                + render(cfg.get("content_template", DEFAULT_CONTENT), ctx.context)
            )[:2000]
        }
        if cfg.get("username"):
            payload["username"] = cfg["username"]
        url = cfg["webhook_url"]
        refused = discord_url_refusal(url, ctx.secrets.getenv)
        if refused:
            raise ActionError(f"discord webhook: {refused}", retryable=False)
        url += ("&" if "?" in url else "?") + "wait=true"
        status, body = http_request(
            ctx.http,
            "POST",
            url,
            json=payload,
            timeout=float(cfg.get("timeout_s", 30)),
            what="discord webhook",
        )
        return {"status_code": status, "id": body.get("id") if isinstance(body, Mapping) else None}
