"""`chainlake livestate`: the live state in NATS JetStream KV, a read model of the stores.

chainlake livestate rebuild      # make the instance's buckets equal to the stores of record
chainlake livestate show nodes   # what a bucket holds now

The buckets are `<prefix>_wallets`, `<prefix>_alerts`, `<prefix>_nodes` and `<prefix>_settings`
(prefix: NATS_KV_PREFIX, else the instance name) on NATS_URL. A rebuild measures the RPC URLs,
brings the catalog's node health and alert statistics up to date and syncs every bucket,
deleting keys the stores no longer have; running it again changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.commands.catalog import DEFAULT_DUCKDB_PATH, duckdb_option
from cli.commands.options import postgres_url, url_option

nats_option = click.option(
    "--nats-url",
    default=None,
    metavar="URL",
    help="NATS server (default: $NATS_URL).",
)
prefix_option = click.option(
    "--prefix",
    default=None,
    help="Bucket prefix (default: $NATS_KV_PREFIX, else the instance name).",
)


def _nats(url: str | None) -> str:
    from chainlake.nats_kv import nats_url

    found = url or nats_url()
    if not found:
        raise click.UsageError("NATS_URL is not set (or pass --nats-url): live state is off")
    return found


def _prefix(prefix: str | None) -> str:
    from chainlake.nats_kv import LiveStateError, bucket_prefix

    try:
        return bucket_prefix({"NATS_KV_PREFIX": prefix} if prefix else None)
    except LiveStateError as e:
        raise click.UsageError(str(e)) from None


@click.group()
def livestate() -> None:
    """Live state in NATS JetStream KV (a read model; the stores are the truth)."""


@livestate.command()
@nats_option
@prefix_option
@duckdb_option
@url_option
def rebuild(
    nats_url: str | None, prefix: str | None, duckdb_path: Path | None, url: str | None
) -> None:
    """Make the buckets equal to the stores of record (catalog, events, RPC measurements)."""
    import os

    from chainlake.config import load_chains
    from chainlake.nats_kv import LiveStateError
    from resources.duckdb import ServingDuckDB
    from sensors.livestate import push_live_state

    server, name = _nats(nats_url), _prefix(prefix)
    target = duckdb_path or Path(os.environ.get("DUCKDB_PATH") or DEFAULT_DUCKDB_PATH)
    try:
        result = push_live_state(
            url=server,
            prefix=name,
            chains=load_chains(),
            duckdb=ServingDuckDB(database=str(target)),
            postgres_url=postgres_url(url),
            strict=True,
        )
    except LiveStateError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"rebuilt the live state of {name}: {result.summary()}")


@livestate.command()
@click.argument("bucket", type=click.Choice(["wallets", "alerts", "nodes", "settings"]))
@nats_option
@prefix_option
def show(bucket: str, nats_url: str | None, prefix: str | None) -> None:
    """Print what BUCKET holds, one JSON object per key."""
    from chainlake.nats_kv import LiveStateError, read_buckets

    try:
        entries = read_buckets(_nats(nats_url), _prefix(prefix), [bucket])[bucket]
    except LiveStateError as e:
        raise click.ClickException(str(e)) from None
    for key, value in sorted(entries.items()):
        click.echo(json.dumps({"key": key, "value": value}, sort_keys=True))
