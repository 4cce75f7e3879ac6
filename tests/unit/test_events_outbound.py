"""The outbound policy of trigger actions: which addresses are refused, the operator's
allow-list, and the connection made to the very address that was checked (DNS rebinding)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpcore
import pytest

from chainlake.actions.outbound import (
    GuardedBackend,
    OutboundPolicy,
    OutboundRefused,
    guarded_client,
    kind_of,
    literal_refusal,
    parse_allow_list,
)


@pytest.mark.parametrize(
    ("ip", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-global"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_kinds_of_addresses(ip: str, kind: str | None) -> None:
    assert kind_of(ipaddress.ip_address(ip)) == kind


def test_the_allow_list_takes_addresses_and_networks_only() -> None:
    policy = OutboundPolicy(parse_allow_list(" 127.0.0.1, 10.0.0.0/8 ,[::1],"))
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("10.200.0.1") is None
    assert policy.refusal("::1") is None
    assert policy.refusal("::ffff:127.0.0.1") is None
    assert "127.0.0.2, a loopback address" in (policy.refusal("127.0.0.2") or "")
    with pytest.raises(ValueError, match="'localhost' is not an IP address"):
        parse_allow_list("localhost")


def test_literal_hosts_are_refused_when_applying() -> None:
    policy = OutboundPolicy()
    assert "loopback" in (literal_refusal("http://127.0.0.1:5432/", policy) or "")
    assert "loopback" in (literal_refusal("http://LOCALHOST/", policy) or "")
    assert literal_refusal("https://example.com/", policy) is None  # a name: checked later
    assert literal_refusal("https://8.8.8.8/", policy) is None


class Recorder(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self.connected: list[tuple[str, int]] = []

    def connect_tcp(self, host: str, port: int, *args: Any, **kw: Any) -> Any:
        self.connected.append((host, port))
        raise httpcore.ConnectError("recorded")


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    asked: list[str] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kw: Any) -> list[Any]:
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_the_connection_goes_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_dns(monkeypatch, {"hook.example": ["93.184.215.14"]})
    inner = Recorder()
    with pytest.raises(httpcore.ConnectError):
        GuardedBackend(OutboundPolicy(), inner).connect_tcp("hook.example", 443)
    # resolved once, by the guard; the socket is opened to that address, not to the name
    assert asked == ["hook.example"] and inner.connected == [("93.184.215.14", 443)]


def test_a_name_resolving_to_a_refused_address_is_never_connected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_dns(monkeypatch, {"rebind.example": ["93.184.215.14", "127.0.0.1"]})
    inner = Recorder()
    with pytest.raises(OutboundRefused, match=r"rebind\.example resolves to 127\.0\.0\.1"):
        GuardedBackend(OutboundPolicy(), inner).connect_tcp("rebind.example", 80)
    assert inner.connected == []


def test_the_guarded_client_refuses_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"metadata.example": ["169.254.169.254"]})
    with guarded_client(OutboundPolicy(), timeout=2) as http:
        with pytest.raises(OutboundRefused, match="link-local") as err:
            http.get("http://metadata.example/latest/meta-data/")
    assert not err.value.retryable
