"""core/tokens: each tracked ERC-20's name, symbol, decimals and total supply at the day's close,
read from the chain (`eth_call` at the day's last block; see `chainlake/tokens.py` for the
non-standard tokens it tolerates).

chains.yaml lists the tokens to track; a `symbol` or `decimals` given there is an override:

- symbol: the override labels the token (in balances, prices, snapshots); the chain's symbol
  stays in `chain_symbol`. A token without either is labelled by its address.
- decimals: the chain's `decimals()` is used; an override is used only where the chain does
  not answer. An override that disagrees with the chain stops the asset with an error naming
  the chain, the token and both values: decimals scale every amount of the token, so a wrong
  value would make every balance and value of it wrong by a power of ten, silently. A token
  with neither stops the asset the same way (its amounts cannot be read).

A token without code at the day's close (not deployed yet) has a row with `has_code` false and
nothing read: no wallet can hold it yet, and `core/balances` leaves it out that day. The native
coin's entry (0xeeee…eeee) is not a contract and has no row.
"""

import time
from collections.abc import Sequence
from typing import Annotated, ClassVar

import dagster as dg
import pandera.polars as pa
import polars as pl

from assets.checks import require_schema
from assets.core.days import day_blocks
from assets.policies import PER_CHAIN_DAYS, TRANSIENT_RETRY
from assets.ranges import each_day, run_chain_days
from chainlake.config import ChainConfig
from chainlake.lake import DeltaStore
from chainlake.metadata import table_metadata
from chainlake.partitions import chain_day_partitions
from chainlake.rpc import NodeError, RpcError
from chainlake.schema import conform, empty, polars_schema, schema_metadata
from chainlake.tokens import MetadataReadError, TokenMetadata, read_token_metadata
from resources.rpc import RpcResource

KEY = dg.AssetKey(["core", "tokens"])
TABLE = "token_metadata"  # not "tokens": the serving catalog has a table of that name
ADDRESS = r"^0x[0-9a-f]{40}$"
NATIVE_TOKEN = "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
MAX_DECIMAL_38 = 10**38 - 1


class TokenMetadataError(ValueError):
    """A tracked token's decimals cannot be settled: the override disagrees with the chain, or
    neither gives any."""


class TokensModel(pa.DataFrameModel):
    """One row per tracked ERC-20 and day: what the chain answers at the day's last block, and
    the symbol and decimals the lake uses for it (an override from chains.yaml, else the
    chain's)."""

    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    date: pl.Date = pa.Field(description="UTC day of the row (the Delta partition column)")
    token_address: pl.String = pa.Field(
        str_matches=ADDRESS, description="ERC-20 contract address, lowercase 0x-hex"
    )
    block_number: pl.Int64 = pa.Field(ge=0, description="the day's last block, where it was read")
    has_code: pl.Boolean = pa.Field(
        description="the address holds code at that block; false: not deployed yet, nothing read"
    )
    name: pl.String = pa.Field(
        nullable=True,
        description="name() as string or bytes32; null when the token has none or it reverts",
    )
    symbol: pl.String = pa.Field(
        str_length={"min_value": 1},
        description="the token's label: the chains.yaml override, else the chain's symbol, "
        "else the address",
    )
    symbol_source: pl.String = pa.Field(
        isin=["override", "chain", "address"], description="where `symbol` comes from"
    )
    chain_symbol: pl.String = pa.Field(
        nullable=True, description="symbol() as string or bytes32; null when none or it reverts"
    )
    decimals: pl.Int32 = pa.Field(
        nullable=True,
        ge=0,
        le=77,
        description="decimals used for the token's amounts; null only for a token without "
        "code and without an override",
    )
    decimals_source: pl.String = pa.Field(
        nullable=True,
        isin=["chain", "override"],
        description="chain: decimals() answered (an override, if any, agrees); override: "
        "the chain did not answer and chains.yaml's value is used",
    )
    chain_decimals: pl.Int32 = pa.Field(
        nullable=True, ge=0, le=77, description="decimals() as answered; null when it reverts"
    )
    total_supply: Annotated[pl.Decimal, 38, 0] = pa.Field(
        nullable=True,
        ge=0,
        description="totalSupply() in base units at the day's close; null when it reverts or "
        "exceeds Decimal(38,0) (see total_supply_raw)",
    )
    total_supply_raw: pl.String = pa.Field(
        nullable=True,
        str_matches=r"^[0-9]+$",
        description="totalSupply() as a decimal string, exact for any uint256; null when it reverts",
    )

    class Config:
        strict = True
        unique: ClassVar[list[str]] = ["token_address", "date"]

    @pa.dataframe_check
    def deployed_tokens_have_decimals(cls, data: pa.PolarsData) -> pl.LazyFrame:  # type: ignore[misc]
        """A token with code has decimals, and decimals have a source."""
        return data.lazyframe.select(
            (~pl.col("has_code") | pl.col("decimals").is_not_null())
            & (pl.col("decimals").is_null() == pl.col("decimals_source").is_null())
        )

    @pa.dataframe_check
    def decimals_agree_with_chain(cls, data: pa.PolarsData) -> pl.LazyFrame:  # type: ignore[misc]
        """Where the chain answered decimals(), they are the decimals used."""
        return data.lazyframe.select(
            pl.col("chain_decimals").is_null() | (pl.col("decimals") == pl.col("chain_decimals"))
        )

    @pa.dataframe_check
    def sources_say_where_values_come_from(cls, data: pa.PolarsData) -> pl.LazyFrame:  # type: ignore[misc]
        """A `chain` source has a chain value equal to the one used; an `override` decimals
        source has no chain value."""
        return data.lazyframe.select(
            ((pl.col("symbol_source") != "chain") | (pl.col("symbol") == pl.col("chain_symbol")))
            & (
                pl.col("decimals_source").eq_missing("chain")
                == pl.col("chain_decimals").is_not_null()
            )
        )


