"""`chainlake catalog`: the DuckDB catalog (wallets, nodes, tokens, portfolios, alerts) in and
out of files, outside a Dagster run.

chainlake catalog import [config/portfolios.yaml]     # validate, then load like serving/catalog
chainlake catalog import --dry-run                    # validate only
chainlake catalog export                              # portfolios.yaml from the catalog, to stdout
chainlake catalog export --output out/ --format parquet   # one Parquet file per table

Import goes through the same loader and writer as the `serving/catalog` asset (issue 4): the
file is validated whole first (an error names the entry), then every table is synced in one
transaction on a private copy of the DuckDB file, published by a rename under the writer
lock, so readers and a concurrent pipeline writer are never broken. Export reads read-only.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

DEFAULT_DUCKDB_PATH = "data/chainlake.duckdb"

duckdb_option = click.option(
    "--duckdb",
    "duckdb_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Catalog file (default: $DUCKDB_PATH or {DEFAULT_DUCKDB_PATH}).",
)


def _duckdb_path(path: Path | None) -> Path:
    return path or Path(os.environ.get("DUCKDB_PATH") or DEFAULT_DUCKDB_PATH)


@contextlib.contextmanager
def _quiet_imports() -> Iterator[None]:
    """The asset modules warn about Dagster beta APIs on import; noise on a command line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


@click.group()
def catalog() -> None:
    """The DuckDB catalog: import portfolios.yaml, export it back."""


@catalog.command(name="import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option(
    "--chains",
    "chains_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="chains.yaml (default: $CHAINS_CONFIG or config/chains.yaml).",
)
@duckdb_option
@click.option("--dry-run", is_flag=True, help="Validate the files; write nothing.")
def import_(
    path: Path | None, chains_path: Path | None, duckdb_path: Path | None, dry_run: bool
) -> None:
    """Load PATH (default: $PORTFOLIOS_CONFIG or config/portfolios.yaml) and chains.yaml into
    the catalog tables. All of it or nothing: an invalid entry is named and nothing changes."""
    import pandera.errors

    with _quiet_imports():
        from assets.serving.catalog import TABLES, catalog_frames, write_catalog
    from chainlake.config import ConfigError, load_chains
    from chainlake.portfolios import load_portfolios, portfolios_config_path
    from chainlake.schema import validation_summary
    from resources.duckdb import ServingDuckDB

    source = path or portfolios_config_path()
    if not source.exists():
        raise click.ClickException(f"{source}: no such file")
    try:
        chains = load_chains(chains_path)
        book = load_portfolios(chains, source)
        frames = catalog_frames(book, chains)
        for table in TABLES:
            table.model.validate(frames[table.name], lazy=True)
    except ConfigError as e:
        for line in str(e).splitlines()[1:]:
            click.echo(line, err=True)
        raise click.ClickException(str(e).splitlines()[0]) from None
    except pandera.errors.SchemaErrors as e:
        raise click.ClickException(_first_line(Exception(validation_summary(e)))) from None
    sizes = ", ".join(f"{name} {frame.height}" for name, frame in frames.items())
    if dry_run:
        click.echo(f"{source} is valid: {sizes}")
        return
    target = _duckdb_path(duckdb_path)
    try:
        with ServingDuckDB(database=str(target)).writer() as conn:
            counts = write_catalog(conn, frames)
    except Exception as e:
        raise click.ClickException(f"writing {target} failed: {_first_line(e)}") from None
    deleted = sum(c["deleted"] for c in counts.values())
    click.echo(f"imported {source} into {target}: {sizes}; {deleted} rows removed")


def _read_tables(target: Path) -> dict[str, Any]:
    with _quiet_imports():
        from assets.serving.catalog import TABLES
    from resources.duckdb import ServingDuckDB, quote

    out: dict[str, Any] = {}
    with ServingDuckDB(database=str(target)).reader() as conn:
        for table in TABLES:
            result = conn.execute(
                f"SELECT * FROM {quote(table.name)} ORDER BY ALL"  # noqa: S608 (quoted identifier)
            ).arrow()
            # DuckDB 1.5 hands back a RecordBatchReader
            out[table.name] = result.read_all() if hasattr(result, "read_all") else result
    return out


def portfolios_document(tables: dict[str, Any]) -> dict[str, Any]:
    """The catalog as a portfolios.yaml document (wallets, portfolios, alerts), which
    `catalog import` reads back to the same catalog."""
    wallets = tables["wallets"].to_pylist()
    name_of = {str(w["id"]): w["name"] for w in wallets}
    members: dict[str, list[str]] = {}
    for m in tables["portfolio_wallets"].to_pylist():
        members.setdefault(m["portfolio_id"], []).append(
            name_of.get(str(m["wallet_id"]), m["address"])
        )
    doc: dict[str, Any] = {
        "wallets": [
            {
                "name": w["name"],
                "address": w["address"],
                "chain": w["chain"],
                "kind": w["kind"],
                "active": w["is_active"],
            }
            for w in wallets
        ],
        "portfolios": [],
        "alerts": [],
    }
    for p in tables["portfolios"].to_pylist():
        entry: dict[str, Any] = {"id": p["portfolio_id"], "name": p["name"]}
        if p["description"] is not None:
            entry["description"] = p["description"]
        entry["chain"] = p["chain"]
        entry["risk_profile"] = p["risk_profile"]
        allocation = p["target_allocation"]
        if allocation:
            pairs = allocation.items() if isinstance(allocation, dict) else allocation
            entry["target_allocation"] = {k: float(v) for k, v in pairs}
        entry["active"] = p["is_active"]
        entry["wallets"] = sorted(members.get(p["portfolio_id"], []))
        doc["portfolios"].append(entry)
    for a in tables["alerts"].to_pylist():
        alert: dict[str, Any] = {"name": a["name"]}
        if a["description"] is not None:
            alert["description"] = a["description"]
        alert["query"] = a["natural_language_query"]
        if a["expression"] is not None:
            alert["expression"] = a["expression"]
        params = a["parameters"]
        alert["parameters"] = json.loads(params) if isinstance(params, str) else params
        alert["active"] = a["is_active"]
        doc["alerts"].append(alert)
    return doc


@catalog.command()
@duckdb_option
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="File (yaml) or folder (parquet); default: YAML to stdout.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "parquet"]),
    default="yaml",
    show_default=True,
    help="yaml: a portfolios.yaml `catalog import` reads back; parquet: every table as is.",
)
def export(duckdb_path: Path | None, output: Path | None, fmt: str) -> None:
    """Write the catalog out, read-only (a running pipeline is not disturbed)."""
    import pyarrow.parquet as pq
    import yaml

    target = _duckdb_path(duckdb_path)
    if not target.exists():
        raise click.ClickException(
            f"{target}: no catalog yet (materialise serving/catalog or `chainlake catalog import`)"
        )
    try:
        tables = _read_tables(target)
    except Exception as e:
        raise click.ClickException(f"reading {target} failed: {_first_line(e)}") from None
    if fmt == "parquet":
        if output is None:
            raise click.ClickException("--format parquet needs --output FOLDER")
        output.mkdir(parents=True, exist_ok=True)
        for name, table in tables.items():
            pq.write_table(table, output / f"{name}.parquet")
        rows = sum(t.num_rows for t in tables.values())
        click.echo(f"exported {len(tables)} tables, {rows} rows to {output}")
        return
    text = yaml.safe_dump(portfolios_document(tables), sort_keys=False, width=120)
    header = f"# Exported from {target} by `chainlake catalog export`.\n"
    if output is None:
        click.echo(header + text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(header + text)
        click.echo(f"exported the catalog of {target} to {output}")
