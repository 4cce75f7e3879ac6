"""serving/catalog and serving/views: the DuckDB catalog (wallets, nodes, tokens, portfolios, alerts) and the views
over the Delta tables for ad-hoc SQL.

serving/catalog loads `config/portfolios.yaml` and `config/chains.yaml` into the tables
`wallets`, `nodes`, `tokens`, `portfolios`, `portfolio_wallets` and `alerts`, idempotently:
ids are derived from each entry's natural key, rows are upserted (`updated_at` moves only when
a row changes; an alert's `last_triggered_at` and `trigger_count` and a node's measured
`is_active` are kept), and entries gone
from the files are deleted. An invalid entry fails the load with an error naming it, before
anything is written.

serving/views (re)creates the views over the lake: `<chain>_<table>` for every Delta table of
every chain (`devnet_blocks`), `<table>` over every chain (`blocks`, `balances`, ...), and
`wallet_balances_view` (each tracked wallet's latest balance per token) and
`recent_transactions_view` (native and token transfers touching tracked wallets in the last 7
days of data). They read `delta_scan(chainlake_table('<network>/<subnet>/<table>'))`: the
location is relative to the lake root a session sets (`resources.duckdb.set_lake_root`), so the
file holds no absolute path of the machine that wrote it. `chainlake sql` creates the same
lake views as temporary views at start-up (the lake as it is now), over the file's.

Both write through `ServingDuckDB.writer()` (a private copy renamed over the published file)
under the `duckdb` pool: readers never wait for the writer, and the writer never fails on a
reader's lock.
"""

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import orjson
import pandera.polars as pa
import polars as pl
from duckdb import DuckDBPyConnection

from assets.checks import require_schema
from assets.core.balances import NATIVE_TOKEN, BalancesModel
from assets.core.contracts import TABLE as CONTRACTS_TABLE
from assets.core.contracts import ContractsModel
from assets.core.native_transfers import NativeTransfersModel
from assets.core.nft_transfers import TABLE as NFT_TABLE
from assets.core.nft_transfers import NftTransfersModel
from assets.core.token_prices import TokenPricesModel
from assets.core.token_transfers import TokenTransfersModel
from assets.core.tokens import TABLE as TOKENS_TABLE
from assets.core.tokens import TokensModel as TokenMetadataModel
from chainlake.config import ChainConfig, load_chains
from chainlake.extract import RAW_TABLES
from chainlake.lake import DeltaStore
from chainlake.metadata import table_metadata
from chainlake.portfolios import PortfolioBook, load_portfolios, stable_id
from chainlake.schema import conform, polars_schema, schema_metadata
from resources.duckdb import LAKE_MACRO, ServingDuckDB, duckdb_type, lake_macro_sql, quote

CATALOG = dg.AssetKey(["serving", "catalog"])
VIEWS = dg.AssetKey(["serving", "views"])
ADDRESS = r"^0x[0-9a-f]{40}$"
UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
RECENT_DAYS = 7
SQL_DIR = Path(__file__).parent / "sql"


class WalletsModel(pa.DataFrameModel):
    """One row per tracked wallet (Ekko's `wallets`)."""

    id: pl.String = pa.Field(
        str_matches=UUID_RE,
        unique=True,
        description="stable UUID derived from the chain and address",
    )
    name: pl.String = pa.Field(unique=True, description="wallet name from portfolios.yaml")
    address: pl.String = pa.Field(
        str_matches=ADDRESS, description="wallet address, lowercase 0x-hex"
    )
    network: pl.String = pa.Field(
        description="network of the wallet's chain (folder under DELTA_ROOT)"
    )
    subnet: pl.String = pa.Field(
        description="subnet of the wallet's chain (folder under the network)"
    )
    chain: pl.String = pa.Field(description="chain name from chains.yaml")
    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    kind: pl.String = pa.Field(isin=["eoa", "contract"], description="eoa or contract")
    is_active: pl.Boolean = pa.Field(description="whether the wallet is tracked")

    class Config:
        strict = True
        unique: ClassVar[list[str]] = ["chain", "address"]


