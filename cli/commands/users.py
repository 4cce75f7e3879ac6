"""`chainlake users`: the people whose triggers the engine runs, each a PostgreSQL login role.

chainlake users add alice                  # role `alice` (password prompted) + its users row
chainlake users add alice --no-password    # a role that logs in by pg_hba trust or certificate
chainlake users add alice --existing-role  # map a role the DBA already created

Run it with the engine's URL (the tables' owner, which needs CREATEROLE). Alice then connects
as `postgresql://alice:...@host/chainlake` and sees only her own triggers, deliveries and
tokens (README, "Security model").
"""

from __future__ import annotations

import click
import psycopg

from chainlake.events import db as events_db
from cli.commands.options import postgres_url, url_option


@click.group()
def users() -> None:
    """Users: one PostgreSQL login role each, confined by row-level security."""


@users.command()
@click.argument("name")
@url_option
@click.option("--email", default=None, help="The user's e-mail (default NAME@localhost).")
@click.option(
    "--password",
    default=None,
    help="The role's password (prompted when neither this nor --no-password is given).",
)
@click.option("--no-password", is_flag=True, help="Create the role without a password.")
@click.option("--existing-role", is_flag=True, help="Map an existing role instead of creating one.")
def add(
    name: str,
    url: str | None,
    email: str | None,
    password: str | None,
    no_password: bool,
    existing_role: bool,
) -> None:
    """Create the login role NAME and the user it maps to."""
    from chainlake.events.access import AccessError, add_user

    if password is None and not no_password and not existing_role:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with events_db.connection(postgres_url(url)) as conn:
            user_id = add_user(
                conn, name, email=email, password=password or None, existing_role=existing_role
            )
    except AccessError as e:
        raise click.ClickException(str(e)) from None
    except psycopg.errors.InsufficientPrivilege as e:
        first = str(e).strip().splitlines()[0]
        raise click.ClickException(
            f"{first} (run with the engine's URL: the tables' owner, with CREATEROLE)"
        ) from None
    click.echo(f"user {name!r} ({user_id}) logs in as role {name!r}")
