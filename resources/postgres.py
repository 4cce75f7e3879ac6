"""PostgreSQL: the events outbox, triggers, deliveries and their audit trail.

Fields left unset are read from the environment when the resource is used (see
`resources.env`): `url` from `POSTGRES_URL` (else the instance's `<instance>_events` database,
named from `CHAINLAKE_INSTANCE` or the checkout: `chainlake.instance_names`),
`secret_key` from `CHAINLAKE_SECRET_KEY` (else none), `resident_evaluator_seconds` from
`CHAINLAKE_RESIDENT_EVALUATOR_SECONDS` (else 3600). Callers use `database_url()`,
`fernet_key()` and `resident_lifetime_seconds()`, which apply that rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from chainlake import instance_names
from chainlake.events import db
from chainlake.events.db import Conn
from resources.env import env_int, env_optional

# URLs whose schema this process has found current (checked once per process).
_SCHEMA_CHECKED: set[str] = set()


class PostgresResource(dg.ConfigurableResource):
    """Connections to the events database. The schema is managed by `chainlake db migrate`."""

    url: str | None = Field(
        default=None,
        description="libpq URL of the events database, e.g. postgresql://user@host:5432/"
        "chainlake. Unset: POSTGRES_URL when used, else this instance's own database "
        f"{instance_names.EVENTS_URL_TEMPLATE} (<instance>: CHAINLAKE_INSTANCE, else named "
        "after the checkout's path).",
    )
    secret_key: str | None = Field(
        default=None,
        description="Fernet key that encrypts agents' MCP tokens at rest. Unset: "
        "CHAINLAKE_SECRET_KEY when used; without either, an agent that has a stored MCP token "
        "is not called (its delivery fails, saying so).",
    )

    notify_wait_seconds: float = Field(
        default=0.0,
        description="How long an event or delivery sensor tick that finds nothing waits on "
        "LISTEN/NOTIFY before giving up (a wake-up only; the tables are the truth).",
    )

    resident_evaluator_seconds: int | None = Field(
        default=None,
        description="Lifetime of each resident trigger evaluator run: one long-lived run "
        "evaluates events as they commit, instead of a run per batch; resident_evaluator_sensor "
        "starts the next when one ends. 0 turns it off (chain_events_sensor then launches a run "
        "per batch). Unset: CHAINLAKE_RESIDENT_EVALUATOR_SECONDS when used, else 3600.",
    )

    auto_migrate: bool = Field(
        default=True,
        description="Create the database and bring its schema to the latest revision on first "
        "use, as `chainlake db migrate` does (one query when it is already current). Turn off "
        "where schema changes go through a release process.",
    )

    def database_url(self) -> str:
        """The events database's URL: `url`, else POSTGRES_URL read now, else the instance's
        own (CHAINLAKE_INSTANCE read now).

        Raises:
            chainlake.instance_names.InstanceNameError: CHAINLAKE_INSTANCE cannot name a
                database.
        """
        explicit = self.url or env_optional(dg.EnvVar("POSTGRES_URL"))
        if explicit:
            return explicit
        instance = env_optional(dg.EnvVar("CHAINLAKE_INSTANCE")) or ""
        return instance_names.names({"CHAINLAKE_INSTANCE": instance}).events_url

    def fernet_key(self) -> str | None:
        """The key for agents' MCP tokens: `secret_key`, else CHAINLAKE_SECRET_KEY read now."""
        return self.secret_key or env_optional(dg.EnvVar("CHAINLAKE_SECRET_KEY"))

    def resident_lifetime_seconds(self) -> int:
        """`resident_evaluator_seconds`, else CHAINLAKE_RESIDENT_EVALUATOR_SECONDS read now,
        else 3600; 0 means no resident evaluator.

        Raises:
            ValueError: The variable is set to something that is not an integer.
        """
        if self.resident_evaluator_seconds is not None:
            return self.resident_evaluator_seconds
        return env_int(dg.EnvVar("CHAINLAKE_RESIDENT_EVALUATOR_SECONDS"), 3600)

    def _ready(self) -> str:
        url = self.database_url()
        if self.auto_migrate and url not in _SCHEMA_CHECKED:
            db.ensure_schema(url)
            _SCHEMA_CHECKED.add(url)
        return url

    def migrated_url(self) -> str:
        """The URL, once the schema is known to be current (see `auto_migrate`)."""
        return self._ready()

    @contextmanager
    def connection(self, *, autocommit: bool = False) -> Iterator[Conn]:
        """A connection that commits when the block succeeds and rolls back when it raises."""
        with db.connection(self._ready(), autocommit=autocommit) as conn:
            yield conn

    def connect(self, *, autocommit: bool = False) -> Conn:
        """A connection the caller closes (and commits, unless `autocommit`)."""
        return db.connect(self._ready(), autocommit=autocommit)
