"""core/nft_transfers: decoded ERC-721 and ERC-1155 transfers, one row per token id moved.

- ERC-721 `Transfer(address indexed from, address indexed to, uint256 indexed tokenId)`: the
  same topic0 as ERC-20's Transfer but four topics (the token id indexed) and no data; an
  amount of 1. `core/token_transfers` keeps the three-topic (ERC-20) form.
- ERC-1155 `TransferSingle(operator, from, to, id, value)`: one row.
- ERC-1155 `TransferBatch(operator, from, to, ids[], values[])`: one row per id, in the
  event's order (`batch_index`).

Token ids are uint256 identifiers (often hashes), kept exactly as decimal strings; amounts are
exact Decimal(38,0) with the full value in `amount_raw`. Mints come from and burns go to the
zero address. A log that does not have its standard's shape (wrong topic count, data of the
wrong length, a batch whose arrays differ in length or overrun the data) is not a transfer of
either standard and is left out; the asset's metadata counts them.
"""

import time
from typing import Annotated, ClassVar

import dagster as dg
import pandera.polars as pa
import polars as pl

from assets.checks import require_schema
from assets.policies import PER_CHAIN_DAYS, TRANSIENT_RETRY
from assets.ranges import each_day, run_chain_days
from chainlake.lake import DeltaStore
from chainlake.metadata import table_metadata
from chainlake.partitions import chain_day_partitions
from chainlake.raw.logs import LogsModel
from chainlake.schema import conform, polars_schema, schema_metadata

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
TRANSFER_SINGLE_TOPIC = "0xc3d58168c5ae7397731d063d5bbf3d657854427343f4c083240f7aacaa2d0f62"
TRANSFER_BATCH_TOPIC = "0x4a39dc06d4c0dbc64b70af90fd698a233a518aa5d07e595d983b8c0526c8f7fb"
MAX_DECIMAL_38 = 10**38 - 1
KEY = dg.AssetKey(["core", "nft_transfers"])
TABLE = "nft_transfers"
ADDRESS = r"^0x[0-9a-f]{40}$"
DIGITS = r"^[0-9]+$"


class NftTransfersModel(pa.DataFrameModel):
    """One row per token id moved by an ERC-721 Transfer or an ERC-1155 TransferSingle /
    TransferBatch log (a batch gives one row per id)."""

    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    date: pl.Date = pa.Field(description="UTC day of the row (the Delta partition column)")
    block_number: pl.Int64 = pa.Field(ge=0, description="number of the block holding the log")
    block_hash: pl.String = pa.Field(description="hash of the block, lowercase 0x-hex")
    block_timestamp: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(
        description="time of the block, UTC"
    )
    transaction_hash: pl.String = pa.Field(description="hash of the transaction, lowercase 0x-hex")
    transaction_index: pl.Int32 = pa.Field(description="position of the transaction in its block")
    log_index: pl.Int32 = pa.Field(ge=0, description="position of the log in its block")
    batch_index: pl.Int32 = pa.Field(
        ge=0, description="position of the id in a TransferBatch's arrays; 0 otherwise"
    )
    standard: pl.String = pa.Field(isin=["erc721", "erc1155"], description="token standard")
    event: pl.String = pa.Field(
        isin=["Transfer", "TransferSingle", "TransferBatch"], description="the decoded event"
    )
    token_address: pl.String = pa.Field(
        str_matches=ADDRESS, description="the NFT contract (the log's address), lowercase 0x-hex"
    )
    operator: pl.String = pa.Field(
        nullable=True,
        str_matches=ADDRESS,
        description="ERC-1155: the account that made the transfer; null for ERC-721",
    )
    from_address: pl.String = pa.Field(
        str_matches=ADDRESS, description="sender; the zero address for a mint"
    )
    to_address: pl.String = pa.Field(
        str_matches=ADDRESS, description="recipient; the zero address for a burn"
    )
    token_id: pl.String = pa.Field(
        str_matches=DIGITS, description="token id as a decimal string, exact for any uint256"
    )
    amount: Annotated[pl.Decimal, 38, 0] = pa.Field(
        ge=0,
        nullable=True,
        description="units of the id moved (1 for ERC-721), exact; null when it exceeds "
        "Decimal(38,0) (see amount_raw)",
    )
    amount_raw: pl.String = pa.Field(
        str_matches=DIGITS, description="units moved as a decimal string, exact for any uint256"
    )

    class Config:
        strict = True
        unique: ClassVar[list[str]] = ["block_number", "log_index", "batch_index"]

    @pa.dataframe_check
    def standard_matches_event(cls, data: pa.PolarsData) -> pl.LazyFrame:  # type: ignore[misc]
        """ERC-721 rows are Transfer events of one unit without an operator; ERC-1155 rows
        are TransferSingle/TransferBatch with an operator; only a batch has batch_index > 0."""
        erc721 = pl.col("standard") == "erc721"
        return data.lazyframe.select(
            pl.when(erc721)
            .then(
                (pl.col("event") == "Transfer")
                & (pl.col("amount_raw") == "1")
                & pl.col("operator").is_null()
            )
            .otherwise(pl.col("event").is_in(["TransferSingle", "TransferBatch"]))
            & ((pl.col("batch_index") == 0) | (pl.col("event") == "TransferBatch"))
            & (erc721 | pl.col("operator").is_not_null())
        )


