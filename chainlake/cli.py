"""The `chainlake` console script: one click group, subcommands from `chainlake/commands/`."""

from __future__ import annotations

import click

from chainlake.commands.catalog import catalog
from chainlake.commands.db import db
from chainlake.commands.db_ops import attach as attach_db_ops
from chainlake.commands.devnet import devnet
from chainlake.commands.triggers import triggers


@click.group()
def main() -> None:
    """chainlake: an on-chain lakehouse on Dagster."""


attach_db_ops(db)
main.add_command(catalog)
main.add_command(db)
main.add_command(devnet)
main.add_command(triggers)
