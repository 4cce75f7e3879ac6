"""`chainlake triggers backtest`: what a triggers file would have delivered on past days.

chainlake triggers backtest config/triggers.yaml --from 2026-11-03 --to 2026-11-05
chainlake triggers backtest my-triggers.yaml --from 2026-11-01 --to 2026-11-30 --chain devnet \
    --out data/backtests/november.parquet

The file is validated as `chainlake triggers apply` validates it (same one-line errors), but
nothing is written to PostgreSQL and nothing is delivered: the events of those days are decoded
again from the Delta tables and evaluated by the live engine's code on chain time (see
`chainlake.events.backtest`).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from cli.commands.options import delta_root_option, delta_store

DEFAULT_OUT_DIR = Path("data/backtests")


def _default_out(path: str, start: dt.date, end: dt.date, chain: str | None) -> Path:
    stem = Path(path).stem or "triggers"
    return DEFAULT_OUT_DIR / f"{stem}{'_' + chain if chain else ''}_{start}_{end}.parquet"


@click.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--from",
    "start",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="First day (UTC, YYYY-MM-DD).",
)
@click.option(
    "--to",
    "end",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Last day, included.",
)
@click.option("--chain", default=None, help="Only the triggers of this chain (of chains.yaml).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Parquet file for the would-be deliveries "
    "(default: data/backtests/<file>[_<chain>]_<from>_<to>.parquet).",
)
@click.option(
    "--include-disabled", is_flag=True, help="Evaluate the triggers marked enabled: false too."
)
@delta_root_option
def backtest(
    path: str,
    start: dt.datetime,
    end: dt.datetime,
    chain: str | None,
    out: str | None,
    include_disabled: bool,
    delta_root: str | None,
) -> None:
    """Evaluate the triggers of PATH against the events of the days --from..--to, rebuilt from
    the Delta tables, on chain time (cooldowns, EMA, rate limits as they would have run);
    print how often each would have fired per day and write the would-be deliveries to
    Parquet. Writes nothing to PostgreSQL and delivers nothing."""
    from chainlake.config import ConfigError, load_chains
    from chainlake.events import backtest as bt
    from chainlake.events.spec import SpecError, default_resolver, load_spec

    first, last = start.date(), end.date()
    try:
        days = bt.day_range(first, last)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    try:
        chains = load_chains()
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    if chain is not None and chain not in chains:
        known = ", ".join(sorted(chains)) or "(none)"
        raise click.ClickException(f"unknown chain {chain!r} (chains.yaml has: {known})")
    try:
        spec = load_spec(path, resolver=default_resolver())
    except SpecError as e:
        for line in e.errors:
            click.echo(line, err=True)
        click.echo(f"{path}: {len(e.errors)} problem(s); nothing backtested", err=True)
        sys.exit(1)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None

    by_id = {c.chain_id: c for c in chains.values()}
    wanted = [
        ts.trigger
        for ts in spec.triggers
        if chain is None or ts.trigger.chain_id == chains[chain].chain_id
    ]
    analytics = [t.id for t in wanted if not bt.backtestable(t)]
    off_chain = [t.id for t in wanted if bt.backtestable(t) and t.chain_id not in by_id]
    candidates = [t for t in wanted if bt.backtestable(t) and t.chain_id in by_id]
    disabled = [t.id for t in candidates if not t.enabled and not include_disabled]
    triggers = [t for t in candidates if t.enabled or include_disabled]
    if not triggers:
        where = f" on chain {chain!r}" if chain else ""
        raise click.ClickException(
            f"{path}: no enabled trigger{where} whose events the lake holds "
            f"({len(spec.triggers)} in the file; disabled: {len(disabled)}, "
            f"analytics: {len(analytics)}, chain not in chains.yaml: {len(off_chain)})"
        )
    try:
        tracked = bt.tracked_addresses(chains)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None

    delta = delta_store(delta_root)
    read: list[bt.ChainDay] = []
    for cfg in sorted(
        {by_id[t.chain_id].name: by_id[t.chain_id] for t in triggers}.values(), key=lambda c: c.name
    ):
        try:
            read += bt.read_chain_days(delta, cfg, days, tracked=tracked.get(cfg.name, []))
        except bt.LakeError as e:
            raise click.ClickException(str(e)) from None
        if tracked.get(cfg.name) and not delta.exists(cfg, "token_transfers"):
            click.echo(
                f"{cfg.name}: no core/token_transfers table in the lake; transfers of tracked "
                "wallets are not backtested",
                err=True,
            )
    empty = [cd for cd in read if cd.blocks == 0]
    if len(empty) == len(read):
        names = ", ".join(sorted({cd.chain for cd in read}))
        raise click.ClickException(
            f"the lake ({delta.root}) holds no block of {names} from {first} to {last}: "
            "materialise those days first"
        )
    for cd in empty:
        click.echo(f"{cd.chain} {cd.day}: no blocks in the lake (day not materialised?)", err=True)

    result = bt.run(triggers, read)
    target = Path(out) if out else _default_out(path, first, last, chain)
    target.parent.mkdir(parents=True, exist_ok=True)
    bt.deliveries_frame(result).write_parquet(target)

    names = ", ".join(sorted({cd.chain for cd in read}))
    click.echo(
        f"{path}: {len(triggers)} trigger(s) on {names}, {first} to {last} "
        f"({len(days)} day(s), {result.events} events of interest); nothing delivered"
    )
    for line in bt.firings_table(result):
        click.echo(line)
    fast = [t.id for t in triggers if t.is_fast]
    if fast:
        click.echo(
            "phase: fast, evaluated once per event of the confirmed chain (the firing counted "
            "once, as live; live it is an unconfirmed message at the head, then this confirmed "
            "one; events a reorg removed before confirmation are not in the lake, so their "
            f"unconfirmed and retracted messages are not shown): {', '.join(fast)}"
        )
    if disabled:
        click.echo(f"disabled, not evaluated (--include-disabled): {', '.join(disabled)}")
    if analytics:
        click.echo(
            f"not backtested (analytics events come from portfolios.yaml alerts): "
            f"{', '.join(analytics)}"
        )
    if off_chain:
        click.echo(f"not backtested (chain id not in chains.yaml): {', '.join(off_chain)}")
    for f in result.failures:
        click.echo(
            f"evaluation failed: event {f.event_id} trigger {f.trigger_id}: {f.error}", err=True
        )
    click.echo(
        f"{result.firings} firing(s), {len(result.deliveries)} would-be deliveries "
        f"written to {target}"
        + (f"; {len(result.failures)} evaluation(s) failed" if result.failures else "")
    )
