"""Notification channels for trigger actions: Telegram, REST webhooks, Discord, SMTP, MCP.

Per-action settings (chat id, URL, recipients, tool) live with the trigger in PostgreSQL; what
is shared by every action of a kind (the SMTP server, the Telegram API base) and how hard to
retry lives here. Secrets named in action configs as `${VAR}` are read through `dagster.EnvVar`
when a delivery is made.

The SMTP fields left unset are read from the environment when the senders are built, in the
run (see `resources.env`): `SMTP_HOST` (else 127.0.0.1), `SMTP_PORT` (else 25),
`SMTP_USERNAME`, `SMTP_PASSWORD` (else none) and `SMTP_FROM` (else chainlake@localhost).
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
from pydantic import Field

from chainlake.actions.base import RetryPolicy, Secrets, Sender
from chainlake.actions.deliver import default_senders
from chainlake.actions.mcp import AgentEndpoint, McpToolCall
from chainlake.actions.smtp import Email, SmtpSettings
from resources.env import env_int, env_optional, env_str


def _getenv(name: str) -> str | None:
    return dg.EnvVar(name).get_value()


class NotifiersResource(dg.ConfigurableResource):
    """How actions are delivered: channel settings, retries and concurrency."""

    smtp_host: str | None = Field(
        default=None, description="SMTP server. Unset: SMTP_HOST when used, else 127.0.0.1."
    )
    smtp_port: int | None = Field(
        default=None, description="SMTP port. Unset: SMTP_PORT when used, else 25."
    )
    smtp_username: str | None = Field(
        default=None, description="SMTP login. Unset: SMTP_USERNAME when used, else none."
    )
    smtp_password: str | None = Field(
        default=None, description="SMTP password. Unset: SMTP_PASSWORD when used, else none."
    )
    smtp_sender: str | None = Field(
        default=None,
        description="From address. Unset: SMTP_FROM when used, else chainlake@localhost.",
    )
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
        """How failed deliveries are retried."""
        return RetryPolicy(
            base_delay=self.base_delay_seconds,
            max_delay=self.max_delay_seconds,
        )

    def secrets(self) -> Secrets:
        """Resolves `${VAR}` in action configs from the environment, at delivery time."""
        return Secrets(getenv=_getenv)

    def smtp_settings(self) -> SmtpSettings:
        """The SMTP server settings, unset fields read from the environment now."""
        return SmtpSettings(
            host=self.smtp_host or env_str(dg.EnvVar("SMTP_HOST"), "127.0.0.1"),
            port=self.smtp_port
            if self.smtp_port is not None
            else env_int(dg.EnvVar("SMTP_PORT"), 25),
            username=self.smtp_username or env_optional(dg.EnvVar("SMTP_USERNAME")),
            password=self.smtp_password or env_optional(dg.EnvVar("SMTP_PASSWORD")),
            sender=self.smtp_sender or env_str(dg.EnvVar("SMTP_FROM"), "chainlake@localhost"),
            starttls=self.smtp_starttls,
            ssl=self.smtp_ssl,
            timeout_s=self.http_timeout_seconds,
        )

    def senders(
        self, resolve_agent: Callable[[int], AgentEndpoint] | None = None
    ) -> dict[str, Sender]:
        """One sender per action kind.

        Args:
            resolve_agent: Looks up an MCP agent's endpoint by id, for MCP tool calls.

        Returns:
            Action kind → sender.
        """
        return default_senders(email=Email(self.smtp_settings()), mcp=McpToolCall(resolve_agent))
