"""PostgreSQL: the events outbox, triggers, deliveries and their audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from chainlake.events import db
from chainlake.events.db import Conn

# URLs whose schema this process has found current (checked once per process).
_SCHEMA_CHECKED: set[str] = set()


class PostgresResource(dg.ConfigurableResource):
    """Connections to the events database. The schema is managed by `chainlake db migrate`."""

    url: str = Field(
        default=db.DEFAULT_POSTGRES_URL,
        description="libpq URL of the events database (POSTGRES_URL), "
        "e.g. postgresql://user@host:5432/chainlake.",
    )
    secret_key: str | None = Field(
        default=None,
        description="Fernet key that encrypts agents' MCP tokens at rest (CHAINLAKE_SECRET_KEY); "
        "without it, MCP calls resolved from an agent go without a token.",
    )

    notify_wait_seconds: float = Field(
        default=0.0,
        description="How long an event or delivery sensor tick that finds nothing waits on "
        "LISTEN/NOTIFY before giving up (a wake-up only; the tables are the truth).",
    )

    resident_evaluator_seconds: int = Field(
        default=3600,
        description="Lifetime of each resident trigger evaluator run (CHAINLAKE_RESIDENT_"
        "EVALUATOR_SECONDS): one long-lived run evaluates events as they commit, instead of a "
        "run per batch; resident_evaluator_sensor starts the next when one ends. 0 turns it "
        "off (chain_events_sensor then launches a run per batch).",
    )

    auto_migrate: bool = Field(
        default=True,
        description="Create the database and bring its schema to the latest revision on first "
        "use, as `chainlake db migrate` does (one query when it is already current). Turn off "
        "where schema changes go through a release process.",
    )

    def _ready(self) -> None:
        if self.auto_migrate and self.url not in _SCHEMA_CHECKED:
            db.ensure_schema(self.url)
            _SCHEMA_CHECKED.add(self.url)

    def migrated_url(self) -> str:
        """The URL, once the schema is known to be current (see `auto_migrate`)."""
        self._ready()
        return self.url

    @contextmanager
    def connection(self, *, autocommit: bool = False) -> Iterator[Conn]:
        """A connection that commits when the block succeeds and rolls back when it raises."""
        self._ready()
        with db.connection(self.url, autocommit=autocommit) as conn:
            yield conn

    def connect(self, *, autocommit: bool = False) -> Conn:
        self._ready()
        return db.connect(self.url, autocommit=autocommit)