class NodesModel(pa.DataFrameModel):
    """One row per RPC endpoint of a chain (Ekko's `nodes`), in failover order."""

    id: pl.String = pa.Field(
        str_matches=UUID_RE,
        unique=True,
        description="stable UUID derived from the chain, position and URL",
    )
    name: pl.String = pa.Field(description="chain name and position, e.g. devnet #0")
    chain: pl.String = pa.Field(description="chain name from chains.yaml")
    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    network: pl.String = pa.Field(description="network of the chain")
    subnet: pl.String = pa.Field(description="subnet of the chain")
    vmtype: pl.String = pa.Field(description="virtual machine type (evm)")
    rpc_url: pl.String = pa.Field(description="credentials in the URL are masked")
    priority: pl.Int32 = pa.Field(ge=0, description="0 is tried first")
    is_active: pl.Boolean = pa.Field(
        description="whether the node is healthy: in rotation and its latest round trip "
        "succeeded, as livestate_sensor measures it (with NATS_URL set); true until measured, "
        "and kept when the catalog is loaded again"
    )

    class Config:
        strict = True
        unique: ClassVar[list[str]] = ["chain", "rpc_url"]


class TokensModel(pa.DataFrameModel):
    """One row per token of a chain, the native coin included (YieldSensei's `assets`)."""

    id: pl.String = pa.Field(
        str_matches=UUID_RE,
        unique=True,
        description="stable UUID derived from the chain and contract address",
    )
    symbol: pl.String = pa.Field(
        description="token symbol from chains.yaml, else the address (the chain's symbol is in "
        "the lake's token_metadata)"
    )
    name: pl.String = pa.Field(description="token name (the symbol)")
    asset_type: pl.String = pa.Field(
        isin=["native", "erc20"], description="native for the chain's coin, erc20 otherwise"
    )
    token_address: pl.String = pa.Field(
        str_matches=ADDRESS, description="ERC-20 contract; 0xeeee…eeee for the native coin"
    )
    chain: pl.String = pa.Field(description="chain name from chains.yaml")
    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    decimals: pl.Int32 = pa.Field(
        ge=0,
        le=77,
        nullable=True,
        description="decimals override from chains.yaml; null when read from the chain (the "
        "lake's token_metadata)",
    )
    price_feed: pl.String = pa.Field(
        str_matches=ADDRESS,
        nullable=True,
        description="price feed contract, lowercase 0x-hex; null when unpriced",
    )
    feed_decimals: pl.Int32 = pa.Field(
        nullable=True, description="decimals of the feed's answer; null when unpriced"
    )
    is_active: pl.Boolean = pa.Field(description="whether the token is tracked")

    class Config:
        strict = True
        unique: ClassVar[list[str]] = ["chain_id", "symbol"]


class PortfoliosModel(pa.DataFrameModel):
    """One row per portfolio (YieldSensei's and Quant-Bot's `portfolios`)."""

    portfolio_id: pl.String = pa.Field(unique=True, description="portfolio id from portfolios.yaml")
    name: pl.String = pa.Field(description="portfolio name")
    description: pl.String = pa.Field(nullable=True, description="free text from portfolios.yaml")
    chain: pl.String = pa.Field(
        description="home chain (chains.yaml): the chain whose days hold its snapshots and risk; "
        "its wallets may also be on others (portfolio_wallets.chain)"
    )
    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the home chain")
    risk_profile: pl.String = pa.Field(
        isin=["conservative", "moderate", "aggressive", "custom"],
        description="conservative, moderate, aggressive or custom",
    )
    target_allocation: pl.List(pl.Struct({"key": pl.String, "value": pl.Float64})) = pa.Field(  # type: ignore[valid-type]
        description="token symbol -> target share of the portfolio's value"
    )
    is_active: pl.Boolean = pa.Field(description="whether the portfolio is valued")

    class Config:
        strict = True


class PortfolioWalletsModel(pa.DataFrameModel):
    """One row per wallet of a portfolio."""

    portfolio_id: pl.String = pa.Field(description="portfolio id from portfolios.yaml")
    wallet_id: pl.String = pa.Field(
        str_matches=UUID_RE, description="id of the wallet (wallets.id)"
    )
    address: pl.String = pa.Field(
        str_matches=ADDRESS, description="wallet address, lowercase 0x-hex"
    )
    chain: pl.String = pa.Field(description="the wallet's chain (chains.yaml)")

    class Config:
        strict = True
        unique: ClassVar[list[str]] = ["portfolio_id", "wallet_id"]


