"""Live state in NATS JetStream KV: a read model of chainlake's real-time state, never the truth.

When `NATS_URL` is set, chainlake mirrors into four KV buckets what other processes (an API, a
dashboard) want to read at once, without opening DuckDB or PostgreSQL:

| bucket | key | value (JSON) | store of record |
|---|---|---|---|
| `wallets` | wallet id | name, address, chain, network, subnet, kind, is_active | DuckDB catalog `wallets` |
| `alerts` | alert id | name, expression, parameters, is_active, trigger_count, last_triggered_at | catalog `alerts`; the firings in PostgreSQL `events` |
| `nodes` | `<chain>.<priority>.<redacted URL, key-encoded>` | head, lag to the best URL, latency p50/p95, errors, last error time, is_active | the RPC client's measurements (`RpcClient.probe`), and catalog `nodes.is_active` |
| `settings` | setting name | the instance's settings (which buckets, what fills them) | the code and environment |

Each bucket's name is prefixed per instance (`<prefix>_wallets`, ...; the prefix is
`NATS_KV_PREFIX`, else the instance name of `chainlake.instance_names`), so two checkouts sharing
one NATS server never share a bucket.

Writers are idempotent: a value equal to the stored one is not written again, and a changed
one is written with `update(key, value, last=revision)`; when another writer got there first
(a wrong-last-sequence error) the entry is read again and the update retried, so concurrent
writers never lose an update and the later write wins. `sync` makes a bucket equal to the
state computed from the stores of record, deleting keys that no longer exist there: after a
writer was killed half-way, the next sync (`chainlake livestate rebuild`, or the sensor's next
tick) rebuilds the buckets whole. Nothing is ever read back from NATS into a store.

No URL credential ever reaches NATS: node keys and values carry `redact_uri`'s form of the URL
(no userinfo, query string or key-like path segment), and the priority keeps two URLs that
redact alike apart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from chainlake import instance_names
from chainlake.rpc import NodeHealth
from chainlake.uri import redact_text, redact_uri

NATS_URL_VARIABLE = "NATS_URL"
PREFIX_VARIABLE = "NATS_KV_PREFIX"
BUCKETS = ("wallets", "alerts", "nodes", "settings")
CONNECT_TIMEOUT = 5.0
# A key token may hold these as they are; anything else is written =XX (hex of each UTF-8 byte)
_SAFE = re.compile(r"[A-Za-z0-9_-]")
_BUCKET_RE = re.compile(r"^[A-Za-z0-9_-]+$")

State = dict[str, dict[str, dict[str, Any]]]


class LiveStateError(RuntimeError):
    """NATS cannot be used: not reachable, no JetStream, a bad bucket prefix."""


# -- names and keys --------------------------------------------------------------------------


def encode_token(text: str) -> str:
    """`text` as one KV key token: letters, digits, `_` and `-` as they are, every other byte
    of its UTF-8 as `=XX`. Reversible (`decode_token`) and never empty."""
    if not text:
        return "="
    out = []
    for ch in text:
        if _SAFE.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"={b:02X}" for b in ch.encode())
    return "".join(out)


def decode_token(token: str) -> str:
    """The text `encode_token` encoded.

    Raises:
        ValueError: `token` is not an encoded token.
    """
    if token == "=":
        return ""
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "=":
            pair = token[i + 1 : i + 3]
            if not re.fullmatch(r"[0-9A-F]{2}", pair):
                raise ValueError(f"{token!r} is not an encoded key token (at {i})")
            raw.append(int(pair, 16))
            i += 3
        elif _SAFE.fullmatch(token[i]):
            raw.extend(token[i].encode())
            i += 1
        else:
            raise ValueError(f"{token!r} is not an encoded key token ({token[i]!r} at {i})")
    return raw.decode()


def node_key(chain: str, priority: int, url: str) -> str:
    """The `nodes` key of a chain's URL: `<chain>.<priority>.<redacted URL>`, each token
    encoded; the URL is redacted here, so a caller cannot leak a credential into a key."""
    return ".".join((encode_token(chain), str(priority), encode_token(redact_uri(url))))


def bucket_prefix(environ: Mapping[str, str] | None = None) -> str:
    """The instance's bucket prefix: NATS_KV_PREFIX, else the instance name.

    Raises:
        LiveStateError: NATS_KV_PREFIX holds a character a bucket name cannot.
    """
    env = os.environ if environ is None else environ
    prefix = env.get(PREFIX_VARIABLE) or instance_names.name(env)
    if not _BUCKET_RE.fullmatch(prefix):
        raise LiveStateError(
            f"{PREFIX_VARIABLE}={prefix!r} cannot prefix a bucket name: use letters, digits, "
            "'_' and '-'"
        )
    return prefix


def bucket_name(prefix: str, bucket: str) -> str:
    """The instance's bucket: `<prefix>_<bucket>`."""
    return f"{prefix}_{bucket}"


