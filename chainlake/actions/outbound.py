"""Where trigger actions may connect: public addresses only, unless the operator allows more.

A trigger's webhook URL, an agent's MCP endpoint from its on-chain registration and a feedback
file's URI are written by people other than the operator. Left alone they could reach what
only the delivering process can: PostgreSQL or the Dagster webserver on loopback, a cloud's
metadata service on link-local 169.254.169.254, anything on the private network. So every
address an action connects to is checked, after DNS resolution and at the moment of connecting
(`GuardedBackend` connects to the very address it checked, so a name that resolves to a public
address when checked and to 127.0.0.1 a moment later, DNS rebinding, gets nowhere):

- refused: loopback, private (RFC 1918, unique-local), link-local, unspecified, multicast,
  shared (100.64.0.0/10), reserved and documentation ranges: every address that is not global;
- allowed anyway: the addresses and networks of the operator's `CHAINLAKE_ACTION_ALLOW_HOSTS`,
  a comma-separated list of IP addresses and CIDR networks
  (`CHAINLAKE_ACTION_ALLOW_HOSTS=127.0.0.1,::1` for receivers on this machine,
  `10.20.0.0/16` for an internal network).

A refused connection is a non-retryable failure of the delivery whose message names the
address and the setting. `chainlake triggers apply` refuses a URL whose host is a literal
refused address (or `localhost`) already; names are checked when delivering.

The HTTP actions (REST, Telegram, Discord, the file fetch of `verify_file_hash`) connect
through `guarded_client`. MCP calls use another HTTP stack: their endpoint's addresses are
checked just before the call (`check_url`). SMTP goes to the operator's own server and is not
checked.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from chainlake.actions.base import ActionError

ALLOW_SETTING = "CHAINLAKE_ACTION_ALLOW_HOSTS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundRefused(ActionError):
    """An action tried to reach an address the outbound policy refuses (never retried)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def kind_of(ip: IPAddress) -> str | None:
    """Why `ip` is refused by default ("loopback", "private", ...), or None for a global one."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return kind_of(ip.ipv4_mapped)
    for kind, hit in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if hit:
            return kind
    return None if ip.is_global else "non-global"


def parse_allow_list(text: str | None) -> tuple[IPNetwork, ...]:
    """The networks of a `CHAINLAKE_ACTION_ALLOW_HOSTS` value (addresses count as /32 or /128).

    Raises:
        ValueError: an entry is neither an IP address nor a CIDR network; the message names it.
    """
    out: list[IPNetwork] = []
    for raw in (text or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            out.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            raise ValueError(
                f"{ALLOW_SETTING}: {entry!r} is not an IP address or CIDR network "
                "(host names are not accepted: they may resolve elsewhere tomorrow)"
            ) from None
    return tuple(out)


@dataclass(frozen=True)
class OutboundPolicy:
    """Which addresses actions may connect to: global ones, plus the operator's `allowed`."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_env(cls, getenv: Callable[[str], str | None] = os.environ.get) -> OutboundPolicy:
        """The policy of the operator's `CHAINLAKE_ACTION_ALLOW_HOSTS` (unset: none allowed)."""
        return cls(parse_allow_list(getenv(ALLOW_SETTING)))

    def refusal(self, ip: IPAddress | str, *, host: str | None = None) -> str | None:
        """Why connecting to `ip` (which `host` resolved to) is refused, or None if allowed."""
        addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        kind = kind_of(addr)
        if kind is None:
            return None
        mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
        if any(addr in net or (mapped is not None and mapped in net) for net in self.allowed):
            return None
        name = f"{host} resolves to {addr}" if host and host != str(addr) else str(addr)
        article = "an" if kind[0] in "aeiou" else "a"
        return (
            f"refused to connect: {name}, {article} {kind} address; trigger actions reach only "
            f"public addresses unless the operator allows it ({ALLOW_SETTING}={addr})"
        )

    def check(self, host: str, port: int) -> list[str]:
        """Resolve `host` and return its addresses, all allowed.

        Raises:
            OutboundRefused: one of the addresses is refused (a name that resolves to a public
                and a private address is refused: which one a connection takes is not ours).
            ActionError: the name does not resolve (retryable: DNS may come back).
        """
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise ActionError(f"cannot resolve {host}: {e}", retryable=True) from e
        addresses: list[str] = []
        for info in infos:
            ip = str(info[4][0]).split("%", 1)[0]
            if ip not in addresses:
                addresses.append(ip)
        for ip in addresses:
            reason = self.refusal(ip, host=host)
            if reason:
                raise OutboundRefused(reason)
        return addresses


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend that resolves a host itself, checks every address against
    the policy and connects to the address it checked (TLS still verifies the host name)."""

    def __init__(self, policy: OutboundPolicy, inner: httpcore.NetworkBackend | None = None):
        self.policy = policy
        self.inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect to the first address of `host` once all of them passed the policy."""
        addresses = self.policy.check(host, port)
        last: Exception | None = None
        for ip in addresses:
            try:
                return self.inner.connect_tcp(
                    ip,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                last = e
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        """Refused: actions connect over TCP only."""
        raise OutboundRefused(f"refused to connect to the unix socket {path}")

    def sleep(self, seconds: float) -> None:
        """Sleep as the inner backend does."""
        self.inner.sleep(seconds)


def guarded_client(policy: OutboundPolicy, *, timeout: float = 30.0) -> httpx.Client:
    """An httpx client whose every connection goes through the policy (see `GuardedBackend`).

    Args:
        policy: Which addresses may be reached.
        timeout: The client's default timeout, in seconds.

    Returns:
        The client; close it (or use it as a context manager) when done.
    """
    transport = httpx.HTTPTransport()
    # httpx builds its connection pool itself; the pool's backend is where connections start
    transport._pool._network_backend = GuardedBackend(policy)
    return httpx.Client(timeout=timeout, transport=transport)


def host_of(url: str) -> tuple[str, int] | None:
    """(host, port) of an http(s) URL, or None when it has no host."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return host, port or (443 if parts.scheme == "https" else 80)


def check_url(url: str, policy: OutboundPolicy) -> None:
    """Resolve the host of `url` and check its addresses (for clients not built by
    `guarded_client`, just before they connect).

    Raises:
        OutboundRefused: the host is or resolves to a refused address.
        ActionError: the URL has no host, or its host does not resolve.
    """
    target = host_of(url)
    if target is None:
        raise ActionError("the URL has no host", retryable=False)
    policy.check(*target)


def literal_refusal(url: str, policy: OutboundPolicy) -> str | None:
    """Why a URL is refused already when a trigger is applied: its host is a literal IP
    address the policy refuses, or `localhost`. None otherwise (names are checked when
    delivering, resolved)."""
    target = host_of(url)
    if target is None:
        return None
    host = target[0]
    if host == "localhost" or host.endswith(".localhost"):
        return policy.refusal("127.0.0.1", host=host)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return policy.refusal(ip)
