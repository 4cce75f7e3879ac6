"""The `chainlake` console script: one click group, subcommands from `cli/commands/`."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import click

from chainlake import instance_names
from cli.commands.backfill import backfill
from cli.commands.catalog import catalog
from cli.commands.db import db
from cli.commands.db_ops import attach as attach_db_ops
from cli.commands.explain import explain
from cli.commands.livestate import livestate
from cli.commands.sql import sql
from cli.commands.triggers import triggers
from cli.commands.users import users


class ChainlakeGroup(click.Group):
    """Errors an operator can act on as one or two lines; the traceback goes to a log file.

    Commands raise `click.ClickException` for what they foresee. Anything else (a database
    that is down, a bug) is caught here: the console shows its cause in a line or two and the
    path of the log holding the traceback, and the command exits 1.
    """

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, turning an unforeseen exception into a short error."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:  # reported in two lines, traceback logged
            log_path = _log_traceback(e)
            raise click.ClickException(f"{_cause(e)} (traceback in {log_path})") from None


def _cause(e: BaseException) -> str:
    import psycopg

    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if isinstance(e, psycopg.OperationalError):
        return f"cannot reach PostgreSQL: {first}; is it running, and is --url/POSTGRES_URL right?"
    return f"{type(e).__name__}: {first}"


def _log_folder() -> Path:
    """CHAINLAKE_LOG_DIR, else a folder of this instance's under the temporary directory, so
    two checkouts' tracebacks never mix."""
    base = os.environ.get("CHAINLAKE_LOG_DIR")
    if base:
        return Path(base)
    try:
        name = instance_names.name()
    except instance_names.InstanceNameError:  # the error being logged may be that very name
        name = "unnamed"
    return Path(tempfile.gettempdir()) / f"chainlake-{name}"


def _log_traceback(e: BaseException) -> Path:
    folder = _log_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "cli-errors.log"
        with path.open("a") as f:
            f.write(f"$ chainlake {' '.join(sys.argv[1:])}\n")
            f.write("".join(traceback.format_exception(e)) + "\n")
    except OSError:
        logging.getLogger(__name__).exception("chainlake command failed")
        return Path("(stderr log)")
    return path


@click.group(cls=ChainlakeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chainlake", prog_name="chainlake")
def main() -> None:
    """chainlake: an on-chain lakehouse on Dagster."""


attach_db_ops(db)
main.add_command(backfill)
main.add_command(catalog)
main.add_command(db)
main.add_command(explain)
main.add_command(livestate)
main.add_command(sql)
main.add_command(triggers)
main.add_command(users)