class AlertsModel(pa.DataFrameModel):
    """One row per alert (Ekko's `alerts`)."""

    id: pl.String = pa.Field(
        str_matches=UUID_RE, unique=True, description="stable UUID derived from the alert's name"
    )
    name: pl.String = pa.Field(unique=True, description="alert name, unique")
    description: pl.String = pa.Field(nullable=True, description="free text from portfolios.yaml")
    natural_language_query: pl.String = pa.Field(
        description="the alert as the user asked for it, in words"
    )
    expression: pl.String = pa.Field(
        nullable=True,
        description="the alert's condition (a Polars expression, as Ekko's `polars_dsl`)",
    )
    parameters: pl.String = pa.Field(description="JSON object")
    is_active: pl.Boolean = pa.Field(description="whether the alert is evaluated")

    class Config:
        strict = True


class CatalogTable:
    """A catalog table: its model, key, DuckDB-only column types, columns the pipeline
    does not own (kept across loads) and model columns set for new rows only (`kept`)."""

    def __init__(
        self,
        name: str,
        model: type[pa.DataFrameModel],
        key: Sequence[str],
        *,
        types: Mapping[str, str] | None = None,
        runtime: Mapping[str, str] | None = None,
        kept: Sequence[str] = (),
    ) -> None:
        self.name, self.model, self.key = name, model, tuple(key)
        self.types = dict(types or {})
        self.runtime = dict(runtime or {})
        # model columns a load sets for new rows only (measured state, e.g. node health)
        self.kept = tuple(kept)

    def columns(self) -> dict[str, str]:
        """The model's columns with their DuckDB types (`NOT NULL` unless nullable)."""
        cols = model_columns(self.model)
        return {
            name: self.types.get(name, duckdb_type(t)) + ("" if nullable else " NOT NULL")
            for name, (t, nullable) in cols.items()
        }

    def create_sql(self) -> str:
        """The table's `CREATE TABLE IF NOT EXISTS` statement."""
        cols = [f"{quote(n)} {t}" for n, t in self.columns().items()]
        cols += [f"{quote(n)} {t}" for n, t in self.runtime.items()]
        cols += [
            "created_at TIMESTAMPTZ NOT NULL DEFAULT now()",
            "updated_at TIMESTAMPTZ NOT NULL DEFAULT now()",
            f"PRIMARY KEY ({', '.join(quote(k) for k in self.key)})",
        ]
        body = ",\n    ".join(cols)
        return f"CREATE TABLE IF NOT EXISTS {quote(self.name)} (\n    {body}\n)"

    def derived(self) -> bool:
        """Whether every column comes from the config files (no runtime or kept columns): a
        table with other columns than the model's can then be replaced without losing state."""
        return not self.runtime and not self.kept

    def expected_columns(self) -> list[str]:
        """Every column the table should have, in order, runtime and timestamp columns included."""
        return [*self.columns(), *self.runtime, "created_at", "updated_at"]


def model_columns(model: type[pa.DataFrameModel]) -> dict[str, tuple[pl.DataType, bool]]:
    """Each column of a Pandera model: its Polars type and whether it is nullable."""
    return {n: (c.dtype.type, bool(c.nullable)) for n, c in model.to_schema().columns.items()}


TABLES = (
    CatalogTable("wallets", WalletsModel, ["id"], types={"id": "UUID"}),
    CatalogTable("nodes", NodesModel, ["id"], types={"id": "UUID"}, kept=["is_active"]),
    CatalogTable("tokens", TokensModel, ["id"], types={"id": "UUID"}),
    CatalogTable("portfolios", PortfoliosModel, ["portfolio_id"]),
    CatalogTable(
        "portfolio_wallets",
        PortfolioWalletsModel,
        ["portfolio_id", "wallet_id"],
        types={"wallet_id": "UUID"},
    ),
    CatalogTable(
        "alerts",
        AlertsModel,
        ["id"],
        types={"id": "UUID", "parameters": "JSON NOT NULL"},
        runtime={"last_triggered_at": "TIMESTAMPTZ", "trigger_count": "INTEGER NOT NULL DEFAULT 0"},
    ),
)


# -- pure transforms ------------------------------------------------------------------------


def _uuid(kind: str, key: str) -> str:
    return str(stable_id(kind, key))


