"""Seed 000's alerts: an expression over an analytics table, checked by the safe grammar, whose
matching rows become `analytics` events (and so reach triggers like any other event).

    wallet_balances.filter((pl.col("wallet_name") == "treasury") & (pl.col("balance") < 10))
    risk_metrics.filter(pl.col("max_drawdown") < -0.2)

A firing's id is deterministic per (alert, day, subject row), so materialising the same day
again does not fire again; a subject is the row's identifying columns (wallet, token,
portfolio, window), not its values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from chainlake.events.expressions import Compiled, apply_expression, compile_expression

# Frame names an expression may start with, and the asset each reads.
DATASETS = {
    "wallet_balances": "core/balances",
    "balances": "core/balances",
    "risk_metrics": "analytics/risk_metrics",
    "portfolio_snapshots": "analytics/portfolio_snapshots",
}
SUBJECT_COLUMNS = (
    "portfolio_id",
    "wallet_name",
    "wallet_id",
    "address",
    "wallet_address",
    "token_symbol",
    "token_address",
    "symbol",
    "window_days",
    "metric",
)
TIME_COLUMNS = ("block_timestamp", "timestamp", "as_of", "snapshot_time")

# The columns of the frames `events/analytics_alerts` evaluates alerts on, defined here because
# portfolios.yaml is checked against them on load (chainlake/ does not import the assets);
# tests/unit/test_alert_columns.py keeps them equal to the assets' models: wallet_balances is
# `wallet_balances_frame` (core/balances' BalancesModel plus the wallet's name and the exact
# base units), risk_metrics is analytics/risk_metrics' RiskMetricsModel.
FRAME_COLUMNS: dict[str, tuple[str, ...]] = {
    "wallet_balances": (
        "chain_id", "date", "address", "token_address", "token_symbol", "decimals", "balance",
        "net_change", "block_number", "account_type", "source", "wallet_name", "balance_raw",
    ),
    "risk_metrics": (
        "date", "portfolio_id", "chain_id", "window_days", "observations", "var_95",
        "cvar_95", "sharpe_ratio", "sortino_ratio", "max_drawdown", "volatility",
        "correlation_score", "balances_version", "prices_version", "token_transfers_version",
        "native_transfers_version", "first_block", "last_block",
    ),
}  # fmt: skip
# The frame each dataset name of an expression is evaluated on.
FRAME_OF = {"wallet_balances": "wallet_balances", "balances": "wallet_balances",
            "risk_metrics": "risk_metrics"}  # fmt: skip


@dataclass(frozen=True)
class Alert:
    """A user's alert: a named expression over one of the lake's datasets (DATASETS)."""

    id: str
    name: str
    expression: str
    chain_id: int | None = None
    parameters: Mapping[str, Any] | None = None
    active: bool = True


def dataset_of(expression: str) -> str | None:
    """The frame an expression reads (`wallet_balances.filter(...)`), or None when bare."""
    head = expression.strip().split(".", 1)[0]
    return head if head in DATASETS and expression.strip().startswith(f"{head}.filter(") else None


def check_alert(expression: str, columns: Iterable[str] | None = None) -> Compiled:
    """Validate an alert expression on save: ExpressionError points at what is refused."""
    return compile_expression(expression, columns=columns, frame_names=DATASETS)


def check_alert_columns(expression: str) -> Compiled:
    """Validate an alert expression of portfolios.yaml: inside the grammar, and every column
    it names is a column of the frame it reads (FRAME_COLUMNS). A bare expression (no
    `table.filter(...)`) is checked against the frame that has most of its columns, so a
    misspelt name, or names from two frames that no row has together, are refused.

    Raises:
        ExpressionError: with a caret under the first name the frame lacks.
    """
    target = dataset_of(expression)
    if target is not None:
        frame = FRAME_OF.get(target)
        return check_alert(expression, FRAME_COLUMNS[frame] if frame else None)
    used = check_alert(expression).columns
    best = max(FRAME_COLUMNS, key=lambda f: len(used & set(FRAME_COLUMNS[f])))
    return check_alert(expression, FRAME_COLUMNS[best])


def _jsonable(v: Any) -> Any:
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


def fire_alerts(
    alerts: Iterable[Alert],
    frame_name: str,
    frame: pl.DataFrame,
    *,
    chain_id: int,
    day: dt.date,
    errors: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Events for every row of `frame` (the table `frame_name` for one chain-day) matched by an
    active alert that reads that table. Bare expressions (no `table.filter(...)`) read every
    table that has their columns.

    With `errors`, an alert that fails on this frame (a column compared with a value of
    another type, a column the frame lacks) is recorded there, by alert name, and the other
    alerts are still evaluated; without it, the first failure is raised.
    """
    out: list[dict[str, Any]] = []
    day_end = int(dt.datetime.combine(day, dt.time(23, 59, 59), dt.UTC).timestamp())
    for a in alerts:
        if not a.active or (a.chain_id is not None and a.chain_id != chain_id):
            continue
        target = dataset_of(a.expression)
        if target is not None and DATASETS[target] != DATASETS.get(frame_name, frame_name):
            continue
        try:
            compiled = check_alert(a.expression)
            if target is None and not compiled.columns <= set(frame.columns):
                continue
            hits = apply_expression(frame, compiled)
        except Exception as e:
            if errors is None:
                raise
            errors[a.name] = f"{type(e).__name__}: {e}"
            continue
        subject_cols = [c for c in SUBJECT_COLUMNS if c in hits.columns]
        time_col = next((c for c in TIME_COLUMNS if c in hits.columns), None)
        for row in hits.iter_rows(named=True):
            subject = {c: _jsonable(row[c]) for c in subject_cols} or {
                k: _jsonable(v) for k, v in row.items()
            }
            digest = hashlib.sha1(json.dumps(subject, sort_keys=True).encode()).hexdigest()[:16]
            ts = row.get(time_col) if time_col else None
            if isinstance(ts, dt.datetime):
                ts = int(ts.replace(tzinfo=ts.tzinfo or dt.UTC).timestamp())
            elif not isinstance(ts, int):
                ts = day_end
            out.append(
                {
                    "id": f"{chain_id}-alert-{a.id}-{day.isoformat()}-{digest}",
                    "chain_id": chain_id,
                    "registry": "analytics",
                    "event_type": "AlertFired",
                    "alert_id": a.id,
                    "timestamp": ts,
                    "data": {
                        "alert_name": a.name,
                        "expression": a.expression,
                        "dataset": DATASETS.get(frame_name, frame_name),
                        "date": day.isoformat(),
                        "subject": subject,
                        "alert_value": {k: _jsonable(v) for k, v in row.items()},
                        "parameters": dict(a.parameters or {}),
                    },
                }
            )
    return out


def save_alert(
    conn: Any,
    *,
    alert_id: str,
    user_id: str,
    name: str,
    expression: str,
    chain_id: int,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    columns: Iterable[str] | None = None,
) -> None:
    """Store an alert after checking its expression; an expression outside the grammar raises
    ExpressionError (pointing at the offending part) and nothing is written."""
    from psycopg.types.json import Jsonb

    check_alert(expression, columns)
    target = dataset_of(expression)
    conn.execute(
        "INSERT INTO alerts (id, user_id, name, description, dataset, chain_id, expression, "
        "parameters) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
        "name = EXCLUDED.name, description = EXCLUDED.description, dataset = EXCLUDED.dataset, "
        "chain_id = EXCLUDED.chain_id, expression = EXCLUDED.expression, "
        "parameters = EXCLUDED.parameters",
        (
            alert_id,
            user_id,
            name,
            description,
            DATASETS[target] if target else "any",
            chain_id,
            expression,
            Jsonb(dict(parameters or {})),
        ),
    )
