"""What a trigger's action config may ask of the delivering process: which `${NAME}` secrets,
in which fields, and which API hosts.

A triggers file is written by a user; the process that delivers its actions holds the
operator's credentials (`CHAINLAKE_SECRET_KEY`, the S3 and SMTP passwords, the bot token).
So the environment is not the trigger's to read:

- **Declared secrets only.** `${NAME}` resolves only for variables the operator made available
  to actions: names starting with `CHAINLAKE_ACTION_SECRET_`, and those listed in the
  operator's `CHAINLAKE_ACTION_SECRETS` (comma-separated). The credentials of chainlake itself
  (`NEVER`) are never available, listed or not.
- **In secret fields only.** A reference may stand in the fields meant for secrets
  (`SECRET_FIELDS`: a header's value, a token, a chat id) and, as the whole URL or its start
  (`${CHAINLAKE_ACTION_SECRET_HOOK}/path`), in URL fields: the operator's variable then names
  the host, and no trigger can put a secret in a URL of its own choosing. Anywhere else (a
  body template, a message, after a URL's host) it is refused.
- **Fixed API hosts.** Telegram's API base is the operator's (`CHAINLAKE_TELEGRAM_API_BASE`,
  default https://api.telegram.org), never a trigger's; a Discord webhook URL must be one of
  Discord's (or under the operator's `CHAINLAKE_DISCORD_API_BASE`), a Slack one Slack's
  (or under `CHAINLAKE_SLACK_API_BASE`).

`check_action_config` applies these rules when a triggers file is applied (each problem one
line naming the trigger, action and field) and again before every delivery (a rule narrowed
since, or a row written by other means, fails the delivery without retrying it).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from chainlake.actions.base import ENV_REF, ActionError, ConfigError
from chainlake.actions.outbound import OutboundPolicy, literal_refusal

SECRET_PREFIX = "CHAINLAKE_ACTION_SECRET_"
SECRETS_SETTING = "CHAINLAKE_ACTION_SECRETS"
TELEGRAM_API_SETTING = "CHAINLAKE_TELEGRAM_API_BASE"
DISCORD_API_SETTING = "CHAINLAKE_DISCORD_API_BASE"
SLACK_API_SETTING = "CHAINLAKE_SLACK_API_BASE"
DEFAULT_TELEGRAM_API_BASE = "https://api.telegram.org"
DISCORD_WEBHOOK_BASES = (
    "https://discord.com/api/webhooks/",
    "https://discordapp.com/api/webhooks/",
    "https://canary.discord.com/api/webhooks/",
    "https://ptb.discord.com/api/webhooks/",
)
SLACK_WEBHOOK_BASES = ("https://hooks.slack.com/services/",)

# chainlake's own credentials: never an action's, whatever CHAINLAKE_ACTION_SECRETS says.
NEVER = frozenset(
    {
        "CHAINLAKE_SECRET_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "POSTGRES_URL",
        "POSTGRES_PASSWORD",
        "DAGSTER_POSTGRES_URL",
        "CLICKHOUSE_URL",
        "CLICKHOUSE_PASSWORD",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
        "SMTP_USERNAME",
        "SMTP_PASSWORD",
        "TELEGRAM_BOT_TOKEN",
    }
)

VALUE = "value"  # a reference may stand anywhere in the string
ORIGIN = "origin"  # a URL: a reference only as its very start, naming the host

# Per action type: config paths (`*` matches one key) where `${NAME}` may stand.
SECRET_FIELDS: dict[str, dict[str, str]] = {
    "rest": {"url": ORIGIN, "headers.*": VALUE},
    "telegram": {"bot_token": VALUE, "chat_id": VALUE},
    "discord": {"webhook_url": ORIGIN},
    "slack": {"webhook_url": ORIGIN},
    "email": {},
    "mcp": {"endpoint": ORIGIN, "token": VALUE},
}
# Per action type: URL fields whose literal host is checked against the outbound policy.
URL_FIELDS: dict[str, tuple[str, ...]] = {
    "rest": ("url",),
    "discord": ("webhook_url",),
    "slack": ("webhook_url",),
    "mcp": ("endpoint",),
}
# Per action type: settings of the operator that a trigger may not set.
OPERATOR_FIELDS: dict[str, dict[str, str]] = {
    "telegram": {"api_base": TELEGRAM_API_SETTING},
}

Getenv = Callable[[str], str | None]


@dataclass(frozen=True)
class ActionSecrets:
    """The environment variables the operator made available to trigger actions."""

    declared: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, getenv: Getenv = os.environ.get) -> ActionSecrets:
        """The secrets of the operator's `CHAINLAKE_ACTION_SECRETS` (plus the prefix rule)."""
        names = (getenv(SECRETS_SETTING) or "").split(",")
        return cls(frozenset(n.strip() for n in names if n.strip()))

    def refusal(self, name: str) -> str | None:
        """Why `${name}` is not available to actions, or None when it is."""
        if name in NEVER:
            return f"${{{name}}} is a credential of chainlake itself, never available to actions"
        if name.startswith(SECRET_PREFIX) or name in self.declared:
            return None
        return (
            f"${{{name}}} is not an action secret: the operator names it {SECRET_PREFIX}... "
            f"or lists it in {SECRETS_SETTING}"
        )


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, string) of every string in a config, `headers.X`, `to[0]`."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")