def _mask(url: str) -> str:
    """An RPC URL without its password or query string (API keys live there)."""
    u = urlsplit(url)
    host = u.hostname or ""
    if u.port:
        host = f"{host}:{u.port}"
    if u.username:
        host = f"{u.username}:***@{host}" if u.password else f"{u.username}@{host}"
    return urlunsplit((u.scheme, host, u.path, "***" if u.query else "", ""))


def catalog_frames(
    book: PortfolioBook, chains: Mapping[str, ChainConfig]
) -> dict[str, pl.DataFrame]:
    """Pure transform: the validated config files → one frame per catalog table."""
    wallets = [
        {
            "id": str(w.id),
            "name": w.name,
            "address": w.address,
            "network": chains[w.chain].network,
            "subnet": chains[w.chain].subnet,
            "chain": w.chain,
            "chain_id": chains[w.chain].chain_id,
            "kind": w.kind,
            "is_active": w.active,
        }
        for w in book.wallets
    ]
    nodes = [
        {
            "id": _uuid("node", f"{c.name}:{i}:{url}"),
            "name": f"{c.name} #{i}",
            "chain": c.name,
            "chain_id": c.chain_id,
            "network": c.network,
            "subnet": c.subnet,
            "vmtype": "evm",
            "rpc_url": _mask(url),
            "priority": i,
            "is_active": True,
        }
        for c in chains.values()
        for i, url in enumerate(c.rpc_urls)
    ]
    tokens = []
    for c in chains.values():
        native_feed = next((t for t in c.tokens if t.address == NATIVE_TOKEN), None)
        tokens.append(
            {
                "id": _uuid("token", f"{c.name}:{NATIVE_TOKEN}"),
                "symbol": c.native_symbol,
                "name": c.native_symbol,
                "asset_type": "native",
                "token_address": NATIVE_TOKEN,
                "chain": c.name,
                "chain_id": c.chain_id,
                "decimals": c.native_decimals,
                "price_feed": native_feed.price_feed if native_feed else None,
                "feed_decimals": native_feed.price_feed_decimals if native_feed else None,
                "is_active": True,
            }
        )
        tokens += [
            {
                "id": _uuid("token", f"{c.name}:{t.address}"),
                "symbol": t.symbol or t.address,
                "name": t.symbol or t.address,
                "asset_type": "erc20",
                "token_address": t.address,
                "chain": c.name,
                "chain_id": c.chain_id,
                "decimals": t.decimals,
                "price_feed": t.price_feed,
                "feed_decimals": t.price_feed_decimals if t.price_feed else None,
                "is_active": True,
            }
            for t in c.tokens
            if t.address != NATIVE_TOKEN
        ]
    portfolios = [
        {
            "portfolio_id": p.id,
            "name": p.name,
            "description": p.description,
            "chain": p.chain,
            "chain_id": chains[p.chain].chain_id if p.chain else None,
            "risk_profile": p.risk_profile,
            "target_allocation": [
                {"key": k, "value": v} for k, v in sorted(p.target_allocation.items())
            ],
            "is_active": p.active,
        }
        for p in book.portfolios
    ]
    wallet_ids = {(w.chain, w.address): str(w.id) for w in book.wallets}
    # each wallet on its own chain: a portfolio's wallets may span chains (its `chain` above is
    # its home chain)
    members = [
        {"portfolio_id": p.id, "wallet_id": wallet_ids[(c, a)], "address": a, "chain": c}
        for p in book.portfolios
        for c, a in book.members[p.id]
    ]
    alerts = [
        {
            "id": str(a.id),
            "name": a.name,
            "description": a.description,
            "natural_language_query": a.query,
            "expression": a.expression,
            "parameters": orjson.dumps(a.parameters, option=orjson.OPT_SORT_KEYS).decode(),
            "is_active": a.active,
        }
        for a in book.alerts
    ]
    rows: dict[str, list[dict[str, Any]]] = {
        "wallets": wallets,
        "nodes": nodes,
        "tokens": tokens,
        "portfolios": portfolios,
        "portfolio_wallets": members,
        "alerts": alerts,
    }
    return {
        t.name: conform(pl.DataFrame(rows[t.name], schema=polars_schema(t.model)), t.model)
        for t in TABLES
    }


# -- writing the catalog --------------------------------------------------------------------


class CatalogSchemaMismatch(RuntimeError):
    """A catalog table's columns differ from its model."""


