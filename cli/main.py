"""The `chainlake` console script: one click group, subcommands from `cli/commands/`."""

from __future__ import annotations

import click

from cli.commands.catalog import catalog
from cli.commands.db import db
from cli.commands.db_ops import attach as attach_db_ops
from cli.commands.triggers import triggers
from cli.commands.users import users


@click.group()
def main() -> None:
    """chainlake: an on-chain lakehouse on Dagster."""


attach_db_ops(db)
main.add_command(catalog)
main.add_command(db)
main.add_command(triggers)
main.add_command(users)
