"""The `chainlake` console script: one click group, subcommands from `chainlake/commands/`."""

from __future__ import annotations

import click

from chainlake.commands.db import db
from chainlake.commands.triggers import triggers


@click.group()
def main() -> None:
    """chainlake: an on-chain lakehouse on Dagster."""


main.add_command(db)
main.add_command(triggers)
