"""Options shared by the command groups."""

from __future__ import annotations

import click

from chainlake import instance_names


def postgres_url(url: str | None) -> str:
    """--url, else POSTGRES_URL, else this instance's own events database."""
    try:
        return url or instance_names.events_postgres_url()
    except instance_names.InstanceNameError as e:
        raise click.UsageError(str(e)) from None


url_option = click.option(
    "--url",
    default=None,
    metavar="URL",
    help="PostgreSQL URL (default: $POSTGRES_URL, else this instance's "
    f"{instance_names.EVENTS_URL_TEMPLATE}, <instance> from $CHAINLAKE_INSTANCE or the checkout).",
)
