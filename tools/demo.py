"""`make demo`: a local chain with days of activity, every asset for every day, a summary.

The chain is deterministic (fixed genesis, seed and dev accounts), so a second run writes the
same tables. The demo's config files go to `data/devnet/`; `make dev` points the UI at them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

log = logging.getLogger("tools.demo")

START = dt.date(2026, 11, 1)
DAYS = int(os.environ.get("DEMO_DAYS", "5"))
BLOCKS_PER_DAY = int(os.environ.get("DEMO_BLOCKS_PER_DAY", "96"))
TXS_PER_BLOCK = int(os.environ.get("DEMO_TXS_PER_BLOCK", "20"))
SEED = 7
PORT = int(os.environ.get("DEMO_RPC_PORT", "8545"))
DEVNET_DIR = Path("data/devnet")

# Later sections (analytics, triggers) add their own lines to the summary.
Summary = Callable[[list[dt.date]], list[str]]
SUMMARIES: list[Summary] = []


def triggers_summary(days: list[dt.date]) -> list[str]:
    """The demo summary's trigger section (see `tools.demo_triggers.summary`)."""
    from tools.demo_triggers import summary

    return summary(days)


SUMMARIES.append(triggers_summary)


def analytics_summary(days: list[dt.date]) -> list[str]:
    """Per portfolio: the last snapshot and its 30-day risk (ClickHouse), as `make demo` prints."""
    import dagster as dg

    from assets.analytics.risk_metrics import portfolio_summary
    from pipelines.resources import clickhouse_resource

    # The code location's own configuration, its EnvVars resolved as a run would.
    with dg.build_resources({"clickhouse": clickhouse_resource()}) as resources:
        store = resources.clickhouse
    with store.session() as ch:
        rows = portfolio_summary(ch).to_dicts()

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{v * 100:+.2f}%"

    def num(v: float | None) -> str:
        return "—" if v is None else f"{v:.2f}"

    lines = [
        f"{'portfolio':<12}{'day':<12}{'value (USD)':>16}{'total ret':>10}{'VaR95':>9}"
        f"{'CVaR95':>9}{'Sharpe':>8}{'Sortino':>8}{'max DD':>9}{'vol':>8}{'corr':>6}"
    ]
    for r in rows:
        lines.append(
            f"{r['portfolio_id']:<12}{r['day'].isoformat():<12}{r['total_value']:>16,.2f}"
            f"{pct(r['total_return']):>10}{pct(r['var_95']):>9}{pct(r['cvar_95']):>9}"
            f"{num(r['sharpe']):>8}{num(r['sortino']):>8}{pct(r['max_drawdown']):>9}"
            f"{pct(r['volatility']):>8}{num(r['correlation']):>6}"
        )
    lines.append(f"analytics: {store.describe()} (risk over 30 days, annualised over 365)")
    return lines


SUMMARIES.insert(0, analytics_summary)


def write_configs(manifest, rpc_url: str) -> tuple[Path, Path]:
    """Write the devnet's manifest, chains.yaml and portfolios.yaml under data/devnet.

    Returns:
        The chains.yaml and portfolios.yaml written.
    """
    from tools.devnet.configs import write_chains_yaml, write_manifest, write_portfolios_yaml

    chains = DEVNET_DIR / "chains.yaml"
    if chains.exists():
        chains.unlink()  # the demo's file holds the devnet only
    write_manifest(DEVNET_DIR / "manifest.json", manifest)
    write_chains_yaml(chains, manifest, rpc_urls=[rpc_url])
    portfolios = write_portfolios_yaml(DEVNET_DIR / "portfolios.yaml", manifest)
    return chains, portfolios


