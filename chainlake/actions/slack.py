"""Slack incoming webhook: POST a message to the webhook URL (`https://hooks.slack.com/services/...`).

The message is written in Slack's mrkdwn (`*bold*`, `_italic_`, `` `code` ``, `<url|label>`):
the template's own markup is kept, while the event's values are escaped (`&`, `<`, `>` as
Slack asks), so a token named `<!channel>` or a link in an event's data cannot ping a channel
or forge a link. The payload carries `text` (the notification's fallback) and the same text as
a `section` block (Slack caps a section at 3,000 characters), plus an optional `context` line.

Slack answers `ok` as plain text on success, and a plain-text error otherwise (`invalid_payload`
400, `action_prohibited` 403, `no_service` / `channel_not_found` 404, `channel_is_archived`
410): those are not retried. A 429 carries `Retry-After`, which the retry policy honours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chainlake.actions.base import ActionError, ConfigError, SendContext, http_request, require
from chainlake.actions.policy import slack_url_refusal
from chainlake.actions.templates import check_template, phase_mark, render

DEFAULT_TEXT = "*{trigger_name}*: {registry} {event_type} on chain {chain_id} (event {event_id})"
DEFAULT_CONTEXT = "chain {chain_id} · block {block_number} · tx `{transaction_hash}`"
SECTION_LIMIT = 3000
TEXT_LIMIT = 40000


def escape_mrkdwn(text: str) -> str:
    """A value as literal text inside Slack mrkdwn: `&`, `<` and `>` as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Slack:
    """Posts a message to a Slack incoming webhook."""

    action_type = "slack"

    def validate(self, config: Mapping[str, Any]) -> None:
        """Check the webhook URL and the text and context templates."""
        require(config, "webhook_url")
        check_template(config.get("text_template", DEFAULT_TEXT), path="text_template")
        context = config.get("context_template", DEFAULT_CONTEXT)
        if context is not None:
            if not isinstance(context, str):
                raise ConfigError("context_template", "expected text or null")
            check_template(context, path="context_template")

    def payload(self, config: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON body Slack receives for `context` (values escaped, the template's markup
        kept)."""
        text = phase_mark(context) + render(
            config.get("text_template", DEFAULT_TEXT), context, escape=escape_mrkdwn
        )
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT]}}
        ]
        line_template = config.get("context_template", DEFAULT_CONTEXT)
        if line_template:
            line = render(line_template, context, escape=escape_mrkdwn)
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": line}]})
        return {"text": text[:TEXT_LIMIT], "blocks": blocks, "unfurl_links": False}

    def send(self, config: Mapping[str, Any], ctx: SendContext) -> Any:
        """Post the message; return the status and Slack's answer (`ok`)."""
        cfg = ctx.secrets.resolve(dict(config))
        url = cfg["webhook_url"]
        refused = slack_url_refusal(url, ctx.secrets.getenv)
        if refused:
            raise ActionError(f"slack webhook: {refused}", retryable=False)
        status, body = http_request(
            ctx.http,
            "POST",
            url,
            json=self.payload(cfg, ctx.context),
            timeout=float(cfg.get("timeout_s", 30)),
            what="slack webhook",
        )
        answer = body.get("text") if isinstance(body, Mapping) else body
        return {"status_code": status, "answer": answer}