def _insert_expr(name: str, sql_type: str) -> str:
    if sql_type.startswith("MAP("):
        return f"map_from_entries({quote(name)})"
    return quote(name)


def _table_columns(conn: DuckDBPyConnection, name: str) -> list[str]:
    """The columns of a table of the file, in order."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position",
            [name],
        ).fetchall()
    ]


def _not_null_columns(conn: DuckDBPyConnection, name: str) -> set[str]:
    """The columns of a table of the file declared NOT NULL."""
    return {
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "AND is_nullable = 'NO'",
            [name],
        ).fetchall()
    }


def sync_table(
    conn: DuckDBPyConnection, table: CatalogTable, frame: pl.DataFrame
) -> dict[str, int]:
    """Make the table hold exactly `frame`'s rows (by key), keeping runtime columns, the
    table's `kept` columns of existing rows and `created_at`; `updated_at` changes only for
    rows whose values changed. A table whose columns differ from its model's is replaced
    when it holds only config-derived columns (`CatalogTable.derived`), else an error."""
    conn.execute(table.create_sql())
    have = _table_columns(conn, table.name)
    # a column the model lets be null but the file's table does not (tokens.decimals, null
    # since decimals are read from the chain) needs the table created anew as well
    now_nullable = {n for n, (_, nullable) in model_columns(table.model).items() if nullable}
    if (
        have != table.expected_columns() or now_nullable & _not_null_columns(conn, table.name)
    ) and table.derived():
        # Every column comes from the config files (e.g. tokens after a column rename): the
        # table is dropped and created anew, then filled below; only created_at restarts.
        conn.execute(f"DROP TABLE {quote(table.name)}")
        conn.execute(table.create_sql())
        have = _table_columns(conn, table.name)
    if have != table.expected_columns():
        raise CatalogSchemaMismatch(
            f"DuckDB table {table.name!r} has columns {have}, its model wants "
            f"{table.expected_columns()}; drop the table (serving/catalog rebuilds it)"
        )
    cols = table.columns()
    incoming = f"incoming_{table.name}"
    conn.register(incoming, frame.to_arrow())
    try:
        key = ", ".join(quote(k) for k in table.key)
        deleted = conn.execute(
            f"DELETE FROM {quote(table.name)} WHERE ({key}) NOT IN "  # noqa: S608 (quoted identifiers)
            f"(SELECT ({', '.join(f'CAST({quote(k)} AS {cols[k].split()[0]})' for k in table.key)}) "
            f"FROM {quote(incoming)})"
        ).fetchone()
        names = ", ".join(quote(n) for n in cols)
        values = ", ".join(_insert_expr(n, t) for n, t in cols.items())
        others = [n for n in cols if n not in table.key and n not in table.kept]
        if others:
            sets = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in others)
            old = ", ".join(f"CAST(t.{quote(n)} AS VARCHAR)" for n in others)
            new = ", ".join(f"CAST(excluded.{quote(n)} AS VARCHAR)" for n in others)
            conflict = (
                f"DO UPDATE SET {sets}, updated_at = CASE WHEN ({old}) IS DISTINCT FROM ({new}) "
                "THEN now() ELSE t.updated_at END"
            )
        else:
            conflict = "DO NOTHING"
        conn.execute(
            f"INSERT INTO {quote(table.name)} AS t ({names}) "  # noqa: S608 (quoted identifiers)
            f"SELECT {values} FROM {quote(incoming)} ON CONFLICT ({key}) {conflict}"
        )
    finally:
        conn.unregister(incoming)
    return {"rows": frame.height, "deleted": int(deleted[0]) if deleted else 0}


# Exact token amounts: raw integer units → DECIMAL(38,18) without a detour through floats.
UNITS_MACRO = (
    "CREATE OR REPLACE MACRO token_units(raw, scale) AS "
    "CAST(CAST(raw AS HUGEINT) // CAST(10 ** scale AS HUGEINT) AS DECIMAL(38,18)) + "
    "CAST((CAST(raw AS HUGEINT) % CAST(10 ** scale AS HUGEINT)) * CAST(10 ** (18 - scale) AS "
    "HUGEINT) AS DECIMAL(38,0)) * CAST('0.000000000000000001' AS DECIMAL(38,18))"
)


def write_catalog(
    conn: DuckDBPyConnection, frames: Mapping[str, pl.DataFrame]
) -> dict[str, dict[str, int]]:
    """All tables in one transaction: a reader sees the old catalog or the new one."""
    conn.execute("BEGIN TRANSACTION")
    try:
        counts = {t.name: sync_table(conn, t, frames[t.name]) for t in TABLES}
        conn.execute(UNITS_MACRO)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return counts


# -- views over Delta -----------------------------------------------------------------------

# The lake's tables whose columns are known from their models: a union view over every chain
# exists for each even before any chain has the table (typed and empty).
LAKE_MODELS: dict[str, type[pa.DataFrameModel]] = {
    **RAW_TABLES,
    "token_transfers": TokenTransfersModel,
    "native_transfers": NativeTransfersModel,
    "balances": BalancesModel,
    "token_prices": TokenPricesModel,
    TOKENS_TABLE: TokenMetadataModel,
    NFT_TABLE: NftTransfersModel,
    CONTRACTS_TABLE: ContractsModel,
}


class WalletBalancesViewModel(pa.DataFrameModel):
    """wallet_balances_view: each active tracked wallet's latest closing balance per token."""

    wallet_id: pl.String = pa.Field(description="wallets.id (a UUID)")
    wallet_name: pl.String = pa.Field(description="wallets.name")
    address: pl.String = pa.Field(description="wallet address, lowercase 0x-hex")
    network: pl.String = pa.Field(description="network of the wallet's chain")
    subnet: pl.String = pa.Field(description="subnet of the wallet's chain")
    chain: pl.String = pa.Field(description="chain name from chains.yaml")
    token_symbol: pl.String = pa.Field(description="token symbol from chains.yaml")
    token_address: pl.String = pa.Field(
        description="ERC-20 contract; 0xeeee…eeee for the native coin"
    )
    balance: Annotated[pl.Decimal, 38, 18] = pa.Field(description="balance in whole tokens")
    balance_raw: Annotated[pl.Decimal, 38, 0] = pa.Field(
        description="balance in the token's smallest unit, exact"
    )
    decimals: pl.Int32 = pa.Field(description="token decimals")
    date: pl.Date = pa.Field(description="UTC day of the latest balance")
    block_number: pl.Int64 = pa.Field(description="that day's last block (the close)")
    kind: pl.String = pa.Field(description="eoa or contract")
    source: pl.String = pa.Field(description="carried or chain (see core/balances)")