def nats_url(environ: Mapping[str, str] | None = None) -> str | None:
    """NATS_URL, or None when it is unset or empty (live state is then off)."""
    env = os.environ if environ is None else environ
    return env.get(NATS_URL_VARIABLE) or None


# -- the state, from the stores of record ----------------------------------------------------


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat()
    return str(value)


def wallet_entries(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """`wallets` bucket entries from catalog `wallets` rows, by wallet id."""
    fields = ("name", "address", "chain", "chain_id", "network", "subnet", "kind", "is_active")
    return {str(r["id"]): {"id": str(r["id"]), **{f: r[f] for f in fields}} for r in rows}


@dataclass(frozen=True)
class AlertStats:
    """How often an alert fired, and when last (from the store of record of its firings)."""

    trigger_count: int = 0
    last_triggered_at: dt.datetime | None = None


def alert_entries(
    rows: Iterable[Mapping[str, Any]], stats: Mapping[str, AlertStats]
) -> dict[str, dict[str, Any]]:
    """`alerts` bucket entries from catalog `alerts` rows and their firing statistics."""
    out = {}
    for r in rows:
        alert_id = str(r["id"])
        params = r.get("parameters")
        s = stats.get(alert_id, AlertStats())
        out[alert_id] = {
            "id": alert_id,
            "name": r["name"],
            "description": r.get("description"),
            "expression": r.get("expression"),
            "parameters": json.loads(params) if isinstance(params, str) else params,
            "is_active": r["is_active"],
            "trigger_count": s.trigger_count,
            "last_triggered_at": _iso(s.last_triggered_at),
        }
    return out


def alert_stats(conn: Any) -> dict[str, AlertStats]:
    """Each alert's firings as PostgreSQL `events` holds them (the store of record of an
    alert's firings): how many (retracted ones not counted) and when the last was recorded.
    A day materialised again inserts no firing twice (`events.id` is deterministic), so the
    count never grows by re-running."""
    rows = conn.execute(
        "SELECT alert_id, count(*) AS n, max(created_at) AS last FROM events "
        "WHERE registry = 'analytics' AND event_type = 'AlertFired' AND alert_id IS NOT NULL "
        "AND retracted_at IS NULL AND retracts IS NULL GROUP BY alert_id"
    ).fetchall()
    return {str(r["alert_id"]): AlertStats(int(r["n"]), r["last"]) for r in rows}


def catalog_rows(conn: Any, table: str) -> list[dict[str, Any]]:
    """Every row of a catalog table (`wallets`, `alerts`, `nodes`) of a DuckDB connection."""
    if table not in ("wallets", "alerts", "nodes"):
        raise ValueError(f"not a catalog table of the live state: {table!r}")
    rel = conn.execute(f'SELECT * FROM "{table}" ORDER BY ALL')  # noqa: S608 (fixed names)
    cols = [d[0] for d in rel.description or []]
    return [dict(zip(cols, row, strict=True)) for row in rel.fetchall()]


def node_activity_updates(
    rows: Iterable[Mapping[str, Any]], chains: Iterable[ChainNodes]
) -> list[tuple[str, int, bool]]:
    """(chain, priority, is_active) for every catalog `nodes` row whose `is_active` differs
    from the measured health of its URL (rows of URLs not measured are left alone)."""
    healthy = {(c.chain, h.priority): h.healthy for c in chains for h in c.health}
    return [
        (r["chain"], int(r["priority"]), healthy[(r["chain"], int(r["priority"]))])
        for r in rows
        if (r["chain"], int(r["priority"])) in healthy
        and bool(r["is_active"]) != healthy[(r["chain"], int(r["priority"]))]
    ]


@dataclass(frozen=True)
class ChainNodes:
    """One chain's URLs as its RPC client measured them."""

    chain: str
    chain_id: int
    network: str
    subnet: str
    health: Sequence[NodeHealth]


def node_entries(chains: Iterable[ChainNodes]) -> dict[str, dict[str, Any]]:
    """`nodes` bucket entries: per URL its head, its lag behind the chain's best URL (the
    highest head any URL of the chain reported), latency, errors and whether it is active
    (healthy: in rotation and its latest round trip succeeded). URLs are redacted."""
    out = {}
    for c in chains:
        heads = [h.head for h in c.health if h.head is not None]
        best = max(heads) if heads else None
        for h in c.health:
            out[node_key(c.chain, h.priority, h.url)] = {
                "chain": c.chain,
                "chain_id": c.chain_id,
                "network": c.network,
                "subnet": c.subnet,
                "priority": h.priority,
                "rpc_url": redact_uri(h.url),
                "head_block": h.head,
                "best_head_block": best,
                "lag_blocks": None if h.head is None or best is None else best - h.head,
                "latency_p50_ms": h.latency_p50_ms,
                "latency_p95_ms": h.latency_p95_ms,
                "latency_samples": h.samples,
                "error_count": h.errors,
                "last_error_at": _iso(h.last_error_at),
                "last_error": None if h.last_error is None else redact_text(h.last_error),
                "last_ok_at": _iso(h.last_ok_at),
                "is_active": h.healthy,
            }
    return out


def settings_entries(prefix: str, url: str) -> dict[str, dict[str, Any]]:
    """`settings` bucket entries: what this instance mirrors, and where (NATS_URL redacted)."""
    return {
        "livestate": {
            "instance": prefix,
            "nats_url": redact_uri(url),
            "buckets": {b: bucket_name(prefix, b) for b in BUCKETS},
            "read_model": True,
            "stores_of_record": {
                "wallets": "DuckDB catalog wallets",
                "alerts": "DuckDB catalog alerts; firings in PostgreSQL events",
                "nodes": "RPC client measurements; catalog nodes.is_active",
            },
        }
    }


def encode_value(value: Mapping[str, Any]) -> bytes:
    """A value as stored: JSON with sorted keys, so equal values have equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


# -- the writer ------------------------------------------------------------------------------


@dataclass
class SyncReport:
    """What one sync changed, per bucket."""

    written: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0

    def summary(self) -> str:
        """One line: per bucket, written / unchanged / deleted."""
        return ", ".join(
            f"{b} {self.written.get(b, 0)} written {self.unchanged.get(b, 0)} unchanged "
            f"{self.deleted.get(b, 0)} deleted"
            for b in sorted(set(self.written) | set(self.unchanged) | set(self.deleted))
        )


def _check_reachable(url: str) -> None:
    """Fail fast, in one line, when nothing listens at the NATS URL (the client would retry)."""
    first = url.split(",")[0].strip()
    parts = urlsplit(first if "://" in first else f"nats://{first}")
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as e:
        raise LiveStateError(
            f"cannot reach NATS at {redact_uri(first)} ({NATS_URL_VARIABLE}): {e.strerror or e}; "
            "is nats-server running with JetStream (-js)?"
        ) from None


class KvWriter:
    """A connection to NATS and the instance's buckets; use as `async with`."""

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        history: int = 1,
        on_read: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        """Args:
        url: NATS server URL (NATS_URL).
        prefix: The bucket prefix (`bucket_prefix()`).
        history: Values kept per key by buckets this writer creates.
        on_read: Awaited between reading a key's revision and updating it (bucket, key):
            a seam for tests that make another writer win the race, and for tracing.
        """
        self.url, self.prefix, self.history = url, prefix, history
        self._on_read = on_read
        self._nc: Any = None
        self._js: Any = None
        self._kv: dict[str, Any] = {}
        self.conflicts = 0

    async def __aenter__(self) -> KvWriter:
        import nats

        _check_reachable(self.url)
        try:
            self._nc = await nats.connect(
                self.url,
                connect_timeout=CONNECT_TIMEOUT,
                max_reconnect_attempts=0,
                allow_reconnect=False,
            )
        except Exception as e:
            raise LiveStateError(
                f"cannot connect to NATS at {redact_uri(self.url)}: {type(e).__name__}: {e}"
            ) from None
        self._js = self._nc.jetstream()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._nc is not None:
            await self._nc.close()

    async def bucket(self, name: str, *, create: bool = True) -> Any:
        """The instance's bucket `name` (one of BUCKETS), created when missing (without
        `create`, None when missing: reading never creates a bucket)."""
        from nats.js.errors import (
            BucketNotFoundError,
            NoStreamResponseError,
            ServiceUnavailableError,
        )

        if name not in self._kv:
            full = bucket_name(self.prefix, name)
            try:
                try:
                    self._kv[name] = await self._js.key_value(full)
                except BucketNotFoundError:
                    if not create:
                        return None
                    from nats.js.api import KeyValueConfig

                    self._kv[name] = await self._js.create_key_value(
                        KeyValueConfig(bucket=full, history=self.history)
                    )
            except (NoStreamResponseError, ServiceUnavailableError) as e:
                raise LiveStateError(
                    f"NATS at {redact_uri(self.url)} answers but has no JetStream "
                    f"({type(e).__name__}); start nats-server with -js"
                ) from None
        return self._kv[name]

    async def put(self, bucket: str, key: str, value: bytes) -> bool:
        """Write `value` at `key` unless it is already there; True when written. Revision
        checked: another writer's update in between is read again, never overwritten
        blindly, and this write (the later one) then wins."""
        from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError

        kv = await self.bucket(bucket)
        while True:
            try:
                entry = await kv.get(key)
                revision, current = entry.revision, entry.value
            except (KeyNotFoundError, KeyDeletedError):  # missing, or a delete marker
                revision, current = None, None
            if current == value:
                return False
            if self._on_read is not None:
                await self._on_read(bucket, key)
            try:
                if revision is None:
                    await kv.create(key, value)  # an existing key raises: read again
                else:
                    await kv.update(key, value, last=revision)
                return True
            except KeyWrongLastSequenceError:
                self.conflicts += 1

    async def keys(self, bucket: str) -> list[str]:
        """The keys the bucket holds (deleted ones not included)."""
        from nats.js.errors import NoKeysError

        kv = await self.bucket(bucket, create=False)
        if kv is None:
            return []
        try:
            return list(await kv.keys())
        except NoKeysError:
            return []

    async def read(self, bucket: str) -> dict[str, dict[str, Any]]:
        """The whole bucket, decoded (for checks and `chainlake livestate show`); empty when
        the bucket does not exist."""
        from nats.js.errors import KeyDeletedError, KeyNotFoundError

        kv = await self.bucket(bucket, create=False)
        out: dict[str, dict[str, Any]] = {}
        for key in await self.keys(bucket) if kv is not None else []:
            try:
                entry = await kv.get(key)
            except (KeyNotFoundError, KeyDeletedError):  # deleted since it was listed
                continue
            out[key] = json.loads(entry.value)
        return out

    async def sync(self, state: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> SyncReport:
        """Make each bucket of `state` equal to it: changed values written (revision checked),
        unchanged ones left alone, keys the state lacks deleted."""
        report = SyncReport()
        before = self.conflicts
        for bucket, entries in state.items():
            written = unchanged = 0
            for key, value in sorted(entries.items()):
                if await self.put(bucket, key, encode_value(value)):
                    written += 1
                else:
                    unchanged += 1
            kv = await self.bucket(bucket)
            stale = [k for k in await self.keys(bucket) if k not in entries]
            for key in stale:
                await kv.delete(key)
            report.written[bucket] = written
            report.unchanged[bucket] = unchanged
            report.deleted[bucket] = len(stale)
        report.conflicts = self.conflicts - before
        return report


async def _drop(url: str, prefix: str) -> list[str]:
    from nats.js.errors import NotFoundError

    dropped = []
    async with KvWriter(url, prefix) as writer:
        for b in BUCKETS:
            try:
                await writer._js.delete_key_value(bucket_name(prefix, b))
                dropped.append(bucket_name(prefix, b))
            except NotFoundError:  # never created
                pass
    return dropped


def drop_buckets(url: str, prefix: str) -> list[str]:
    """Delete the instance's buckets (tests clean up with it); returns the names dropped."""
    return asyncio.run(_drop(url, prefix))


def sync_state(url: str, prefix: str, state: State) -> SyncReport:
    """`KvWriter.sync` from synchronous code (a sensor, the CLI)."""

    async def run() -> SyncReport:
        async with KvWriter(url, prefix) as writer:
            return await writer.sync(state)

    return asyncio.run(run())


def read_buckets(url: str, prefix: str, buckets: Sequence[str] = BUCKETS) -> State:
    """Every entry of the instance's buckets, decoded."""

    async def run() -> State:
        async with KvWriter(url, prefix) as writer:
            return {b: await writer.read(b) for b in buckets}

    return asyncio.run(run())
