"""Agents of the 8004 identity registry, as the MCP action needs them: their MCP endpoint (from
the registration file their token URI points at) and their bearer token (`agent_mcp_tokens`,
encrypted with Fernet under a key from the environment).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from chainlake.actions.base import ActionError
from chainlake.actions.mcp import AgentEndpoint
from chainlake.actions.outbound import OutboundPolicy, guarded_client
from chainlake.events.db import Conn
from chainlake.uri import UriError, fetch_uri, redact_uri


def new_key() -> str:
    """A fresh key for CHAINLAKE_SECRET_KEY."""
    return Fernet.generate_key().decode()


def _fernet(key: str) -> Fernet:
    if not key:
        raise ValueError(
            "no encryption key: set CHAINLAKE_SECRET_KEY (chainlake.events.agents.new_key())"
        )
    try:
        return Fernet(key.encode() if isinstance(key, str) else key)
    except (ValueError, TypeError) as e:
        raise ValueError(
            "CHAINLAKE_SECRET_KEY is not a Fernet key (32 url-safe base64 bytes)"
        ) from e


def set_agent_mcp_token(conn: Conn, agent_id: int, token: str, *, key: str) -> None:
    """Store (or replace) an agent's MCP bearer token, encrypted with the Fernet `key`.

    The row belongs to the session's user (the column's default, `chainlake_user_id()`): a
    user's own token for the agent, or, from the engine's session, the operator's token used by
    every trigger whose owner has none of their own.
    """
    ciphertext = _fernet(key).encrypt(token.encode())
    conn.execute(
        "INSERT INTO agent_mcp_tokens (agent_id, token_encrypted) VALUES (%s, %s) "
        "ON CONFLICT (agent_id, user_id) DO UPDATE SET token_encrypted = EXCLUDED.token_encrypted",
        (agent_id, ciphertext),
    )


def has_agent_mcp_token(conn: Conn, agent_id: int, *, user_id: str | None = None) -> bool:
    """Whether a token is stored for the agent: `user_id`'s own or the operator's."""
    row = conn.execute(
        "SELECT 1 AS x FROM agent_mcp_tokens WHERE agent_id = %s "
        "AND (user_id IS NULL OR user_id = %s::text) LIMIT 1",
        (agent_id, user_id),
    ).fetchone()
    return row is not None


def get_agent_mcp_token(
    conn: Conn, agent_id: int, *, key: str, user_id: str | None = None
) -> str | None:
    """An agent's MCP bearer token decrypted with `key`, or None when it has none: `user_id`'s
    own if they stored one, else the operator's (stored from the engine's session)."""
    row = conn.execute(
        "SELECT token_encrypted FROM agent_mcp_tokens WHERE agent_id = %s "
        "AND (user_id IS NULL OR user_id = %s::text) ORDER BY user_id NULLS LAST LIMIT 1",
        (agent_id, user_id),
    ).fetchone()
    if row is None:
        return None
    try:
        return _fernet(key).decrypt(bytes(row["token_encrypted"])).decode()
    except InvalidToken as e:
        raise ValueError(f"the MCP token of agent {agent_id} does not decrypt with this key") from e


def agent_token_uri(conn: Conn, agent_id: int, chain_id: int | None = None) -> str | None:
    """The agent's latest token URI from the identity registry's events (registration or update)."""
    row = conn.execute(
        "SELECT token_uri FROM events WHERE registry = 'identity' AND agent_id = %s "
        "AND token_uri IS NOT NULL AND retracted_at IS NULL "
        "AND (%s::int IS NULL OR chain_id = %s::int) ORDER BY block_number DESC, log_index DESC LIMIT 1",
        (agent_id, chain_id, chain_id),
    ).fetchone()
    return None if row is None else row["token_uri"]


def mcp_endpoint_from_registration(doc: Any) -> str | None:
    """The MCP endpoint named in an 8004 registration file (`endpoints` or `services`)."""
    if not isinstance(doc, dict):
        return None
    for key in ("endpoints", "services"):
        for e in doc.get(key) or ():
            if isinstance(e, dict) and str(e.get("name", "")).lower() == "mcp":
                url = e.get("endpoint") or e.get("url")
                if isinstance(url, str) and url:
                    return url
    return None


def agent_resolver(connect: Callable[[], Conn], *, key: str | None) -> Callable[..., AgentEndpoint]:
    """A resolver for McpToolCall(resolve_agent=...): agent id -> endpoint and token.

    The token is the trigger owner's own for the agent, else the operator's. Without `key`
    (CHAINLAKE_SECRET_KEY unset) an agent that has a stored token is not called at all: the
    attempt fails for good, saying so, rather than going out unauthenticated.
    """

    def resolve(agent_id: int, trigger_id: str | None = None) -> AgentEndpoint:
        with connect() as conn:
            uri = agent_token_uri(conn, agent_id)
            if uri is None:
                raise ActionError(
                    f"mcp: agent {agent_id} has no token URI in the identity registry",
                    retryable=False,
                )
            try:
                # a token URI is anyone's to write: fetched under the actions' outbound policy
                with guarded_client(OutboundPolicy.from_env()) as http:
                    doc = json.loads(fetch_uri(uri, client=http))
            except UriError as e:
                # Every HTTP failure counts as retryable here, any status included, as the
                # resolver has always treated it; a bad URI or an oversize file never is.
                retryable = e.transient or e.status_code is not None
                raise ActionError(f"mcp: agent {agent_id}: {e}", retryable=retryable) from e
            except ValueError as e:
                raise ActionError(
                    f"mcp: agent {agent_id}: registration file {redact_uri(uri)}: {e}",
                    retryable=False,
                ) from e
            url = mcp_endpoint_from_registration(doc)
            if url is None:
                raise ActionError(
                    f"mcp: agent {agent_id}'s registration names no MCP endpoint", retryable=False
                )
            owner = None
            if trigger_id is not None:
                row = conn.execute(
                    "SELECT user_id FROM triggers WHERE id = %s", (trigger_id,)
                ).fetchone()
                owner = None if row is None else row["user_id"]
            if not key:
                if has_agent_mcp_token(conn, agent_id, user_id=owner):
                    raise ActionError(
                        f"mcp: agent {agent_id} has a stored MCP token but CHAINLAKE_SECRET_KEY "
                        "is not set; not calling it without its token",
                        retryable=False,
                    )
                return AgentEndpoint(url, None)
            try:
                token = get_agent_mcp_token(conn, agent_id, key=key, user_id=owner)
            except ValueError as e:
                raise ActionError(f"mcp: {e}", retryable=False) from e
            return AgentEndpoint(url, token)

    return resolve
