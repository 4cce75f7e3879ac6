"""Decoding events of interest from the chain tables: the logs of the contracts a chain lists
in chains.yaml (`contracts:`), by their ABI from `chainlake/abis/`, and ERC-20 transfers
touching tracked wallets. Pure functions over Polars frames with the columns of raw/logs and
core/token_transfers; `assets/events/chain_events.py` feeds them a chain-day.

ABI arguments map to the `events` columns by name (agentId -> agent_id, fileuri -> file_uri,
...); an argument without a column of its own is kept in `data`, so a registry contract that
grows an event argument loses nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from chainlake.abis import load_abi, registry_of
from chainlake.config import ContractConfig
from chainlake.events.columns import DECODED_COLUMNS, decoded_events_model
from chainlake.events.store import event_id
from chainlake.schema import polars_schema

# ABI argument names that do not simply snake-case into a column
ARG_ALIASES = {
    "tokenuri": "token_uri", "agenturi": "token_uri", "newuri": "token_uri", "uri": "token_uri",
    "key": "metadata_key", "value": "metadata_value", "fileuri": "file_uri",
    "filehash": "file_hash", "feedbackuri": "file_uri", "feedbackhash": "file_hash",
    "client": "client_address", "validator": "validator_address",
}  # fmt: skip
# bytes32 arguments that are digests (kept as hex), as opposed to short labels (tags)
HASH_COLUMNS = {"file_hash", "request_hash", "response_hash"}
# set from the log itself: an ABI argument of the same name goes to `data` instead
LOG_COLUMNS = frozenset(
    {
        "id",
        "chain_id",
        "block_number",
        "block_hash",
        "transaction_hash",
        "log_index",
        "registry",
        "event_type",
        "timestamp",
        "data",
    }
)
# columns an ABI argument may fill
ARG_COLUMNS = frozenset(c.name for c in DECODED_COLUMNS) - LOG_COLUMNS
BIGINT_MAX = 2**63 - 1
# the class name of the decoded frame's Pandera model (`decoded_events_model` caches it by name)
CHAIN_EVENTS_MODEL = "ChainEventsModel"
INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class EventAbi:
    """One event of a contract's ABI: its signature, topic0 and inputs."""

    registry: str
    name: str
    signature: str
    topic0: str
    inputs: tuple[tuple[str, str, bool], ...]  # (name, type, indexed)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def column_for(arg: str) -> str | None:
    """The events column an ABI argument fills (by alias or snake_case name), or None for `data`."""
    key = arg.lower()
    if key in ARG_ALIASES:
        return ARG_ALIASES[key]
    snake = _snake(arg)
    return snake if snake in ARG_COLUMNS else None


def event_abis(registry: str, abi: Iterable[Mapping[str, Any]]) -> list[EventAbi]:
    """The non-anonymous events of `abi`, attributed to `registry`."""
    from eth_utils import keccak

    out = []
    for item in abi:
        if item.get("type") != "event" or item.get("anonymous"):
            continue
        types = ",".join(i["type"] for i in item["inputs"])
        sig = f"{item['name']}({types})"
        out.append(
            EventAbi(
                registry=registry,
                name=item["name"],
                signature=sig,
                topic0="0x" + keccak(text=sig).hex(),
                inputs=tuple(
                    (i["name"], i["type"], bool(i.get("indexed"))) for i in item["inputs"]
                ),
            )
        )
    return out


def abi_events(names: Iterable[str]) -> dict[str, list[EventAbi]]:
    """ABI name -> its events, from the ABIs shipped in `chainlake/abis/`.

    Args:
        names: ABI names (`contracts[].abi` of chains.yaml).

    Raises:
        KeyError: a name is not a shipped ABI.
    """
    return {n: event_abis(registry_of(n), load_abi(n)) for n in sorted(set(names))}


def _text_or_hex(raw: bytes) -> str:
    r"""A bytes32 label ('quality\0\0...') as text; anything else as 0x-hex."""
    stripped = raw.rstrip(b"\x00")
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + raw.hex()
    if text and text.isprintable():
        return text
    return "" if not stripped else "0x" + raw.hex()


def _convert(value: Any, abi_type: str, column: str | None) -> Any:
    if abi_type == "address":
        return str(value).lower()
    if abi_type.startswith("bytes"):
        raw = bytes(value)
        if column in HASH_COLUMNS or (abi_type == "bytes32" and column is None):
            return "0x" + raw.hex()
        return _text_or_hex(raw)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        limit = INT_MAX if column in ("score", "response") else BIGINT_MAX
        return value if value <= limit else str(value)
    if isinstance(value, (list, tuple)):
        return [_convert(v, abi_type.rsplit("[", 1)[0], None) for v in value]
    return value


def decode_log(ev: EventAbi, topics: list[str | None], data_hex: str) -> dict[str, Any]:
    """Arguments of one log, as event columns (plus `data` for the rest)."""
    from eth_abi import decode

    out: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    indexed = [t for t in topics[1:] if t is not None]
    plain = [(n, t) for n, t, idx in ev.inputs if not idx]
    values = (
        decode([t for _, t in plain], bytes.fromhex(data_hex.removeprefix("0x"))) if plain else ()
    )
    decoded: dict[str, tuple[str, Any]] = {
        n: (t, v) for (n, t), v in zip(plain, values, strict=True)
    }
    k = 0
    for name, abi_type, idx in ev.inputs:
        if not idx:
            continue
        topic = indexed[k] if k < len(indexed) else None
        k += 1
        if topic is None:
            continue
        if (
            abi_type in ("string", "bytes")
            or abi_type.endswith("]")
            or abi_type.startswith("tuple")
        ):
            # an indexed dynamic value is only its hash
            extra[f"{name}_hash"] = topic
            continue
        decoded[name] = (abi_type, decode([abi_type], bytes.fromhex(topic.removeprefix("0x")))[0])
    for name, (abi_type, value) in decoded.items():
        column = column_for(name)
        v = _convert(value, abi_type, column)
        if column is not None and not (
            isinstance(v, str) and column in ("agent_id", "feedback_index", "score", "response")
        ):
            out[column] = v
        else:
            extra[name] = v
    out["data"] = extra
    return out


