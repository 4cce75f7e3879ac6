"""Alembic environment: the schema is written as SQL in the revisions, no ORM metadata.

The URL comes from the caller (`chainlake.events.migrate.alembic_config`), never from the
environment here, so the same revisions serve the CLI, tests and the benchmark.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from chainlake.events.db import VERSION_TABLE, sqlalchemy_url

url = context.config.attributes.get("url") or context.config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("no database URL given to the migrations (use `chainlake db migrate`)")

if context.is_offline_mode():
    context.configure(url=sqlalchemy_url(url), literal_binds=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection, version_table=VERSION_TABLE, transaction_per_migration=True
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
