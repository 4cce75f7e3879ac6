"""Notification channels for trigger actions: Telegram, REST webhooks, Discord, SMTP, MCP.

Per-action settings (chat id, URL, recipients, tool) live with the trigger in PostgreSQL; what
is shared by every action of a kind (the SMTP server, the Telegram API base) and how hard to
retry lives here. Secrets named in action configs as `${VAR}` are read through `dagster.EnvVar`
when a delivery is made.
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
from pydantic import Field

from chainlake.actions.base import RetryPolicy, Secrets, Sender
from chainlake.actions.deliver import default_senders
from chainlake.actions.mcp import AgentEndpoint, McpToolCall
from chainlake.actions.smtp import Email, SmtpSettings


def _getenv(name: str) -> str | None:
    return dg.EnvVar(name).get_value()


class NotifiersResource(dg.ConfigurableResource):
    """How actions are delivered: channel settings, retries and concurrency."""

    smtp_host: str = Field(default="127.0.0.1", description="SMTP server (SMTP_HOST).")
    smtp_port: int = Field(default=25, description="SMTP port (SMTP_PORT).")
    smtp_username: str | None = Field(default=None, description="SMTP login (SMTP_USERNAME).")
    smtp_password: str | None = Field(default=None, description="SMTP password (SMTP_PASSWORD).")
    smtp_sender: str = Field(default="chainlake@localhost", description="From address (SMTP_FROM).")
    smtp_starttls: bool = Field(default=False, description="Upgrade the connection with STARTTLS.")
    smtp_ssl: bool = Field(default=False, description="Implicit TLS (port 465 style).")
    base_delay_seconds: float = Field(
        default=1.0, description="First retry delay; doubles each time."
    )
    max_delay_seconds: float = Field(default=300.0, description="Longest computed retry delay.")
    max_inline_wait_seconds: float = Field(
        default=10.0,
        description="Retries due sooner than this are waited for in the run; later ones go back "
        "to the queue for the pending-actions sensor.",
    )
    workers: int = Field(
        default=16,
        description="Deliveries in flight at once per run (threads waiting on the network).",
    )
    http_timeout_seconds: float = Field(default=30.0, description="Default HTTP timeout.")

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            base_delay=self.base_delay_seconds,
            max_delay=self.max_delay_seconds,
        )

    def secrets(self) -> Secrets:
        return Secrets(getenv=_getenv)

    def senders(
        self, resolve_agent: Callable[[int], AgentEndpoint] | None = None
    ) -> dict[str, Sender]:
        smtp = SmtpSettings(
            host=self.smtp_host,
            port=self.smtp_port,
            username=self.smtp_username,
            password=self.smtp_password,
            sender=self.smtp_sender,
            starttls=self.smtp_starttls,
            ssl=self.smtp_ssl,
            timeout_s=self.http_timeout_seconds,
        )
        return default_senders(email=Email(smtp), mcp=McpToolCall(resolve_agent))
