"""Fetch the content a URI points at, for URIs that come from on-chain data: an agent's
registration file (its token URI) and the feedback file whose hash an event carries.

Such URIs are written by anyone, so the fetch is bounded in time and in size, and errors name
the URI without its userinfo, query string or fragment, where credentials and signed tokens
travel. `data:` URIs (base64 or percent-encoded) are decoded in place; http(s) URIs are
fetched. Other schemes (ipfs:, ar:, ...) are refused.
"""

from __future__ import annotations

import base64
import binascii
import time
import urllib.parse

import httpx

from chainlake.retry import parse_retry_after

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_BYTES = 10 * 1024 * 1024

# Statuses after which the same request may well succeed later.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class UriError(Exception):
    """A URI could not be fetched. The message names the URI redacted (see `redact_uri`).

    Attributes:
        uri: The redacted URI.
        transient: Whether another attempt may succeed: a timeout, a network failure or a
            transient HTTP status. A bad URI, an unsupported scheme or an oversize body is not.
        status_code: The HTTP status when the server answered with a non-2xx one.
        retry_after: Seconds the server asked to wait (its `Retry-After`), if it said.
    """

    def __init__(
        self,
        uri: str,
        reason: str,
        *,
        transient: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"fetch {uri}: {reason}")
        self.uri = uri
        self.transient = transient
        self.status_code = status_code
        self.retry_after = retry_after


def redact_uri(uri: str) -> str:
    """The URI as it may appear in logs and error messages.

    Args:
        uri: Any URI, possibly malformed.

    Returns:
        For http(s) and other hierarchical URIs, scheme, host, port and path only: userinfo,
        query string and fragment removed. For `data:` URIs, the media type and the length of
        the payload instead of the payload.
    """
    if uri[:5].lower() == "data:":
        meta, comma, payload = uri[5:].partition(",")
        if len(meta) > 80:
            meta = meta[:80] + "..."
        return f"data:{meta},<{len(payload)} chars>" if comma else f"data:{meta}"
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:  # e.g. an unbalanced "[" in the host
        scheme, sep, _ = uri.partition(":")
        return f"{scheme}:<unparseable>" if sep and scheme.isalnum() else "<unparseable URI>"
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def fetch_uri(
    uri: str,
    *,
    client: httpx.Client | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> bytes:
    """Fetch the content of a `data:` or http(s) URI.

    Args:
        uri: The URI.
        client: The HTTP client to fetch with (its redirect and header settings apply); a
            short-lived one is made when ``None``.
        timeout: Seconds the whole http(s) fetch may take, from connecting to the last byte.
        max_bytes: The largest content accepted, counted after decoding (base64, gzip).

    Returns:
        The content.

    Raises:
        UriError: The scheme is not supported, a `data:` URI does not decode, the content is
            larger than ``max_bytes``, or the fetch failed, timed out or got a non-2xx answer.
    """
    uri = uri.strip()
    name = redact_uri(uri)
    scheme = uri.partition(":")[0].lower() if ":" in uri else ""
    if scheme == "data":
        return _decode_data(uri, name, max_bytes)
    if scheme in ("http", "https"):
        return _fetch_http(uri, name, client, timeout, max_bytes)
    reason = f"unsupported scheme {scheme!r}" if scheme else "not an absolute URI"
    raise UriError(name, reason, transient=False)


def _decode_data(uri: str, name: str, max_bytes: int) -> bytes:
    meta, comma, payload = uri[5:].partition(",")
    if not comma:
        raise UriError(name, "a data: URI needs a ',' before its data", transient=False)
    raw = urllib.parse.unquote_to_bytes(payload)
    if meta.lower().endswith(";base64"):
        # Line breaks inside base64 and dropped padding both occur in the wild.
        raw = b"".join(raw.split())
        raw += b"=" * (-len(raw) % 4)
        try:
            raw = base64.b64decode(raw, validate=True)
        except binascii.Error as e:
            raise UriError(name, f"invalid base64: {e}", transient=False) from e
    if len(raw) > max_bytes:
        raise UriError(
            name, f"content of {len(raw)} bytes is over the limit of {max_bytes}", transient=False
        )
    return raw


def _fetch_http(
    uri: str, name: str, client: httpx.Client | None, timeout: float, max_bytes: int
) -> bytes:
    http = client if client is not None else httpx.Client(timeout=timeout)
    # httpx's timeout bounds each read, not the whole body: a server dripping a byte at a
    # time would never trip it.
    deadline = time.monotonic() + timeout
    try:
        with http.stream("GET", uri, timeout=timeout) as resp:
            if not resp.is_success:
                status = resp.status_code
                raise UriError(
                    name,
                    f"HTTP {status}",
                    transient=status in TRANSIENT_STATUS,
                    status_code=status,
                    retry_after=parse_retry_after(resp.headers.get("retry-after")),
                )
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise UriError(
                    name,
                    f"content of {declared} bytes is over the limit of {max_bytes}",
                    transient=False,
                )
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise UriError(
                        name, f"content is over the limit of {max_bytes} bytes", transient=False
                    )
                if time.monotonic() > deadline:
                    raise UriError(name, f"timed out after {timeout:g}s", transient=True)
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.TimeoutException as e:
        raise UriError(name, f"timed out after {timeout:g}s", transient=True) from e
    except httpx.InvalidURL as e:
        raise UriError(name, f"invalid URL: {_scrub(str(e), uri, name)}", transient=False) from e
    except httpx.HTTPError as e:
        reason = f"{type(e).__name__}: {_scrub(str(e), uri, name)}"
        raise UriError(name, reason, transient=True) from e
    finally:
        if client is None:
            http.close()


def _scrub(message: str, uri: str, name: str) -> str:
    """An httpx error message with the URI's secrets taken out: some messages quote the URL."""
    message = message.replace(uri, name)
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return message
    userinfo = parts.netloc.rpartition("@")[0]
    for secret in (userinfo, parts.query, parts.fragment):
        if secret:
            message = message.replace(secret, "<redacted>")
    return message