class RecentTransactionsViewModel(pa.DataFrameModel):
    """recent_transactions_view: native and token transfers touching tracked wallets in the
    last 7 days of data, newest first."""

    wallet_id: pl.String = pa.Field(description="wallets.id of the tracked wallet touched")
    wallet_name: pl.String = pa.Field(description="wallets.name")
    direction: pl.String = pa.Field(description="in, out or self, seen from the wallet")
    transaction_hash: pl.String = pa.Field(description="hash of the transaction")
    log_index: pl.Int32 = pa.Field(description="the Transfer log's index; -1 for native value")
    from_address: pl.String = pa.Field(description="sender, lowercase 0x-hex")
    to_address: pl.String = pa.Field(description="recipient, lowercase 0x-hex")
    value: Annotated[pl.Decimal, 38, 18] = pa.Field(description="amount in whole tokens")
    value_raw: Annotated[pl.Decimal, 38, 0] = pa.Field(
        description="amount in the token's smallest unit, exact"
    )
    token_symbol: pl.String = pa.Field(description="token symbol (the address if unknown)")
    token_address: pl.String = pa.Field(
        description="ERC-20 contract; 0xeeee…eeee for the native coin"
    )
    network: pl.String = pa.Field(description="network of the wallet's chain")
    subnet: pl.String = pa.Field(description="subnet of the wallet's chain")
    chain: pl.String = pa.Field(description="chain name from chains.yaml")
    date: pl.Date = pa.Field(description="UTC day of the block")
    block_number: pl.Int64 = pa.Field(description="number of the block")
    block_timestamp: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(
        description="time of the block, UTC"
    )


SERVING_VIEWS: dict[str, type[pa.DataFrameModel]] = {
    "wallet_balances_view": WalletBalancesViewModel,
    "recent_transactions_view": RecentTransactionsViewModel,
}


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def view_name(chain: str, table: str) -> str:
    """The view of one chain's table: `devnet_blocks` (`-` and `/` become `_`)."""
    return f"{chain}_{table}".replace("-", "_").replace("/", "_")


