"""The columns of the PostgreSQL `events` table, defined once.

`EVENTS_TABLE` lists every column in table order with its PostgreSQL type, whether it admits
NULL, its Polars type in the frame `events/chain_events` decodes (None: the decoder does not
fill it) and the Pandera checks of that frame. From it come:

- `EVENT_COLUMNS` (column -> PostgreSQL type): what `store.insert_events` inserts;
- `decoded_events_model()`: the Pandera model of the decoded frame (`ChainEventsModel`);
- the required fields `store.normalize_event` enforces.

The migration (`migrations/versions/0001_events_schema.py`) keeps its own DDL, as a migration
must; `tests/integration/test_triggers_schema.py` checks a migrated database against this table
column by column (name, order, type, nullability).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pandera.polars as pa
import polars as pl

from chainlake.abis import ABI_REGISTRIES

ADDRESS = r"^0x[0-9a-f]{40}$"
HASH = r"^0x[0-9a-f]{64}$"
# `registry` values the decoder produces: one per shipped ABI, plus ERC-20 transfers
# (`analytics` events come from the alerts asset, not the decoder)
DECODED_REGISTRIES: tuple[str, ...] = (*sorted(set(ABI_REGISTRIES.values())), "erc20")


@dataclass(frozen=True)
class EventColumn:
    """One column of `events`.

    Attributes:
        name: column name.
        sql: PostgreSQL type as `format_type()` spells it (also the type rows are cast to on
            insert).
        description: what the column holds.
        nullable: the table admits NULL.
        onchain: required of every on-chain event (the `events_onchain_fields` CHECK), though
            an `analytics` event leaves it NULL.
        generated: filled by the database (identity, defaults, retraction), never inserted.
        dtype: Polars type in the decoded frame; None when the decoder leaves the column out.
        checks: Pandera `Field` checks of the decoded frame (`ge`, `str_matches`, ...).
    """

    name: str
    sql: str
    description: str
    nullable: bool = True
    onchain: bool = False
    generated: bool = False
    dtype: type[pl.DataType] | None = None
    checks: Mapping[str, Any] = field(default_factory=dict)


def _col(
    name: str, sql: str, dtype: type[pl.DataType] | None, description: str, **kw: Any
) -> EventColumn:
    """An `EventColumn`; keywords other than nullable/onchain/generated are Pandera checks."""
    checks = {k: kw.pop(k) for k in list(kw) if k not in ("nullable", "onchain", "generated")}
    return EventColumn(name, sql, description, dtype=dtype, checks=checks, **kw)


STR, INT = pl.String, pl.Int64
# fmt: off
EVENTS_TABLE: tuple[EventColumn, ...] = (
    _col("id", "text", STR, "{chain_id}-{block_number}-{log_index} ({id}@{block_hash} once retracted)",
         nullable=False, unique=True, str_matches=r"^\d+-\d+-\d+$"),
    _col("seq", "bigint", None, "insert order: the event sensor's cursor", nullable=False,
         generated=True),
    _col("chain_id", "integer", INT, "EVM chain id", nullable=False, gt=0),
    _col("block_number", "bigint", INT, "block of the log", onchain=True, ge=0),
    _col("block_hash", "text", STR, "hash of that block", onchain=True, str_matches=HASH),
    _col("transaction_hash", "text", STR, "transaction that emitted the log", onchain=True,
         str_matches=HASH),
    _col("log_index", "integer", INT, "position of the log in its block", onchain=True, ge=0),
    _col("registry", "text", STR, "source: a registry of the `registries` table", nullable=False,
         isin=list(DECODED_REGISTRIES)),
    _col("event_type", "text", STR, "event name from the ABI (Registered, NewFeedback, Transfer, ...)",
         nullable=False),
    _col("agent_id", "bigint", INT, "8004 agent id", ge=0),
    _col("timestamp", "bigint", INT, "block time, Unix seconds", nullable=False, ge=0),
    # identity registry
    _col("owner", "text", STR, "agent owner", str_matches=ADDRESS),
    _col("token_uri", "text", STR, "agent URI (registration file)"),
    _col("metadata_key", "text", STR, "metadata key"),
    _col("metadata_value", "text", STR, "metadata value (text, or 0x-hex when not text)"),
    # reputation registry
    _col("client_address", "text", STR, "client giving the feedback", str_matches=ADDRESS),
    _col("feedback_index", "bigint", INT, "index of the feedback", ge=0),
    _col("score", "integer", INT, "feedback score", ge=0, le=255),
    _col("tag1", "text", STR, "first feedback tag"),
    _col("tag2", "text", STR, "second feedback tag"),
    _col("file_uri", "text", STR, "feedback file URI"),
    _col("file_hash", "text", STR, "feedback file digest", str_matches=HASH),
    # validation registry
    _col("validator_address", "text", STR, "validator", str_matches=ADDRESS),
    _col("request_hash", "text", STR, "validation request digest", str_matches=HASH),
    _col("response", "integer", INT, "validation response", ge=0),
    _col("response_uri", "text", STR, "validation response URI"),
    _col("response_hash", "text", STR, "validation response digest", str_matches=HASH),
    _col("tag", "text", STR, "validation tag"),
    # ERC-20 transfers (amount exact, in base units; text in the frame, as uint256 exceeds i64)
    _col("token_address", "text", STR, "ERC-20 contract", str_matches=ADDRESS),
    _col("from_address", "text", STR, "sender", str_matches=ADDRESS),
    _col("to_address", "text", STR, "recipient", str_matches=ADDRESS),
    _col("amount", "numeric(78,0)", STR, "amount in base units", str_matches=r"^[0-9]+$"),
    # analytics alerts
    _col("alert_id", "text", None, "alert of portfolios.yaml that fired"),
    _col("data", "jsonb", STR, "anything else the decoder or the alert carried (a JSON object)",
         nullable=False),
    # reorgs: a retracted row is renamed and marked; a retraction event points at it
    _col("retracted_at", "timestamp with time zone", None, "when a reorg retracted the event",
         generated=True),
    _col("retracts", "text", None, "the retracted event's id (retraction events only)"),
    _col("created_at", "timestamp with time zone", None, "insert time", nullable=False,
         generated=True),
)
# fmt: on

# column -> PostgreSQL type, in table order: what an insert writes
EVENT_COLUMNS: dict[str, str] = {c.name: c.sql for c in EVENTS_TABLE if not c.generated}
# columns the database fills; an event handed in with them keeps them out of the insert
GENERATED_COLUMNS: tuple[str, ...] = tuple(c.name for c in EVENTS_TABLE if c.generated)
# address columns: lowercased on insert, whatever the source wrote
ADDRESS_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in EVENTS_TABLE if c.checks.get("str_matches") == ADDRESS
)
# columns the decoded frame has, in table order
DECODED_COLUMNS: tuple[EventColumn, ...] = tuple(c for c in EVENTS_TABLE if c.dtype is not None)
# NOT NULL columns an event must carry (`id` is computed and `data` defaults when missing)
REQUIRED: tuple[str, ...] = tuple(
    c.name for c in EVENTS_TABLE if not (c.nullable or c.generated or c.name in ("id", "data"))
)
# required of every event but an `analytics` one
ONCHAIN_REQUIRED: tuple[str, ...] = tuple(c.name for c in EVENTS_TABLE if c.onchain)


@cache
def decoded_events_model(name: str = "ChainEventsModel") -> type[pa.DataFrameModel]:
    """The Pandera model of the frame `events/chain_events` decodes, built from `EVENTS_TABLE`.

    Strict: exactly the decoded columns, typed, with their checks. An on-chain column is never
    null in that frame though the table admits NULL for `analytics` events.

    Args:
        name: class name of the model (shown in validation errors).

    Returns:
        A `pandera.polars.DataFrameModel` subclass; the same one for the same name.
    """
    attrs: dict[str, Any] = {
        "__module__": __name__,
        "__doc__": "One row per event of interest: the columns of the PostgreSQL `events` table "
        "that the decoder fills (chainlake.events.columns). `data` is a JSON object.",
        "__annotations__": {c.name: c.dtype for c in DECODED_COLUMNS},
        "Config": type("Config", (), {"strict": True}),
    }
    for c in DECODED_COLUMNS:
        attrs[c.name] = pa.Field(
            nullable=c.nullable and not c.onchain, description=c.description, **c.checks
        )
    return type(name, (pa.DataFrameModel,), attrs)
