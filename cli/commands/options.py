"""Options shared by the command groups."""

from __future__ import annotations

import os
from typing import Any

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


delta_root_option = click.option(
    "--delta-root",
    default=None,
    metavar="ROOT",
    help="Lake root, a folder or s3://bucket/prefix (default: $DELTA_ROOT or data/delta).",
)


def delta_store(root: str | None) -> Any:
    """The lake of --delta-root, else DELTA_ROOT (with the S3 settings for an s3:// root), as
    the code location's Delta resource builds it."""
    from resources.delta import DeltaResource, LocalStorage, S3Storage

    value = root or os.environ.get("DELTA_ROOT") or ""
    storage = S3Storage() if value.startswith("s3://") else LocalStorage()
    return DeltaResource(root=root or None, storage=storage).store()
