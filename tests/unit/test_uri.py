"""chainlake.uri against a real HTTP server on 127.0.0.1: data: decoding, the size and time
limits, errors that name the URI without its credentials, and how the MCP action classifies a
failed fetch of the feedback file."""

from __future__ import annotations

import base64
import gzip
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from eth_utils import keccak

from chainlake.actions.base import ActionError, Secrets, SendContext
from chainlake.actions.mcp import verify_file_hash
from chainlake.uri import UriError, fetch_uri, redact_uri


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: a body without Content-Length ends when the connection closes, so /stream
    # can send more than it declares (nothing).
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        route, arg = parts[0], (parts[1] if len(parts) > 1 else "")
        if route == "sized":  # n bytes with Content-Length
            self.reply(200, b"x" * int(arg), {"Content-Length": arg})
        elif route == "stream":  # n bytes, length undeclared
            self.reply(200, b"y" * int(arg))
        elif route == "gzip":  # n zero bytes, gzipped to a small body
            body = gzip.compress(b"\0" * int(arg))
            self.reply(200, body, {"Content-Encoding": "gzip", "Content-Length": str(len(body))})
        elif route == "status":
            self.reply(int(arg), b"no", {"Retry-After": "7"})
        elif route == "redirect":
            self.reply(302, b"", {"Location": "/sized/3"})
        elif route == "slow":  # nothing for 2 s
            time.sleep(2)
            self.reply(200, b"late")
        elif route == "drip":  # a byte every 50 ms for 2 s: each read is quick
            self.send_response(200)
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"d")
                self.wfile.flush()
                time.sleep(0.05)
        else:
            self.reply(404, b"")

    def reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that give up mid-body (the point of several tests) break the pipe


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def with_secrets(url: str) -> str:
    """The same URL carrying credentials in every place they travel."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://alice:s3cret@{rest}?token=t0ken&sig=abc#frag-secret"


def assert_redacted(message: str) -> None:
    for secret in ("alice", "s3cret", "t0ken", "sig=", "frag-secret"):
        assert secret not in message, message


# -- data: -------------------------------------------------------------------------------


def test_data_base64() -> None:
    doc = b'{"name": "agent 1", "endpoints": []}'
    assert fetch_uri("data:application/json;base64," + base64.b64encode(doc).decode()) == doc
    # what appears in the wild: upper case, line breaks, dropped padding, %-escaped '+' and '='
    assert fetch_uri("DATA:text/plain;BASE64,aGk") == b"hi"
    assert fetch_uri("data:;base64,aGVs\nbG8s\r\nIHdv cmxk") == b"hello, world"
    assert fetch_uri("data:;base64,%2B%2F8%3D") == b"\xfb\xff"


def test_data_percent_encoded() -> None:
    assert fetch_uri("data:,Hello%2C%20World%21") == b"Hello, World!"
    assert fetch_uri("data:text/plain;charset=utf-8,caf%C3%A9") == "café".encode()
    assert fetch_uri("  data:,x  ") == b"x"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("data:;base64,!!!!", "invalid base64"),
        ("data:;base64,aGVsbG8=x", "invalid base64"),
        ("data:text/plain", "needs a ','"),
        ("ipfs://QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "unsupported scheme 'ipfs'"),
        ("file:///etc/passwd", "unsupported scheme 'file'"),
        ("registration.json", "not an absolute URI"),
    ],
)
def test_what_cannot_be_fetched_is_refused_for_good(uri: str, reason: str) -> None:
    with pytest.raises(UriError, match=reason) as e:
        fetch_uri(uri)
    assert not e.value.transient and e.value.status_code is None


def test_oversize_data_is_refused() -> None:
    payload = base64.b64encode(b"z" * 101).decode()
    with pytest.raises(UriError, match="content of 101 bytes is over the limit of 100") as e:
        fetch_uri("data:text/plain;base64," + payload, max_bytes=100)
    # the error names the URI without its (possibly huge) payload
    assert str(e.value).startswith(f"fetch data:text/plain;base64,<{len(payload)} chars>: ")
    assert fetch_uri("data:text/plain;base64," + payload, max_bytes=101) == b"z" * 101


# -- redaction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("https://user:pw@example.com:8443/a/b?key=s#frag", "https://example.com:8443/a/b"),
        ("https://example.com/reg.json", "https://example.com/reg.json"),
        ("http://[::1]:8080/x?api_key=1", "http://[::1]:8080/x"),
        ("http://[::1/x?api_key=1", "http:<unparseable>"),
        ("ftp://me:pw@files.example/f?x=1", "ftp://files.example/f"),
        ("data:application/json;base64,eyJhIjoxfQ==", "data:application/json;base64,<12 chars>"),
    ],
)
def test_redact_uri(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown


# -- http ----------------------------------------------------------------------------------


def test_http_content(base: str) -> None:
    assert fetch_uri(f"{base}/sized/5") == b"xxxxx"
    assert fetch_uri(f"{base}/stream/4000", max_bytes=4000) == b"y" * 4000
    with httpx.Client() as client:  # a caller's client is used and left open
        assert fetch_uri(f"{base}/sized/3", client=client) == b"xxx"
        assert fetch_uri(f"{base}/sized/2", client=client) == b"xx"


@pytest.mark.parametrize(
    ("path", "max_bytes", "limit"),
    [
        # declared too long: refused before the body is read
        ("/sized/5000", 1000, "content of 5000 bytes is over the limit of 1000"),
        # undeclared: cut off while reading
        ("/stream/5000", 1000, "content is over the limit of 1000 bytes"),
        # 5 MB of zeros in a 5 KB gzip body: the limit counts what the body decompresses to
        ("/gzip/5000000", 100_000, "content is over the limit of 100000 bytes"),
    ],
)
def test_oversize_body_is_refused_naming_the_redacted_uri(
    base: str, path: str, max_bytes: int, limit: str
) -> None:
    with pytest.raises(UriError) as e:
        fetch_uri(with_secrets(base + path), max_bytes=max_bytes)
    assert str(e.value) == f"fetch {base}{path}: {limit}"
    assert not e.value.transient


def test_http_error_status(base: str) -> None:
    with pytest.raises(UriError) as e:
        fetch_uri(with_secrets(f"{base}/status/503"))
    assert str(e.value) == f"fetch {base}/status/503: HTTP 503"
    assert (e.value.status_code, e.value.retry_after, e.value.transient) == (503, 7.0, True)
    with pytest.raises(UriError) as e:
        fetch_uri(with_secrets(f"{base}/status/404"))
    assert (e.value.status_code, e.value.transient) == (404, False)
    assert_redacted(str(e.value))


def test_redirects_follow_the_callers_client(base: str) -> None:
    with pytest.raises(UriError, match="HTTP 302") as e:
        fetch_uri(f"{base}/redirect")
    assert not e.value.transient
    with httpx.Client(follow_redirects=True) as client:
        assert fetch_uri(f"{base}/redirect", client=client) == b"xxx"


def test_a_silent_server_times_out(base: str) -> None:
    with pytest.raises(UriError, match=r"timed out after 0.3s") as e:
        fetch_uri(with_secrets(f"{base}/slow"), timeout=0.3)
    assert e.value.transient
    assert_redacted(str(e.value))


def test_a_dripping_server_times_out_on_the_whole_fetch(base: str) -> None:
    # every read gets a byte within 50 ms, so only the overall deadline can stop it
    t0 = time.monotonic()
    with pytest.raises(UriError, match=r"timed out after 0.5s") as e:
        fetch_uri(f"{base}/drip", timeout=0.5)
    assert time.monotonic() - t0 >= 0.5
    assert e.value.transient


def test_connection_refused_is_transient_and_redacted() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # nothing listens on the port any more
    with pytest.raises(UriError) as e:
        fetch_uri(with_secrets(f"http://127.0.0.1:{port}/reg.json"), timeout=2)
    assert str(e.value).startswith(f"fetch http://127.0.0.1:{port}/reg.json: ConnectError")
    assert e.value.transient and e.value.status_code is None
    assert_redacted(str(e.value))


# -- the MCP action's use: verify_file_hash ------------------------------------------------


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def ctx(http: httpx.Client, uri: str, content: bytes) -> SendContext:
    context = {"file_uri": uri, "file_hash": "0x" + keccak(content).hex()}
    return SendContext(context=context, idempotency_key="k", secrets=Secrets(), http=http)


def test_verify_file_hash_reads_data_and_http(base: str, http: httpx.Client) -> None:
    verify_file_hash(ctx(http, "data:,feedback", b"feedback"))
    verify_file_hash(ctx(http, f"{base}/sized/4", b"xxxx"))
    with pytest.raises(ActionError, match="hashes to") as e:
        verify_file_hash(ctx(http, with_secrets(f"{base}/sized/4"), b"other"))
    assert not e.value.retryable
    assert_redacted(str(e.value))


@pytest.mark.parametrize(
    ("status", "retryable", "retry_after"),
    [
        (503, True, 7.0),  # Retry-After honoured on 429 and 503
        (500, True, None),
        (409, True, None),  # retryable for actions, though not a transient status for fetching
        (404, False, None),
    ],
)
def test_verify_file_hash_classifies_a_failed_fetch_like_any_action(
    base: str, http: httpx.Client, status: int, retryable: bool, retry_after: float | None
) -> None:
    with pytest.raises(ActionError) as e:
        verify_file_hash(ctx(http, with_secrets(f"{base}/status/{status}"), b""))
    assert (e.value.retryable, e.value.retry_after, e.value.status_code) == (
        retryable,
        retry_after,
        status,
    )
    assert str(e.value) == f"fetch {base}/status/{status}: HTTP {status}"


def test_verify_file_hash_does_not_retry_an_oversize_file(base: str, http: httpx.Client) -> None:
    with pytest.raises(ActionError, match="over the limit") as e:
        verify_file_hash(ctx(http, f"{base}/gzip/{20 * 1024 * 1024}", b""))
    assert not e.value.retryable
