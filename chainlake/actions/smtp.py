"""E-mail over SMTP (STARTTLS or implicit TLS when configured). The server comes from the
notifiers resource; the action names recipients, subject and body templates.

4xx SMTP replies and dropped connections are retried; 5xx replies (bad recipient, refused
message) are not.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from chainlake.actions.base import ActionError, ConfigError, SendContext
from chainlake.actions.templates import check_template, phase_mark, render

DEFAULT_SUBJECT = "[chainlake] {trigger_name}"
DEFAULT_BODY = (
    "Trigger {trigger_name} fired on {registry} {event_type}.\n\n"
    "chain {chain_id}, block {block_number}, transaction {transaction_hash}\nevent {event_id}\n"
)


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server that sends the e-mail actions."""

    host: str = "127.0.0.1"
    port: int = 25
    username: str | None = None
    password: str | None = None
    sender: str = "chainlake@localhost"
    starttls: bool = False
    ssl: bool = False
    timeout_s: float = 30.0


class Email:
    """Sends an e-mail through the configured SMTP server."""

    action_type = "email"

    def __init__(self, settings: SmtpSettings | None = None) -> None:
        self.settings = settings or SmtpSettings()

    def validate(self, config: Mapping[str, Any]) -> None:
        """Check the recipients and the subject and body templates."""
        to = config.get("to")
        if isinstance(to, str):
            to = [to]
        if (
            not to
            or not isinstance(to, list)
            or not all(isinstance(a, str) and "@" in a for a in to)
        ):
            raise ConfigError(
                "to", f"expected one or more e-mail addresses, got {config.get('to')!r}"
            )
        check_template(config.get("subject_template", DEFAULT_SUBJECT), path="subject_template")
        check_template(config.get("body_template", DEFAULT_BODY), path="body_template")

    def send(self, config: Mapping[str, Any], ctx: SendContext) -> Any:
        """Send the rendered e-mail, tagged with the delivery's idempotency key."""
        cfg = ctx.secrets.resolve(dict(config))
        s = self.settings
        to = [cfg["to"]] if isinstance(cfg["to"], str) else list(cfg["to"])
        msg = EmailMessage()
        msg["From"] = cfg.get("from", s.sender)
        msg["To"] = ", ".join(to)
        msg["Subject"] = phase_mark(ctx.context) + render(
            cfg.get("subject_template", DEFAULT_SUBJECT), ctx.context
        )
        # Lets a mail filter (or a person) spot the duplicate of an at-least-once retry.
        msg["X-Idempotency-Key"] = ctx.idempotency_key
        msg.set_content(render(cfg.get("body_template", DEFAULT_BODY), ctx.context))
        try:
            if s.ssl:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout_s, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
            with smtp:
                if s.starttls and not s.ssl:
                    smtp.starttls(context=ssl.create_default_context())
                if s.username:
                    smtp.login(s.username, s.password or "")
                refused = smtp.send_message(msg, to_addrs=to)
        except smtplib.SMTPRecipientsRefused as e:
            raise ActionError(
                f"smtp: all recipients refused: {e.recipients}", retryable=False
            ) from e
        except smtplib.SMTPResponseException as e:
            raise ActionError(
                f"smtp: {e.smtp_code} {e.smtp_error!r}", retryable=400 <= e.smtp_code < 500
            ) from e
        except (TimeoutError, smtplib.SMTPException, OSError) as e:
            raise ActionError(f"smtp: {type(e).__name__}: {e}", retryable=True) from e
        return {"accepted": [a for a in to if a not in refused], "refused": sorted(refused)}
