"""`chainlake backfill`: an asset backfill of chain-days, submitted to the Dagster instance.

chainlake backfill --from 2026-10-01 --to 2026-10-30                 # every chain, raw + core
chainlake backfill --chain base --from 2026-10-01 --to 2026-10-30 --select '*'

Unlike `dagster job backfill` (a job backfill: one run per partition whatever the assets'
backfill policies say), this submits an asset backfill, the kind the UI's "Materialize" of a
partition range and GraphQL's `launchPartitionBackfill` create: the daemon plans it from the
assets' backfill policies (ranges of up to `CHAIN_DAYS_PER_RUN` days of one chain) and the
partition mappings (a day's balances after the day before's, risk after its window of
snapshots). It needs `DAGSTER_HOME` (the instance the daemon uses) and a running daemon.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence

import click

DEFAULT_SELECTION = "group:raw or group:core"


def chain_day_keys(chains: Sequence[str], first: dt.date, last: dt.date) -> list[str]:
    """The partition keys of `chains` over the days first..last, chain by chain, oldest first.

    Raises:
        click.BadParameter: When `last` is before `first`.
    """
    if last < first:
        raise click.BadParameter(f"--to {last} is before --from {first}")
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    return [f"{chain}|{day.isoformat()}" for chain in chains for day in days]


def submit_asset_backfill(
    selection: str, partition_keys: Sequence[str], *, title: str | None = None
) -> str:
    """Add an asset backfill of `selection` over `partition_keys` to the instance of
    `DAGSTER_HOME`; returns its id. The daemon launches its runs.

    Args:
        selection: A Dagster asset selection string ("group:raw or group:core", "*").
        partition_keys: `<chain>|<YYYY-MM-DD>` keys.
        title: Shown in the UI's backfill list.
    """
    import dagster as dg
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = sorted(dg.AssetSelection.from_string(selection).resolve(graph))
    if not keys:
        raise click.BadParameter(f"{selection!r} selects no asset", param_hint="--select")
    with dg.DagsterInstance.get() as instance:
        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id=make_new_backfill_id(),
            asset_graph=graph,
            partition_names=list(partition_keys),
            asset_selection=keys,
            backfill_timestamp=time.time(),
            tags={"chainlake/trigger": "cli-backfill"},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=title,
            description=None,
            run_config=None,
        )
        instance.add_backfill(backfill)
        return backfill.backfill_id


@click.command("backfill")
@click.option("--chain", "chains", multiple=True, help="A chain of chains.yaml (default: all).")
@click.option("--from", "first", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--to", "last", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option(
    "--select",
    default=DEFAULT_SELECTION,
    show_default=True,
    help="Dagster asset selection; downstream of a day follows by automation anyway.",
)
@click.option("--title", default=None, help="Title shown in the UI.")
def backfill(
    chains: tuple[str, ...], first: dt.datetime, last: dt.datetime, select: str, title: str | None
) -> None:
    """Backfill the chain-days --from..--to (inclusive) as an asset backfill."""
    from chainlake.config import load_chains

    known = load_chains()
    unknown = [c for c in chains if c not in known]
    if unknown:
        raise click.BadParameter(f"not in chains.yaml: {', '.join(unknown)}", param_hint="--chain")
    keys = chain_day_keys(sorted(chains or known), first.date(), last.date())
    backfill_id = submit_asset_backfill(select, keys, title=title)
    click.echo(f"Launched asset backfill `{backfill_id}`: {len(keys)} chain-days of {select}")
