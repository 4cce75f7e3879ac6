"""MCP tool call over Streamable HTTP (the `mcp` SDK's client).

The server is either configured (`endpoint`) or resolved from the agent that the event is about
(`resolve_endpoint: true`): its registration file names an MCP endpoint, and its bearer token
comes from `agent_mcp_tokens` (see `chainlake.events.agents`). With `verify_file_hash`, the
feedback file is fetched and its keccak-256 compared with the event's `file_hash` before the
tool is called.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chainlake.actions.base import RETRYABLE_STATUS, ActionError, ConfigError, SendContext, require
from chainlake.actions.outbound import OutboundPolicy, check_url
from chainlake.actions.templates import check_template, render, render_value
from chainlake.uri import UriError, fetch_uri, redact_text, redact_uri

DEFAULT_ARGUMENTS = {
    "event_id": "{event_id}",
    "trigger_id": "{trigger_id}",
    "agent_id": "{agent_id}",
    "registry": "{registry}",
    "event_type": "{event_type}",
    "score": "{score}",
    "file_uri": "{file_uri}",
    "idempotency_key": "{idempotency_key}",
}


@dataclass(frozen=True)
class AgentEndpoint:
    """An agent's MCP server: its URL and optional bearer token."""

    url: str
    token: str | None = None


# Called as `resolve(agent_id, trigger_id=...)`: the trigger says whose token to use.
AgentResolver = Callable[..., AgentEndpoint]


class McpToolCall:
    """Calls a tool on an MCP server, given in the config or resolved from the event's agent."""

    action_type = "mcp"

    def __init__(self, resolve_agent: AgentResolver | None = None) -> None:
        self.resolve_agent = resolve_agent

    def validate(self, config: Mapping[str, Any]) -> None:
        """Check the tool name, the endpoint (or resolve_endpoint), the argument templates and
        timeout."""
        require(config, "tool_name")
        if not config.get("endpoint") and not config.get("resolve_endpoint"):
            raise ConfigError("endpoint", "missing (or set resolve_endpoint: true)")
        if config.get("endpoint"):
            check_template(config["endpoint"], path="endpoint")
        if "arguments_template" in config:
            if not isinstance(config["arguments_template"], Mapping):
                raise ConfigError("arguments_template", "expected a mapping of argument names")
            check_template(config["arguments_template"], path="arguments_template")
        timeout = config.get("timeout_ms", 30000)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0:
            raise ConfigError("timeout_ms", f"{timeout!r} is not a number of milliseconds")

    def endpoint(self, cfg: Mapping[str, Any], ctx: SendContext) -> AgentEndpoint:
        """The MCP server to call: the rendered `endpoint` of the config, else the event's agent's."""
        if cfg.get("endpoint"):
            return AgentEndpoint(render(cfg["endpoint"], ctx.context), cfg.get("token"))
        agent_id = ctx.context.get("agent_id")
        if agent_id is None:
            raise ActionError(
                "mcp: resolve_endpoint needs an event with an agent_id", retryable=False
            )
        if self.resolve_agent is None:
            raise ActionError("mcp: no agent resolver configured", retryable=False)
        return self.resolve_agent(int(agent_id), trigger_id=ctx.context.get("trigger_id"))

    def send(self, config: Mapping[str, Any], ctx: SendContext) -> Any:
        """Call the tool with the rendered arguments, after checking the event's file hash if asked."""
        cfg = ctx.secrets.resolve(dict(config))
        if cfg.get("verify_file_hash"):
            verify_file_hash(ctx)
        target = self.endpoint(cfg, ctx)
        # the MCP client is not ours to guard: check the endpoint's addresses before the call
        check_url(target.url, OutboundPolicy.from_env(ctx.secrets.getenv))
        default = (
            {**DEFAULT_ARGUMENTS, "phase": "{phase}"}
            if ctx.context.get("phase")
            else DEFAULT_ARGUMENTS
        )
        arguments = render_value(cfg.get("arguments_template", default), ctx.context)
        timeout = int(cfg.get("timeout_ms", 30000)) / 1000
        return asyncio.run(
            call_tool(target, cfg["tool_name"], arguments, timeout=timeout, key=ctx.idempotency_key)
        )


async def call_tool(
    target: AgentEndpoint,
    tool: str,
    arguments: Mapping[str, Any],
    *,
    timeout: float,
    key: str,
) -> dict[str, Any]:
    """Call `tool` on the MCP server at `target` and return its content.

    Returns:
        The tool's result: `is_error`, its `text` contents and its `structured` content.

    Raises:
        ActionError: the call failed or the tool reported an error; retryable when the server had
            an internal error, timed out or could not be reached.
    """
    # Imported here: the SDK is heavy and only delivery runs need it.
    import httpx2
    from mcp import Client, MCPError
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Idempotency-Key": key}
    # what an error message must not repeat (URLs in it are redacted as well)
    secrets = [target.token] if target.token else []
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    try:
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(timeout)) as http:
            transport = streamable_http_client(target.url, http_client=http)
            async with Client(transport, read_timeout_seconds=timeout, mode="legacy") as client:
                result = await asyncio.wait_for(client.call_tool(tool, dict(arguments)), timeout)
    except MCPError as e:
        # -32603 is the server's internal error: maybe transient. Unknown tool or bad params: not.
        raise ActionError(
            f"mcp {tool}: {redact_text(str(e), secrets)}",
            retryable=getattr(e, "code", None) == -32603,
        ) from e
    except TimeoutError as e:
        raise ActionError(f"mcp {tool}: timed out after {timeout:g}s", retryable=True) from e
    except Exception as e:  # transport errors arrive wrapped in exception groups
        raise ActionError(
            f"mcp {tool} at {redact_uri(target.url)}: {redact_text(_describe(e), secrets)}",
            retryable=True,
        ) from e
    texts = [getattr(c, "text", None) for c in result.content]
    response = {
        "is_error": result.is_error,
        "text": [t for t in texts if t is not None],
        "structured": result.structured_content,
    }
    if result.is_error:
        raise ActionError(
            f"mcp {tool}: the tool reported an error: {texts}", retryable=False, response=response
        )
    return response


def _describe(e: BaseException) -> str:
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return f"{type(e).__name__}: {e}"


def _fetch_error(e: UriError) -> ActionError:
    """A failed fetch as a delivery attempt's error, classified like any HTTP action: by
    RETRYABLE_STATUS when the server answered, with its Retry-After on 429 and 503 only."""
    if e.status_code is None:
        return ActionError(str(e), retryable=e.transient)
    return ActionError(
        str(e),
        retryable=e.status_code in RETRYABLE_STATUS,
        retry_after=e.retry_after if e.status_code in (429, 503) else None,
        status_code=e.status_code,
    )


def verify_file_hash(ctx: SendContext, *, timeout: float = 10.0) -> None:
    """Check that the event's `file_uri` content hashes (keccak-256) to its `file_hash`."""
    from eth_utils import keccak

    uri, expected = ctx.context.get("file_uri"), ctx.context.get("file_hash")
    if not uri or not expected:
        raise ActionError("verify_file_hash: the event has no file_uri/file_hash", retryable=False)
    try:
        content = fetch_uri(str(uri), client=ctx.http, timeout=timeout)
    except UriError as e:
        raise _fetch_error(e) from e
    got = "0x" + keccak(content).hex()
    if got.lower() != str(expected).lower():
        raise ActionError(
            f"verify_file_hash: {redact_uri(str(uri))} hashes to {got}, the event says {expected}",
            retryable=False,
        )
