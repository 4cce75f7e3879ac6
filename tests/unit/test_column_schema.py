"""Every asset of the code location shows its columns in Dagster (`dagster/column_schema` in
its definition metadata), and they are its Pandera model's: names in order, types,
nullability and descriptions; a column without a description fails."""

import warnings

import pandera.polars as pa
import pytest

from chainlake.schema import COLUMN_SCHEMA, type_name

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from assets.analytics.portfolio_snapshots import PortfolioSnapshotsModel
    from assets.analytics.risk_metrics import RiskMetricsModel
    from assets.core.balances import BalancesModel
    from assets.core.contracts import ContractsModel
    from assets.core.native_balance_movements import NativeBalanceMovementsModel
    from assets.core.native_transfers import NativeTransfersModel
    from assets.core.nft_transfers import NftTransfersModel
    from assets.core.token_prices import TokenPricesModel
    from assets.core.token_transfers import TokenTransfersModel
    from assets.core.tokens import TokensModel
    from assets.events.chain_events import ChainEventsModel
    from assets.serving.catalog import SERVING_VIEWS, TABLES
    from chainlake.raw.blocks import BlocksModel
    from chainlake.raw.logs import LogsModel
    from chainlake.raw.traces import TracesModel
    from chainlake.raw.transactions import TransactionsModel
    from pipelines.definitions import OBSERVED, defs

Models = type[pa.DataFrameModel] | dict[str, type[pa.DataFrameModel]]
MODELS: dict[str, Models] = {
    "raw/blocks": BlocksModel,
    "raw/transactions": TransactionsModel,
    "raw/logs": LogsModel,
    "raw/traces": TracesModel,
    "core/token_transfers": TokenTransfersModel,
    "core/tokens": TokensModel,
    "core/nft_transfers": NftTransfersModel,
    "core/contracts": ContractsModel,
    "core/native_transfers": NativeTransfersModel,
    "core/native_balance_movements": NativeBalanceMovementsModel,
    "core/balances": BalancesModel,
    "core/token_prices": TokenPricesModel,
    "analytics/portfolio_snapshots": PortfolioSnapshotsModel,
    "analytics/risk_metrics": RiskMetricsModel,
    "events/chain_events": ChainEventsModel,
    "events/analytics_alerts": ChainEventsModel,  # its rows are events too
    "serving/catalog": {t.name: t.model for t in TABLES},
    "serving/views": dict(SERVING_VIEWS),
}


def _expected(models: Models) -> list[tuple[str, str, bool, str]]:
    tables = models if isinstance(models, dict) else {"": models}
    return [
        (f"{table}.{name}" if table else name, type_name(col.dtype.type), bool(col.nullable),
         col.description or "")
        for table, model in tables.items()
        for name, col in model.to_schema().columns.items()
    ]  # fmt: skip


def test_every_asset_is_mapped_to_its_model() -> None:
    observed = {spec.key.to_user_string() for spec in OBSERVED}
    keys = {spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()}
    assert keys - observed == set(MODELS)
    # an observed asset (no table of the lake) still shows the columns of its metadata table
    for spec in OBSERVED:
        assert spec.metadata[COLUMN_SCHEMA].columns, spec.key


@pytest.mark.parametrize("key", sorted(MODELS))
def test_column_schema_equals_the_model(key: str) -> None:
    (spec,) = [s for s in defs.resolve_all_asset_specs() if s.key.to_user_string() == key]
    schema = spec.metadata.get(COLUMN_SCHEMA)
    assert schema is not None, f"{key} publishes no {COLUMN_SCHEMA}"
    got = [(c.name, c.type, c.constraints.nullable, c.description) for c in schema.columns]
    assert got == _expected(MODELS[key])
    assert [c.name for c in schema.columns if not c.description] == []