def registry_events(
    logs: pl.DataFrame,
    contracts: Sequence[ContractConfig],
    abis: Mapping[str, list[EventAbi]] | None = None,
) -> list[dict[str, Any]]:
    """Events of the configured contracts in a logs frame.

    A log is decoded when its address is one of `contracts`, its block is at or after that
    contract's `start_block` and its topic0 is an event of that contract's ABI; other logs are
    skipped.

    Args:
        logs: rows of raw/logs.
        contracts: the chain's `contracts:` of chains.yaml.
        abis: ABI name -> its events; default: the ABIs shipped in `chainlake/abis/`.

    Returns:
        One event row per decoded log (`events` columns, the rest in `data`).
    """
    if logs.height == 0 or not contracts:
        return []
    if abis is None:
        abis = abi_events(c.abi for c in contracts)
    by_address = {c.address.lower(): c for c in contracts}
    by_topic = {(c.address.lower(), ev.topic0): ev for c in contracts for ev in abis.get(c.abi, ())}
    wanted = logs.filter(pl.col("address").is_in(list(by_address)))
    out = []
    for row in wanted.iter_rows(named=True):
        contract = by_address[row["address"]]
        # before its start block the address was not (yet) this contract
        if row["block_number"] < contract.start_block:
            continue
        ev = by_topic.get((row["address"], row["topic0"]))
        if ev is None:
            continue
        fields = decode_log(
            ev, [row["topic0"], row["topic1"], row["topic2"], row["topic3"]], row["data"]
        )
        out.append(
            {
                "id": event_id(row["chain_id"], row["block_number"], row["log_index"]),
                "chain_id": row["chain_id"],
                "block_number": row["block_number"],
                "block_hash": row["block_hash"],
                "transaction_hash": row["transaction_hash"],
                "log_index": row["log_index"],
                "registry": ev.registry,
                "event_type": ev.name,
                "timestamp": int(row["block_timestamp"].timestamp()),
                **fields,
                "data": {**fields["data"], "contract": row["address"]},
            }
        )
    return out


def transfer_events(transfers: pl.DataFrame, tracked: Iterable[str]) -> list[dict[str, Any]]:
    """ERC-20 transfers from or to a tracked wallet, as `erc20` events (amount exact, base units)."""
    wallets = [a.lower() for a in tracked]
    if transfers.height == 0 or not wallets:
        return []
    hits = transfers.filter(
        pl.col("from_address").is_in(wallets) | pl.col("to_address").is_in(wallets)
    )
    return [
        {
            "id": event_id(r["chain_id"], r["block_number"], r["log_index"]),
            "chain_id": r["chain_id"],
            "block_number": r["block_number"],
            "block_hash": r["block_hash"],
            "transaction_hash": r["transaction_hash"],
            "log_index": r["log_index"],
            "registry": "erc20",
            "event_type": "Transfer",
            "timestamp": int(r["block_timestamp"].timestamp()),
            "token_address": r["token_address"],
            "from_address": r["from_address"],
            "to_address": r["to_address"],
            "amount": r["value_raw"],
            "data": {
                "direction": "in" if r["to_address"] in wallets else "out",
            },
        }
        for r in hits.iter_rows(named=True)
    ]


def chain_events_frame(
    logs: pl.DataFrame,
    transfers: pl.DataFrame,
    *,
    contracts: Sequence[ContractConfig],
    tracked: list[str],
    abis: Mapping[str, list[EventAbi]] | None = None,
) -> pl.DataFrame:
    """A chain-day's logs and transfers -> events of interest, in chain order (the frame
    `events/chain_events` inserts and `chainlake.events.backtest` evaluates).

    Args:
        logs: the day's raw/logs rows.
        transfers: the day's core/token_transfers rows.
        contracts: the chain's `contracts:` (chains.yaml); their logs are decoded.
        tracked: tracked wallet addresses; transfers touching them become `erc20` events.
        abis: ABI name -> events, to decode with; default: the ABIs in `chainlake/abis/`.
    """
    rows = registry_events(logs, contracts, abis) + transfer_events(transfers, tracked)
    schema = polars_schema(decoded_events_model(CHAIN_EVENTS_MODEL))
    records = []
    for r in rows:
        rec = {c: r.get(c) for c in schema if c != "data"}
        # Oversized integers were kept as text by the decoder; they belong in `data` only.
        for c, t in schema.items():
            if t == pl.Int64 and isinstance(rec.get(c), str):
                r.setdefault("data", {})[c] = rec[c]
                rec[c] = None
        rec["data"] = json.dumps(r.get("data") or {}, sort_keys=True)
        records.append(rec)
    frame = (
        pl.DataFrame(records, schema=schema, orient="row")
        if records
        else pl.DataFrame(schema=schema)
    )
    return frame.sort("block_number", "log_index")


def frame_events(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows of the frame as `events` rows (data parsed back, nulls dropped)."""
    out = []
    for r in frame.iter_rows(named=True):
        ev = {k: v for k, v in r.items() if v is not None}
        ev["data"] = json.loads(r["data"])
        out.append(ev)
    return out