def materialise(days: list[dt.date]) -> None:
    """Materialise the unpartitioned assets, every partitioned one for each of `days` on the devnet,
    then the DuckDB views again."""
    import dagster as dg

    from pipelines.definitions import defs

    instance = dg.DagsterInstance.get()
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    partitioned = [k for k in graph.materializable_asset_keys if graph.get(k).is_partitioned]
    unpartitioned = [k for k in graph.materializable_asset_keys if not graph.get(k).is_partitioned]
    if unpartitioned:
        job = defs.resolve_implicit_job_def_def_for_assets(unpartitioned)
        assert job is not None
        log.info("materialising %s", ", ".join(k.to_user_string() for k in unpartitioned))
        job.execute_in_process(instance=instance, asset_selection=unpartitioned)
    for i, day in enumerate(days, 1):
        started = time.monotonic()
        job = defs.resolve_implicit_job_def_def_for_assets(partitioned)
        assert job is not None
        result = job.execute_in_process(
            instance=instance,
            partition_key=f"devnet|{day.isoformat()}",
            asset_selection=partitioned,
            raise_on_error=False,
        )
        failed_checks = [
            f"{e.asset_key.to_user_string()}:{e.check_name}"
            for e in result.get_asset_check_evaluations()
            if not e.passed
        ]
        status = "ok" if result.success and not failed_checks else "FAILED"
        log.info(
            "[%d/%d] devnet %s: %s in %.1fs%s",
            i,
            len(days),
            day,
            status,
            time.monotonic() - started,
            f" (failed checks: {', '.join(failed_checks)})" if failed_checks else "",
        )
        if not result.success:
            raise SystemExit(f"demo: materialising devnet {day} failed; see the log above")
    # The DuckDB views read the Delta tables the days just wrote: refresh them now.
    views = defs.resolve_implicit_job_def_def_for_assets([dg.AssetKey(["serving", "views"])])
    if views is not None:
        views.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(["serving", "views"])]
        )


def raw_summary(days: list[dt.date]) -> list[str]:
    """The demo summary's raw section: rows per day of the devnet's raw and core tables."""
    import dagster as dg

    from chainlake.config import load_chains
    from pipelines.resources import delta_resource

    chain = load_chains()["devnet"]
    # The code location's store (S3 settings included when DELTA_ROOT is s3://).
    with dg.build_resources({"delta": delta_resource()}) as resources:
        store = resources.delta
    counts = {}
    for table in ("blocks", "transactions", "logs", "token_transfers"):
        lf = store.scan(chain, table)
        counts[table] = (
            lf.group_by("date").len().collect()
            if lf is not None
            else pl.DataFrame({"date": [], "len": []})
        )
    lines = [f"{'day':<12}{'blocks':>8}{'txs':>8}{'logs':>8}{'transfers':>11}"]
    for day in days:
        row = [
            next(iter(counts[t].filter(pl.col("date") == day)["len"].to_list()), 0)
            for t in ("blocks", "transactions", "logs", "token_transfers")
        ]
        lines.append(f"{day.isoformat():<12}{row[0]:>8}{row[1]:>8}{row[2]:>8}{row[3]:>11}")
    lines.append(f"Delta tables: {store.table_uri(chain, '<table>')}")
    return lines


def main() -> int:
    """Run `make demo`: start anvil, generate the chain, materialise everything and print the
    summary; the exit status."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from tools.devnet.anvil import Anvil, AnvilError
    from tools.devnet.generator import generate

    days = [START + dt.timedelta(days=i) for i in range(DAYS)]
    t0 = time.monotonic()
    try:
        node = Anvil(port=PORT, genesis=START).start()
    except AnvilError as e:
        print(f"demo: cannot start the local chain on 127.0.0.1:{PORT}: {e}", file=sys.stderr)
        return 1
    try:
        log.info(
            "local chain at %s; generating %d days × %d blocks × %d txs",
            node.rpc_url,
            DAYS,
            BLOCKS_PER_DAY,
            TXS_PER_BLOCK,
        )
        manifest = generate(
            node.rpc_url,
            start=START,
            days=DAYS,
            blocks_per_day=BLOCKS_PER_DAY,
            txs_per_block=TXS_PER_BLOCK,
            seed=SEED,
        )
        chains, portfolios = write_configs(manifest, node.rpc_url)
        os.environ["CHAINS_CONFIG"] = str(chains)
        os.environ["PORTFOLIOS_CONFIG"] = str(portfolios)
        log.info("generated %d blocks in %.1fs", manifest.head_block + 1, time.monotonic() - t0)
        materialise(days)
        node.dump_state(DEVNET_DIR / "state.json")  # `make dev` starts the chain from it
        print()
        print("chainlake demo: devnet", f"{days[0]} .. {days[-1]}")
        for section in [raw_summary, *SUMMARIES]:
            for line in section(days):
                print("  " + line)
        print(
            f"  done in {time.monotonic() - t0:.0f}s; `make dev` opens the Dagster UI on this data"
        )
    finally:
        node.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
