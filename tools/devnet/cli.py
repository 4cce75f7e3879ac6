"""`python -m tools.devnet`: the local anvil chain, outside of any test or demo run.

python -m tools.devnet up [--start 2026-11-01]     # anvil on 127.0.0.1:8545, genesis at --start
python -m tools.devnet seed [--days N]              # deterministic activity from --start, N days
python -m tools.devnet up --state data/devnet/state.json --block-time 120   # a saved chain
python -m tools.devnet status
python -m tools.devnet down

The node runs detached (it outlives the command); its log, cache and pid file live in
`--state-dir` (default `data/devnet`), and `seed` writes the generated manifest there.

`up --state FILE` brings back a chain saved by `make demo` (`Anvil.dump_state`) and writes it
back to FILE when `down` stops the node, so the next `up` continues where this one stopped;
`make dev` does this on the demo's port, mining a block every `--block-time` seconds (new blocks
never stamped before the saved chain's last one). Why a saved state rather than generating the
chain again: the Delta tables hold the demo's block hashes (the checkpoint, the raw rows), and
only the same blocks keep them valid; the saved file carries them, with every transaction,
receipt and the per-block states `eth_getBalance` at an old block reads (see
`tools/devnet/anvil.py`), and loads in seconds where generating takes a minute or more and
would stamp the days relative to a later run. tests/integration/test_devnet_state.py checks
that a reloaded chain answers as saved (hashes, receipts, native and token balances at each
day's last block) and that `down` keeps the blocks mined meanwhile. The limit: the node keeps
the states of its last 2,048 blocks, so after about 1,580 blocks of `make dev` (some 53 hours
at the default 120 s) the demo's first day loses them, and re-materialising it then fails in
`core/balances` and `core/token_prices` (`BlockOutOfRangeError`) while raw and core transfers
still succeed; `make demo` again gives a fresh chain.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

DEFAULT_STATE_DIR = "data/devnet"
DEFAULT_PORT = 8545
DEFAULT_DAYS = 7

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
    help="Where the node's log, cache, pid file and manifest live.",
)


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@click.group()
def devnet() -> None:
    """The local anvil chain: start, fill with days of activity, stop."""


@devnet.command()
@state_dir_option
@click.option("--port", default=DEFAULT_PORT, show_default=True, help="JSON-RPC port.")
@click.option("--chain-id", default=31337, show_default=True)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help=f"Genesis day (UTC); default {DEFAULT_DAYS} days ago, so `seed` fills closed days.",
)
@click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Start from this saved chain (make demo writes data/devnet/state.json) and save it "
    "back on `down`.",
)
@click.option(
    "--block-time",
    type=click.IntRange(min=1),
    default=None,
    help="Mine a block every N seconds (default: only when asked, evm_mine).",
)
def up(
    state_dir: Path,
    port: int,
    chain_id: int,
    start: dt.datetime | None,
    state_file: Path | None,
    block_time: int | None,
) -> None:
    """Start anvil in the background (a no-op when it is already running)."""
    from tools.devnet.anvil import AnvilError, detached_status, start_detached

    running = detached_status(state_dir)
    if running is not None:
        click.echo(f"devnet already running at {running.rpc_url} (pid {running.pid})")
        return
    options: dict[str, Any] = {"port": port, "chain_id": chain_id, "block_time": block_time}
    if state_file is not None:
        if start is not None:
            raise click.UsageError("--start sets a new chain's genesis; a --state chain has one")
        if not state_file.is_file():
            raise click.ClickException(
                f"no saved chain at {state_file}; `make demo` writes data/devnet/state.json"
            )
        options["state_file"] = state_file
        origin = f"state {state_file}"
    else:
        day = start.date() if start else _today() - dt.timedelta(days=DEFAULT_DAYS)
        options["genesis"] = day
        origin = f"genesis {day}"
    try:
        info = start_detached(state_dir, **options)
    except (AnvilError, OSError) as e:
        raise click.ClickException(f"anvil did not start: {_first_line(e)}") from None
    head = ""
    if state_file is not None:
        block = _rpc(info.rpc_url, "eth_getBlockByNumber", "latest", False)
        stamp = dt.datetime.fromtimestamp(int(block["timestamp"], 16), dt.UTC)
        head = f", head block {int(block['number'], 16)} of {stamp:%Y-%m-%d %H:%M} UTC"
    mining = f", a block every {block_time}s" if block_time else ""
    click.echo(
        f"devnet up at {info.rpc_url} (chain id {info.chain_id}, {origin}{head}{mining}, "
        f"pid {info.pid}); log {info.log_path}"
    )


@devnet.command()
@state_dir_option
def down(state_dir: Path) -> None:
    """Stop the background anvil (a no-op when none is running); a node started with
    `--state` writes its chain back to that file as it exits."""
    from tools.devnet.anvil import AnvilError, stop_detached

    try:
        stopped = stop_detached(state_dir)
    except AnvilError as e:
        raise click.ClickException(_first_line(e)) from None
    click.echo("devnet stopped" if stopped else "no devnet running")


@devnet.command()
@state_dir_option
def status(state_dir: Path) -> None:
    """Whether the node runs, where, and its head block. Exits 1 when it does not run."""
    from tools.devnet.anvil import detached_status

    info = detached_status(state_dir)
    if info is None:
        raise click.ClickException(f"no devnet running (state dir {state_dir})")
    try:
        head = int(_rpc(info.rpc_url, "eth_blockNumber"), 16)
    except Exception as e:
        raise click.ClickException(
            f"devnet pid {info.pid} does not answer: {_first_line(e)}"
        ) from None
    click.echo(f"devnet at {info.rpc_url} (pid {info.pid}), head block {head}")


@devnet.command()
@state_dir_option
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="Days to fill from the genesis day; default: every day up to yesterday.",
)
@click.option("--blocks-per-day", type=click.IntRange(min=1), default=48, show_default=True)
@click.option("--txs-per-block", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seed", "seed_value", default=7, show_default=True, help="Random seed.")
@click.option(
    "--chains-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="chains.yaml to write the devnet entry into (default: <state-dir>/chains.yaml).",
)
@click.option(
    "--portfolios-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="portfolios.yaml to write (default: <state-dir>/portfolios.yaml).",
)
@click.option(
    "--rpc-url",
    default=None,
    help="Seed this node instead of the one `up` started (e.g. the docker-compose anvil); "
    "its genesis block's day is the first day.",
)
@click.option(
    "--skip-if-seeded",
    is_flag=True,
    help="Succeed without changes when the node already has blocks and the manifest exists.",
)
def seed(
    state_dir: Path,
    days: int | None,
    blocks_per_day: int,
    txs_per_block: int,
    seed_value: int,
    chains_config: Path | None,
    portfolios_config: Path | None,
    rpc_url: str | None,
    skip_if_seeded: bool,
) -> None:
    """Fill the running devnet with deterministic activity: transfers, ERC-20 tokens, price
    feeds, failed transactions and ERC-8004 registry events. Needs a fresh node (`up`).
    Writes the manifest, a chains.yaml entry and a portfolios.yaml that match the chain."""
    from tools.devnet.anvil import detached_status
    from tools.devnet.configs import write_chains_yaml, write_manifest, write_portfolios_yaml
    from tools.devnet.generator import GeneratorError, generate

    if rpc_url is None:
        info = detached_status(state_dir)
        if info is None:
            raise click.ClickException(
                "no devnet running; start one with `python -m tools.devnet up`"
            )
        rpc_url = info.rpc_url
    try:
        head = int(_rpc(rpc_url, "eth_blockNumber"), 16)
        genesis = int(_rpc(rpc_url, "eth_getBlockByNumber", "0x0", False)["timestamp"], 16)
    except Exception as e:
        raise click.ClickException(f"{rpc_url} does not answer: {_first_line(e)}") from None
    if head > 0:
        if skip_if_seeded and (state_dir / "manifest.json").exists():
            click.echo(f"{rpc_url} already seeded (head block {head}); nothing to do")
            return
        raise click.ClickException(
            f"{rpc_url} already has {head} blocks; seed a fresh node (`devnet down`, `devnet up`)"
        )
    start = dt.datetime.fromtimestamp(genesis, dt.UTC).date()
    n = days if days is not None else (_today() - start).days
    if n < 1:
        raise click.ClickException(f"genesis {start} leaves no closed day to fill; pass --days")
    try:
        manifest = generate(
            rpc_url,
            start=start,
            days=n,
            blocks_per_day=blocks_per_day,
            txs_per_block=txs_per_block,
            seed=seed_value,
        )
    except (GeneratorError, OSError) as e:
        raise click.ClickException(f"seeding failed: {_first_line(e)}") from None
    path = write_manifest(state_dir / "manifest.json", manifest)
    chains_path = write_chains_yaml(chains_config or state_dir / "chains.yaml", manifest)
    book = write_portfolios_yaml(portfolios_config or state_dir / "portfolios.yaml", manifest)
    txs = sum(v for k, v in manifest.stats.items() if k != "failed")
    click.echo(
        f"seeded {n} days from {start}: blocks {manifest.day_blocks[0].first_block}.."
        f"{manifest.head_block}, {txs} transactions\n"
        f"manifest {path}\nCHAINS_CONFIG={chains_path} PORTFOLIOS_CONFIG={book}"
    )


def _rpc(url: str, method: str, *params: object) -> Any:
    import httpx

    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    r = httpx.post(url, json=body, timeout=10)
    r.raise_for_status()
    return r.json()["result"]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