def tokens_frame(
    chain: ChainConfig, day, block: int, metadata: Sequence[TokenMetadata]
) -> pl.DataFrame:
    """Pure transform: what the chain answered for the tracked tokens → core/tokens rows.
    A token without code gets a row with nothing read but its overrides. Raises TokenMetadataError naming the chain and token
    when an override disagrees with the chain's decimals or no decimals are known."""
    overrides = {t.address: t for t in chain.tokens}
    rows = []
    problems = []
    for m in metadata:
        cfg = overrides.get(m.address)
        label = f"token {(cfg and cfg.symbol) or m.symbol or m.address} ({m.address})"
        override = cfg.decimals if cfg is not None else None
        if not m.has_code:
            rows.append(
                {
                    "chain_id": chain.chain_id,
                    "date": day,
                    "token_address": m.address,
                    "block_number": block,
                    "has_code": False,
                    "symbol": (cfg and cfg.symbol) or m.address,
                    "symbol_source": "override" if cfg and cfg.symbol else "address",
                    "decimals": override,
                    "decimals_source": None if override is None else "override",
                }
            )
            continue
        if m.decimals is not None and override is not None and override != m.decimals:
            problems.append(
                f"{label}: decimals override {override} in chains.yaml disagrees with the "
                f"chain's decimals() = {m.decimals} at block {block}; fix or remove the override"
            )
            continue
        if m.decimals is None and override is None:
            problems.append(
                f"{label}: decimals() does not answer at block {block} and chains.yaml gives "
                "no decimals; add `decimals:` to the token's entry"
            )
            continue
        if cfg is not None and cfg.symbol:
            symbol, symbol_source = cfg.symbol, "override"
        elif m.symbol:
            symbol, symbol_source = m.symbol, "chain"
        else:
            symbol, symbol_source = m.address, "address"
        supply = m.total_supply
        rows.append(
            {
                "chain_id": chain.chain_id,
                "date": day,
                "token_address": m.address,
                "block_number": block,
                "has_code": True,
                "name": m.name,
                "symbol": symbol,
                "symbol_source": symbol_source,
                "chain_symbol": m.symbol,
                "decimals": m.decimals if m.decimals is not None else override,
                "decimals_source": "chain" if m.decimals is not None else "override",
                "chain_decimals": m.decimals,
                "total_supply": supply if supply is not None and supply <= MAX_DECIMAL_38 else None,
                "total_supply_raw": None if supply is None else str(supply),
            }
        )
    if problems:
        raise TokenMetadataError(f"chain {chain.name!r}: " + "; ".join(problems))
    if not rows:
        return empty(TokensModel)
    frame = pl.DataFrame(
        [{c: r.get(c) for c in COLUMNS} for r in rows],
        schema={c: ROW_TYPES.get(c, t) for c, t in polars_schema(TokensModel).items()},
    )
    return conform(frame, TokensModel).sort("token_address")