def lake_tables(delta: DeltaStore, chains: Mapping[str, ChainConfig]) -> dict[str, list[str]]:
    """Every Delta table of every chain, found in storage: chain name → table names
    (`blocks`, `core/x`), the `_state` tables left out."""
    return {name: delta.list_tables(chain) for name, chain in chains.items()}


def delta_union(paths: Sequence[str], model: type[pa.DataFrameModel] | None = None) -> str:
    """SQL reading a table across chains, each `<network>/<subnet>/<table>` under the session's
    lake root; a typed empty relation when no chain has it yet. A view's definition cannot
    take bound parameters: the paths (from chains.yaml, folder-safe names) are quoted as string
    literals."""
    if paths:
        scans = (
            f"SELECT * FROM delta_scan({LAKE_MACRO}({_literal(p)}))"  # noqa: S608
            for p in paths
        )
        return " UNION ALL BY NAME ".join(scans)
    if model is None:
        raise ValueError("an unknown table needs at least one chain that has it")
    cols = ", ".join(
        f"CAST(NULL AS {duckdb_type(t)}) AS {quote(n)}"
        for n, (t, _) in model_columns(model).items()
    )
    return f"SELECT {cols} WHERE false"


def lake_views_sql(
    found: Mapping[str, Sequence[str]],
    chains: Mapping[str, ChainConfig],
    *,
    temporary: bool = False,
) -> dict[str, str]:
    """The views over the lake: `<chain>_<table>` for every table a chain has, and `<table>`
    over every chain (UNION ALL BY NAME; each row keeps its `chain_id`), for every table found
    and every table of LAKE_MODELS. Paths are relative to the lake root (`chainlake_table`)."""
    kind = "TEMPORARY VIEW" if temporary else "VIEW"
    out: dict[str, str] = {}
    per_table: dict[str, list[str]] = {t: [] for t in LAKE_MODELS}
    for chain_name, tables in found.items():
        chain = chains[chain_name]
        for table in tables:
            path = f"{chain.network}/{chain.subnet}/{table}"
            per_table.setdefault(table, []).append(path)
            name = view_name(chain_name, table)
            if name in out:
                raise ValueError(f"two Delta tables would share the view name {name!r}")
            out[name] = f"CREATE OR REPLACE {kind} {quote(name)} AS {delta_union([path])}"
    for table, paths in per_table.items():
        name = table.replace("/", "_")
        if name in out:
            raise ValueError(f"the view {name!r} of a chain's table hides the union of {table!r}")
        union = delta_union(sorted(set(paths)), LAKE_MODELS.get(table))
        out[name] = f"CREATE OR REPLACE {kind} {quote(name)} AS {union}"
    return out


def views_sql() -> dict[str, str]:
    """The serving views' SQL (`sql/*.sql` beside this module), over the lake views
    `balances`, `native_transfers` and `token_transfers` and the catalog tables."""
    values = {"native_token": NATIVE_TOKEN, "recent_days": str(RECENT_DAYS)}
    return {
        name: Template((SQL_DIR / f"{name}.sql").read_text()).substitute(values)
        for name in SERVING_VIEWS
    }


def view_columns(conn: DuckDBPyConnection, name: str) -> list[str]:
    """The columns of a view or table, in order."""
    rel = conn.execute(f"SELECT * FROM {quote(name)} LIMIT 0")  # noqa: S608 (quoted identifier)
    return [d[0] for d in rel.description or []]


def create_views(
    conn: DuckDBPyConnection, delta: DeltaStore, chains: Mapping[str, ChainConfig]
) -> dict[str, str]:
    """Create, in the file, the lake macro, every view over the lake (`conn`'s session has the
    lake root set) and the serving views (which need the catalog tables); returns the SQL of
    each view. `chainlake sql` creates the same lake views as temporary ones instead."""
    conn.execute(lake_macro_sql())
    statements = lake_views_sql(lake_tables(delta, chains), chains)
    statements.update(views_sql())
    for sql in statements.values():
        conn.execute(sql)
    return statements


# -- the assets -----------------------------------------------------------------------------


