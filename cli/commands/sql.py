"""`chainlake sql`: the lake, the catalog and the analytics in one DuckDB session.

chainlake sql -c "SELECT count(*) FROM devnet_blocks"     # one query, printed as a table
chainlake sql "SELECT * FROM risk_metrics" --format csv   # the same, positional, as CSV
chainlake sql                                             # a prompt (statements end with ;)
echo "SELECT 1" | chainlake sql                           # statements from stdin

The session is DuckDB, opened with the extensions the project bundles (the `duckdb-extension-*`
wheels: nothing is downloaded) and:

- a view over every Delta table of every chain of chains.yaml, named `<chain>_<table>`
  (`devnet_blocks`, `devnet_token_transfers`; `-` in a chain's name becomes `_`), and one per
  table over every chain, named after the table (`blocks`, `transactions`, `logs`,
  `token_transfers`, `native_transfers`, `balances`, `token_prices`; rows keep their
  `chain_id`). They are created at start-up as temporary views over the lake as it is now,
  under DELTA_ROOT (a folder or s3:// with the S3 settings of the Delta resource);
- the serving file (DUCKDB_PATH, default data/chainlake.duckdb), opened read-only: the catalog
  tables (wallets, nodes, tokens, portfolios, portfolio_wallets, alerts) and the serving views
  (wallet_balances_view, recent_transactions_view), which then read the lake views above;
- the ClickHouse analytics (`portfolio_snapshots`, `risk_metrics`), read whole through the
  ClickHouse resource (CLICKHOUSE_URL, else the embedded engine on CLICKHOUSE_PATH or
  data/clickhouse) into Arrow and registered in the session; `--no-clickhouse` skips them.

What could not be attached (no catalog yet, no analytics yet) is said on stderr; a lake with
no table at all is an error naming DELTA_ROOT. The duckdb Python package has no shell of its
own, so the prompt is a small loop: a statement runs when a line ends with `;`; `.tables`
lists what can be queried, `.quit` (or Ctrl-D) leaves.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from cli.commands.catalog import DEFAULT_DUCKDB_PATH, _quiet_imports
from cli.commands.options import delta_root_option, delta_store

ANALYTICS = ("portfolio_snapshots", "risk_metrics")
CLICKHOUSE_WAIT_SECONDS = 30.0


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _clickhouse() -> Any:
    from resources.clickhouse import ClickHouseResource, ClickHouseServer, EmbeddedClickHouse

    url = os.environ.get("CLICKHOUSE_URL")
    if url:
        return ClickHouseResource(engine=ClickHouseServer(url=url))
    return ClickHouseResource(
        engine=EmbeddedClickHouse(lock_timeout_seconds=CLICKHOUSE_WAIT_SECONDS)
    )


def attach_clickhouse(conn: Any) -> list[str]:
    """Register the analytics tables in `conn` (read whole into Arrow); returns notes on what
    could not be attached."""
    ch = _clickhouse()
    where = ch.describe()
    if ch.embedded and not ch.data_dir().exists():
        return [f"no ClickHouse analytics: {ch.data_dir()} does not exist (CLICKHOUSE_PATH)"]
    notes = []
    try:
        with ch.session() as session:
            present = set(
                session.query("SELECT name FROM system.tables WHERE database = currentDatabase()")[
                    "name"
                ].to_list()
            )
            for name in ANALYTICS:
                if name not in present:
                    notes.append(f"no {name} in ClickHouse ({where}): materialise analytics/*")
                    continue
                # the names are this module's constants
                arrow = session.client.query_arrow(f"SELECT * FROM `{name}`")  # noqa: S608
                conn.register(name, arrow)
    except Exception as e:  # the analytics are optional: the lake and catalog still answer
        notes.append(f"ClickHouse analytics not attached ({where}): {_first_line(e)}")
    return notes


def open_session(
    *, duckdb_path: Path | None, delta_root: str | None, clickhouse: bool
) -> tuple[Any, list[str]]:
    """A DuckDB connection with the lake views, the catalog and the analytics, and notes on
    what is missing.

    Raises:
        click.ClickException: chains.yaml is invalid, the lake cannot be listed or holds no
            table of any chain.
    """
    import duckdb

    with _quiet_imports():
        from assets.serving.catalog import lake_tables, lake_views_sql
    from chainlake.config import ConfigError, chains_config_path, load_chains
    from resources.duckdb import (
        _NO_DOWNLOADS,
        lake_macro_sql,
        lake_root,
        load_delta,
        set_lake_root,
    )

    try:
        chains = load_chains()
    except ConfigError as e:
        raise click.ClickException(_first_line(e)) from None
    try:
        store = delta_store(delta_root)
        if store.is_s3:
            store.check_bucket()  # a missing bucket or refused credentials, said plainly
        found = lake_tables(store, chains)
    except Exception as e:
        raise click.ClickException(f"cannot list the lake: {_first_line(e)}") from None
    if not any(found.values()):
        places = ", ".join(
            f"{c.name}: {lake_root(store.root)}/{c.network}/{c.subnet}" for c in chains.values()
        )
        raise click.ClickException(
            f"DELTA_ROOT={store.root} holds no Delta table of the chains of "
            f"{chains_config_path()} ({places}); materialise raw/blocks first (make demo) or "
            "set DELTA_ROOT to a lake"
        )
    notes = []
    path = duckdb_path or Path(os.environ.get("DUCKDB_PATH") or DEFAULT_DUCKDB_PATH)
    if path.exists():
        conn = duckdb.connect(str(path), read_only=True, config=_NO_DOWNLOADS)
    else:
        conn = duckdb.connect(":memory:", config=_NO_DOWNLOADS)
        notes.append(
            f"no catalog: {path} does not exist (materialise serving/catalog or run "
            "`chainlake catalog import`): no catalog tables or serving views in this session"
        )
    load_delta(conn, store.storage_options())
    set_lake_root(conn, store.root)
    conn.execute(lake_macro_sql(temporary=True))
    for statement in lake_views_sql(found, chains, temporary=True).values():
        conn.execute(statement)
    if clickhouse:
        notes += attach_clickhouse(conn)
    return conn, notes


# -- output ---------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, Decimal, int, float, str)):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=_text, ensure_ascii=False)
    return str(value)


def render_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The result as CSV with a header; values whole (nested ones as JSON), NULL empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_text(v) for v in row])
    return out.getvalue()


def render_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], *, max_width: int = 66
) -> str:
    """The result as an aligned text table (numbers right-aligned and whole, NULL shown as
    NULL, other cells longer than `max_width` cut with …) and a row count."""
    numeric = [
        bool(rows) and all(isinstance(r[i], (int, float, Decimal)) or r[i] is None for r in rows)
        for i in range(len(columns))
    ]

    def cell(v: Any) -> str:
        text = "NULL" if v is None else _text(v).replace("\n", " ")
        if len(text) <= max_width or isinstance(v, (int, float, Decimal)):
            return text  # a number is never cut
        return text[: max_width - 1] + "…"

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return " | ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [line(list(columns)), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out) + "\n"


def run(conn: Any, statement: str, fmt: str, max_width: int) -> str:
    """Run SQL (one or more statements; the last one's result is shown) and format it."""
    cursor = conn.execute(statement)
    if cursor.description is None:
        return "OK\n"
    columns = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    if fmt == "csv":
        return render_csv(columns, rows)
    return render_table(columns, rows, max_width=max_width)


def _tables(conn: Any) -> str:
    return run(
        conn,
        "SELECT table_name AS name, lower(table_type) AS kind FROM information_schema.tables "
        "GROUP BY ALL ORDER BY name",
        "table",
        66,
    )


def repl(conn: Any, fmt: str, max_width: int) -> None:
    """Read statements at a prompt until `.quit` or end of input."""
    if sys.stdin.isatty():
        import readline  # noqa: F401  (line editing and history for input())
    click.echo("chainlake sql: DuckDB over the lake, the catalog and the analytics.", err=True)
    click.echo("End a statement with ;  .tables lists what to query, .quit leaves.", err=True)
    buffer: list[str] = []
    while True:
        try:
            line = input("chainlake> " if not buffer else "      ...> ")
        except EOFError:
            click.echo(err=True)
            return
        except KeyboardInterrupt:
            click.echo(err=True)
            buffer = []
            continue
        word = line.strip()
        if not buffer and word in {".quit", ".exit", "\\q"}:
            return
        if not buffer and word == ".tables":
            click.echo(_tables(conn), nl=False)
            continue
        if not word and not buffer:
            continue
        buffer.append(line)
        if word.endswith(";"):
            statement, buffer = "\n".join(buffer), []
            try:
                click.echo(run(conn, statement, fmt, max_width), nl=False)
            except Exception as e:  # the prompt survives a bad statement
                click.echo(f"Error: {_first_line(e)}", err=True)


@click.command()
@click.argument("query", required=False)
@click.option("-c", "--command", "command", metavar="SQL", help="SQL to run (or as QUERY).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv"]),
    default="table",
    show_default=True,
    help="table: aligned text with a row count; csv: a header and whole values.",
)
@click.option(
    "--duckdb",
    "duckdb_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Serving file with the catalog (default: $DUCKDB_PATH or {DEFAULT_DUCKDB_PATH}).",
)
@delta_root_option
@click.option(
    "--no-clickhouse", is_flag=True, help="Leave the ClickHouse analytics out (faster start)."
)
@click.option(
    "--max-width",
    type=click.IntRange(min=8),
    default=66,
    show_default=True,
    help="table: longest cell shown; longer ones are cut with … (csv never cuts).",
)
def sql(
    query: str | None,
    command: str | None,
    fmt: str,
    duckdb_path: Path | None,
    delta_root: str | None,
    no_clickhouse: bool,
    max_width: int,
) -> None:
    """Query the lake, the catalog and the ClickHouse analytics with DuckDB SQL.

    Views: <chain>_<table> for every Delta table of every chain (devnet_blocks, ...), <table>
    over every chain (blocks, transactions, logs, token_transfers, native_transfers,
    balances, token_prices), the catalog tables and serving views, portfolio_snapshots and
    risk_metrics. Without QUERY or -c: a prompt (or the statements piped to stdin).
    """
    if query and command:
        raise click.UsageError("give the SQL once: as QUERY or with -c, not both")
    statement = command or query
    conn, notes = open_session(
        duckdb_path=duckdb_path, delta_root=delta_root, clickhouse=not no_clickhouse
    )
    try:
        for note in notes:
            click.echo(f"note: {note}", err=True)
        if statement is None and not sys.stdin.isatty():
            statement = sys.stdin.read()
            if not statement.strip():
                raise click.UsageError("no SQL: give QUERY, -c SQL, or statements on stdin")
        if statement is None:
            repl(conn, fmt, max_width)
            return
        try:
            click.echo(run(conn, statement, fmt, max_width), nl=False)
        except Exception as e:
            raise click.ClickException(_first_line(e)) from None
    finally:
        conn.close()