def _rule(fields: Mapping[str, str], path: str) -> str | None:
    for pattern, rule in fields.items():
        if fnmatch.fnmatchcase(path, pattern) and path.count(".") == pattern.count("."):
            return rule
    return None


def _origin_ok(text: str) -> bool:
    """`${NAME}` alone, or followed by a path, query or fragment: the variable is the host."""
    m = ENV_REF.match(text)
    if m is None or len(ENV_REF.findall(text)) != 1:
        return False
    rest = text[m.end() :]
    return rest == "" or rest[0] in "/?#"


def config_problems(
    action_type: str,
    config: Mapping[str, Any],
    *,
    secrets: ActionSecrets,
    outbound: OutboundPolicy,
    getenv: Getenv = os.environ.get,
) -> list[ConfigError]:
    """Every way `config` asks for more than a trigger may, one ConfigError per field.

    Args:
        action_type: The action's type (rest, telegram, discord, slack, email, mcp).
        config: The action's settings as written in the triggers file.
        secrets: The variables available to actions.
        outbound: Which addresses actions may reach (literal IP hosts are checked).
        getenv: Reads the operator's settings (Discord's and Slack's API bases).

    Returns:
        The problems, empty when the config is acceptable.
    """
    problems: list[ConfigError] = []
    for name, setting in OPERATOR_FIELDS.get(action_type, {}).items():
        if name in config:
            problems.append(
                ConfigError(name, f"is the operator's setting ({setting}), not a trigger's")
            )
    fields = SECRET_FIELDS.get(action_type, {})
    for path, text in _walk(config):
        names = ENV_REF.findall(text)
        if not names:
            continue
        rule = _rule(fields, path)
        if rule is None:
            where = ", ".join(sorted(fields)) or "no field of this action type"
            problems.append(
                ConfigError(
                    path,
                    f"${{{names[0]}}}: environment references may stand only in the fields "
                    f"meant for secrets ({where})",
                )
            )
            continue
        if rule == ORIGIN and not _origin_ok(text):
            problems.append(
                ConfigError(
                    path,
                    f"${{{names[0]}}} may only be the whole URL or its start, naming the host "
                    f"(url: ${{{names[0]}}}/path), not part of a URL the trigger chose",
                )
            )
            continue
        for name in names:
            reason = secrets.refusal(name)
            if reason:
                problems.append(ConfigError(path, reason))
                break
    for name in URL_FIELDS.get(action_type, ()):
        url = config.get(name)
        if not isinstance(url, str) or ENV_REF.match(url):
            continue
        reason = literal_refusal(url, outbound)
        if reason:
            problems.append(ConfigError(name, reason))
        elif action_type in WEBHOOK_REFUSALS:
            reason = WEBHOOK_REFUSALS[action_type](url, getenv)
            if reason:
                problems.append(ConfigError(name, reason))
    return problems


def check_action_config(
    action_type: str,
    config: Mapping[str, Any],
    *,
    getenv: Getenv = os.environ.get,
) -> None:
    """Before a delivery: refuse an action whose config asks for more than a trigger may.

    Raises:
        ActionError: not retryable, naming the first problem's field.
    """
    problems = config_problems(
        action_type,
        config,
        secrets=ActionSecrets.from_env(getenv),
        outbound=OutboundPolicy.from_env(getenv),
        getenv=getenv,
    )
    if problems:
        raise ActionError(f"refused by the action policy: {problems[0]}", retryable=False)


def telegram_api_base(getenv: Getenv = os.environ.get) -> str:
    """The Telegram Bot API base: the operator's `CHAINLAKE_TELEGRAM_API_BASE`, else Telegram."""
    return (getenv(TELEGRAM_API_SETTING) or DEFAULT_TELEGRAM_API_BASE).rstrip("/")


def _webhook_refusal(
    url: str, bases: tuple[str, ...], setting: str, service: str, getenv: Getenv
) -> str | None:
    """Why `url` is not under one of `bases` or the operator's `setting` (an API base whose
    webhooks sit at the same path), or None."""
    allowed = list(bases)
    own = (getenv(setting) or "").rstrip("/")
    if own:
        path = bases[0].split("/", 3)[3]  # "api/webhooks/" or "services/"
        allowed.append(f"{own}/{path}")
    if any(url.startswith(b) for b in allowed):
        return None
    return (
        f"not a {service} webhook URL ({bases[0]}...; the operator may set another API base "
        f"with {setting})"
    )


def discord_url_refusal(url: str, getenv: Getenv = os.environ.get) -> str | None:
    """Why `url` is not a Discord webhook URL (of Discord, or under the operator's
    `CHAINLAKE_DISCORD_API_BASE`), or None."""
    return _webhook_refusal(url, DISCORD_WEBHOOK_BASES, DISCORD_API_SETTING, "Discord", getenv)


def slack_url_refusal(url: str, getenv: Getenv = os.environ.get) -> str | None:
    """Why `url` is not a Slack incoming-webhook URL (of Slack, or under the operator's
    `CHAINLAKE_SLACK_API_BASE`), or None."""
    return _webhook_refusal(url, SLACK_WEBHOOK_BASES, SLACK_API_SETTING, "Slack", getenv)


WEBHOOK_REFUSALS: dict[str, Callable[[str, Getenv], str | None]] = {
    "discord": discord_url_refusal,
    "slack": slack_url_refusal,
}
