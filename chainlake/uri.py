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
import re
import time
import urllib.parse
from collections.abc import Iterable

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
        query string and fragment removed, and path segments that look like credentials
        (a Telegram `bot<id>:<token>`, long mixes of letters and digits such as webhook
        tokens and API keys) replaced by `<redacted>`. For `data:` URIs, the media type
        and the length of the payload instead of the payload.
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
    return urllib.parse.urlunsplit((parts.scheme, host, _redact_path(parts.path), "", ""))


REDACTED = "<redacted>"
# A path segment that carries a credential: a Telegram bot token (`bot<id>:<secret>`), any
# `<digits>:<secret>` pair, or a long run of letters and digits together (webhook tokens of
# Discord, Slack and the like, API keys, hex secrets, capability UUIDs).
_BOT_TOKEN = re.compile(r"^(bot)?\d+:[^/]+$", re.IGNORECASE)
_KEY_LIKE = re.compile(r"^[A-Za-z0-9_\-.~+=%]{16,}$")
# Public content addresses are not credentials: the segment after these stays readable.
_CONTENT_ADDRESSED = {"ipfs", "ipns"}
# Below these (Discord `/api/webhooks/<id>/<token>`, Slack `/services/T../B../<token>`),
# any segment of 16 characters or more but a number (an id) is taken for a token.
_WEBHOOK_ROOTS = {"webhooks", "hooks", "services"}


_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{32,}$")


def _secret_segment(segment: str) -> bool:
    if _BOT_TOKEN.match(segment) or _HEX_KEY.match(segment):
        return True
    return (
        bool(_KEY_LIKE.match(segment))
        and any(c.isdigit() for c in segment)
        and any(c.isalpha() for c in segment)
    )


def _redact_path(path: str) -> str:
    """`path` with every segment that looks like a credential replaced by `<redacted>`."""
    segments = path.split("/")
    out: list[str] = []
    under_webhook = False
    for i, seg in enumerate(segments):
        previous = segments[i - 1].lower() if i else ""
        if previous not in _CONTENT_ADDRESSED and (
            _secret_segment(seg) or (under_webhook and len(seg) >= 16 and not seg.isdigit())
        ):
            out.append("bot" + REDACTED if seg[:3].lower() == "bot" else REDACTED)
        else:
            out.append(seg)
        under_webhook = under_webhook or seg.lower() in _WEBHOOK_ROOTS
    return "/".join(out)


def credentials_in(uri: str) -> list[str]:
    """The parts of `uri` that `redact_uri` takes out: its userinfo (and the password alone),
    the query string and each of its values, the fragment, and the path segments that look
    like credentials. What a message quoting the URL in pieces must not repeat either.

    Args:
        uri: An http(s) or other hierarchical URI; anything else yields nothing.

    Returns:
        The credential-bearing substrings, possibly empty.
    """
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return []
    userinfo = parts.netloc.rpartition("@")[0]
    found = [userinfo, userinfo.partition(":")[2], parts.query, parts.fragment]
    found += [v for _, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
    found += [
        seg
        for seg, shown in zip(
            parts.path.split("/"), _redact_path(parts.path).split("/"), strict=True
        )
        if seg != shown
    ]
    return [f for f in found if f]


# A URL inside free text (an error message, a log line): up to a space, a quote or a bracket.
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` as it may be logged, stored or shown: every URL in it passed through
    `redact_uri`, and every one of `secrets` (values known to be credentials) replaced.

    Args:
        text: An error message, a log line, a response body's text.
        secrets: Values to take out wherever they appear; those shorter than 4 characters are
            left alone (they would match everywhere and protect nothing).

    Returns:
        The text with `<redacted>` where credentials were.
    """
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)

    def one(m: re.Match[str]) -> str:
        url, tail = _split_tail(m.group(0))
        return redact_uri(url) + tail

    return _URL_IN_TEXT.sub(one, text)


def urls_in(text: str) -> list[str]:
    """The URLs written in `text` (what `redact_text` redacts), without trailing punctuation."""
    return [_split_tail(m.group(0))[0] for m in _URL_IN_TEXT.finditer(text)]


def _split_tail(url: str) -> tuple[str, str]:
    """(the URL, the punctuation that ended the sentence it was in)."""
    tail = ""
    while url and url[-1] in ".,;:)]}":
        url, tail = url[:-1], url[-1] + tail
    return url, tail


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