def _words(data: str) -> list[int] | None:
    """The 32-byte words of 0x-hex data; None when it is not whole words."""
    body = data[2:]
    if len(body) % 64:
        return None
    return [int(body[i : i + 64], 16) for i in range(0, len(body), 64)]


def decode_batch(data: str) -> list[tuple[int, int]] | None:
    """(id, value) pairs of a TransferBatch's data `(uint256[] ids, uint256[] values)`; None when
    malformed (offsets or lengths out of range, arrays of different lengths)."""
    words = _words(data)
    if words is None or len(words) < 4:
        return None
    n = len(words)

    def array(offset_bytes: int) -> list[int] | None:
        if offset_bytes % 32:
            return None
        start = offset_bytes // 32
        if start >= n:
            return None
        length = words[start]
        if start + 1 + length > n:
            return None
        return words[start + 1 : start + 1 + length]

    ids, values = array(words[0]), array(words[1])
    if ids is None or values is None or len(ids) != len(values):
        return None
    return list(zip(ids, values, strict=True))


def _address(topic: str | None) -> str | None:
    if topic is None or len(topic) != 66 or topic[2:26].strip("0"):
        return None  # an address topic is 12 zero bytes and 20 address bytes
    return "0x" + topic[26:]


def nft_transfers_frame(logs: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Pure transform: raw/logs rows → NFT transfer rows, and the number of candidate logs
    (right topic0) left out as malformed."""
    candidates = logs.filter(
        pl.col("topic0").is_in([TRANSFER_SINGLE_TOPIC, TRANSFER_BATCH_TOPIC])
        | ((pl.col("topic0") == TRANSFER_TOPIC) & pl.col("topic3").is_not_null())
    ).sort("block_number", "log_index")
    rows = []
    malformed = 0
    for r in candidates.iter_rows(named=True):
        base = {k: r[k] for k in BASE_COLUMNS}
        base["token_address"] = r["address"]
        pairs: list[tuple[int, int]] | None
        if r["topic0"] == TRANSFER_TOPIC:
            frm, to = _address(r["topic1"]), _address(r["topic2"])
            ok = frm is not None and to is not None and r["data"] in ("0x", "")
            if not ok:
                malformed += 1
                continue
            standard, event, operator = "erc721", "Transfer", None
            pairs = [(int(r["topic3"], 16), 1)]
        else:
            operator, frm, to = (_address(r[t]) for t in ("topic1", "topic2", "topic3"))
            if operator is None or frm is None or to is None:
                malformed += 1
                continue
            standard = "erc1155"
            if r["topic0"] == TRANSFER_SINGLE_TOPIC:
                event = "TransferSingle"
                words = _words(r["data"])
                pairs = [(words[0], words[1])] if words is not None and len(words) == 2 else None
            else:
                event = "TransferBatch"
                pairs = decode_batch(r["data"])
            if pairs is None:
                malformed += 1
                continue
        for i, (token_id, amount) in enumerate(pairs):
            rows.append(
                {
                    **base,
                    "batch_index": i,
                    "standard": standard,
                    "event": event,
                    "operator": operator,
                    "from_address": frm,
                    "to_address": to,
                    "token_id": str(token_id),
                    "amount": amount if amount <= MAX_DECIMAL_38 else None,
                    "amount_raw": str(amount),
                }
            )
    schema = dict(polars_schema(NftTransfersModel)) | {"amount": pl.Int128()}
    frame = pl.DataFrame([{c: row[c] for c in schema} for row in rows], schema=schema)
    return conform(frame, NftTransfersModel), malformed


BASE_COLUMNS = (
    "chain_id",
    "date",
    "block_number",
    "block_hash",
    "block_timestamp",
    "transaction_hash",
    "transaction_index",
    "log_index",
)


@dg.asset(
    key=KEY,
    deps=[dg.AssetKey(["raw", "logs"])],
    partitions_def=chain_day_partitions,
    group_name="core",
    kinds={"delta", "polars"},
    check_specs=[dg.AssetCheckSpec("schema", asset=KEY, blocking=True)],
    description="One row per token id moved by an ERC-721 Transfer or ERC-1155 "
    "TransferSingle/TransferBatch event of the chain-day, ids and amounts exact.",
    metadata={"table": TABLE, **schema_metadata(NftTransfersModel)},
    backfill_policy=PER_CHAIN_DAYS,
    retry_policy=TRANSIENT_RETRY,
)
def nft_transfers(context: dg.AssetExecutionContext, delta: dg.ResourceParam[DeltaStore]):
    """Write each chain-day's NFT transfers of the run, decoded from raw/logs."""
    yield from each_day(
        context, run_chain_days(context), lambda chain, day: _one_day(delta, chain, day)
    )


def _one_day(delta: DeltaStore, chain, day):
    started = time.monotonic()
    logs = delta.read_day(chain, "logs", day, schema=polars_schema(LogsModel))
    df, malformed = nft_transfers_frame(logs)
    schema = yield from require_schema(NftTransfersModel, df, f"{chain.name} {day}: NFT transfers")
    version = delta.replace_day(chain, TABLE, day, df)
    yield dg.MaterializeResult(
        metadata=table_metadata(
            rows_written=df.height,
            seconds=time.monotonic() - started,
            preview_frame=df.head(5),
            version=version,
            erc721_rows=df.filter(pl.col("standard") == "erc721").height,
            erc1155_rows=df.filter(pl.col("standard") == "erc1155").height,
            contracts=df["token_address"].n_unique(),
            malformed_logs_left_out=malformed,
        )
    )
    yield schema
