"""Options shared by the command groups."""

from __future__ import annotations

import os

import click

from chainlake.events import db as events_db


def postgres_url(url: str | None) -> str:
    """--url, else POSTGRES_URL, else the local default."""
    return url or os.environ.get("POSTGRES_URL") or events_db.DEFAULT_POSTGRES_URL


url_option = click.option(
    "--url",
    default=None,
    metavar="URL",
    help=f"PostgreSQL URL (default: $POSTGRES_URL or {events_db.DEFAULT_POSTGRES_URL}).",
)