@dg.asset(
    key=CATALOG,
    group_name="serving",
    kinds={"duckdb"},
    pool="duckdb",
    check_specs=[dg.AssetCheckSpec("schema", asset=CATALOG, blocking=True)],
    description="Catalog tables in DuckDB from portfolios.yaml and chains.yaml: wallets, "
    "nodes, tokens, portfolios, portfolio_wallets, alerts.",
    metadata=schema_metadata({t.name: t.model for t in TABLES}),
)
def catalog(context: dg.AssetExecutionContext, duckdb: ServingDuckDB):
    """Load the catalog tables into DuckDB from portfolios.yaml and chains.yaml."""
    started = time.monotonic()
    chains = load_chains()
    book = load_portfolios(chains)  # raises ConfigError naming the entry
    frames = catalog_frames(book, chains)
    rows_checked = 0
    for table in TABLES:
        yield from require_schema(table.model, frames[table.name], f"catalog table {table.name}")
        rows_checked += frames[table.name].height
    with duckdb.writer() as conn:
        counts = write_catalog(conn, frames)
    per_table: dict[str, Any] = {f"{name}_rows": c["rows"] for name, c in counts.items()}
    yield dg.MaterializeResult(
        metadata=table_metadata(
            rows_written=sum(c["rows"] for c in counts.values()),
            seconds=time.monotonic() - started,
            database=str(duckdb.path),
            deleted=sum(c["deleted"] for c in counts.values()),
            **per_table,
        )
    )
    yield dg.AssetCheckResult(
        check_name="schema",
        passed=True,  # every table's frame passed require_schema above, or the step failed
        metadata={"rows_checked": rows_checked, "tables": len(TABLES)},
    )


@dg.asset(
    key=VIEWS,
    deps=[
        CATALOG,
        dg.AssetKey(["raw", "blocks"]),
        dg.AssetKey(["raw", "transactions"]),
        dg.AssetKey(["raw", "logs"]),
        dg.AssetKey(["core", "balances"]),
        dg.AssetKey(["core", "native_transfers"]),
        dg.AssetKey(["core", "token_prices"]),
        dg.AssetKey(["core", "token_transfers"]),
        dg.AssetKey(["core", "tokens"]),
        dg.AssetKey(["core", "nft_transfers"]),
        dg.AssetKey(["core", "contracts"]),
    ],
    group_name="serving",
    kinds={"duckdb", "delta"},
    pool="duckdb",
    check_specs=[
        dg.AssetCheckSpec(
            "columns",
            asset=VIEWS,
            blocking=True,
            description="The serving views' columns are their models' (the Columns tab).",
        )
    ],
    description="DuckDB views over the Delta tables: `<chain>_<table>` for every table of every "
    "chain (e.g. devnet_blocks), `<table>` over every chain (blocks, transactions, logs, "
    "token_transfers, native_transfers, balances, token_prices), and wallet_balances_view, "
    "recent_transactions_view. Locations are relative to the lake root each session sets "
    "(chainlake sql does), never one machine's paths.",
    metadata=schema_metadata(SERVING_VIEWS),
)
def views(
    context: dg.AssetExecutionContext, duckdb: ServingDuckDB, delta: dg.ResourceParam[DeltaStore]
):
    """Create the DuckDB views over the Delta tables that exist."""
    started = time.monotonic()
    chains = load_chains()
    with duckdb.writer(delta.storage_options(), delta_root=delta.root) as conn:
        # Views the lake no longer has (a chain gone from chains.yaml) go.
        for (name,) in conn.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal AND NOT temporary"
        ).fetchall():
            conn.execute(f"DROP VIEW {quote(name)}")
        statements = create_views(conn, delta, chains)
        counts = {}
        for name in statements:
            row = conn.execute(f"SELECT count(*) FROM {quote(name)}").fetchone()  # noqa: S608
            counts[name] = row[0] if row else 0
        mismatched = {
            name: view_columns(conn, name)
            for name, model in SERVING_VIEWS.items()
            if view_columns(conn, name) != list(polars_schema(model))
        }
    yield dg.MaterializeResult(
        metadata={
            "duration_s": round(time.monotonic() - started, 3),
            "views": len(statements),
            **{f"{name}_rows": n for name, n in counts.items()},
            "tables": dg.MetadataValue.json(lake_tables(delta, chains)),
        }
    )
    yield dg.AssetCheckResult(
        check_name="columns",
        passed=not mismatched,
        metadata={"mismatched": dg.MetadataValue.json(mismatched)},
    )