COLUMNS = list(TokensModel.to_schema().columns)
ROW_TYPES = {"total_supply": pl.Int128()}  # an int too wide for Decimal(38,0) is nulled before


def tracked_token_addresses(chain: ChainConfig) -> list[str]:
    """The chain's tracked ERC-20 addresses (the native coin's entry left out)."""
    return [t.address for t in chain.tokens if t.address != NATIVE_TOKEN]


@dg.asset(
    key=KEY,
    deps=[dg.AssetKey(["raw", "blocks"])],
    partitions_def=chain_day_partitions,
    group_name="core",
    kinds={"delta", "polars"},
    check_specs=[dg.AssetCheckSpec("schema", asset=KEY, blocking=True)],
    description="One row per tracked ERC-20 and day: name, symbol, decimals and total supply "
    "read from the chain at the day's last block.",
    metadata={"table": TABLE, **schema_metadata(TokensModel)},
    backfill_policy=PER_CHAIN_DAYS,
    retry_policy=TRANSIENT_RETRY,
)
def tokens(
    context: dg.AssetExecutionContext, delta: dg.ResourceParam[DeltaStore], rpc: RpcResource
):
    """Write each chain-day's token metadata of the run, read from the node at the day's close."""
    yield from each_day(
        context, run_chain_days(context), lambda chain, day: _one_day(delta, rpc, chain, day)
    )


def _one_day(delta: DeltaStore, rpc: RpcResource, chain: ChainConfig, day):
    started = time.monotonic()
    addresses = tracked_token_addresses(chain)
    blocks = day_blocks(delta, chain, day) if addresses else None
    df = empty(TokensModel)
    absent: list[str] = []
    if blocks is not None:
        close = blocks[1]
        try:
            metadata = read_token_metadata(rpc.client(chain), addresses, close)
            df = tokens_frame(chain, day, close, metadata)
        except TokenMetadataError as e:
            raise dg.Failure(description=f"{chain.name} {day}: {e}", allow_retries=False) from e
        except (MetadataReadError, RpcError) as e:
            raise dg.Failure(
                description=f"{chain.name} {day}: the node cannot report token metadata at "
                f"block {close} ({e}); it must keep the state of the days being materialised",
                allow_retries=False,
            ) from e
        except NodeError as e:
            raise dg.Failure(description=f"{chain.name} {day}: {e}", allow_retries=False) from e
        absent = df.filter(~pl.col("has_code"))["token_address"].to_list()
    schema = yield from require_schema(TokensModel, df, f"{chain.name} {day}: tokens")
    version = delta.replace_day(chain, TABLE, day, df)
    yield dg.MaterializeResult(
        metadata=table_metadata(
            rows_written=df.height,
            seconds=time.monotonic() - started,
            preview_frame=df.head(10),
            version=version,
            tracked=len(addresses),
            not_deployed=", ".join(absent) or None,
            decimals_from_override=", ".join(
                df.filter(pl.col("decimals_source") == "override")["symbol"].to_list()
            )
            or None,
            symbol_overrides_differing=", ".join(
                f"{r['symbol']} (chain: {r['chain_symbol']})"
                for r in df.filter(
                    (pl.col("symbol_source") == "override")
                    & pl.col("chain_symbol").is_not_null()
                    & (pl.col("symbol") != pl.col("chain_symbol"))
                ).iter_rows(named=True)
            )
            or None,
        )
    )
    yield schema
