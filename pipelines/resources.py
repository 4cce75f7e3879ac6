"""Every resource of the code location, each store selected by environment variables.

Unset variables fall back to the embedded defaults (local Delta folder, in-process ClickHouse,
DuckDB file, local PostgreSQL), so a fresh clone runs with no environment at all.

- `DELTA_ROOT` (local folder or s3://bucket/prefix) with `S3_ENDPOINT_URL`, `AWS_*`;
- `CLICKHOUSE_URL` (unset: the embedded engine on `CLICKHOUSE_PATH`, default data/clickhouse);
- `DUCKDB_PATH` (default data/chainlake.duckdb);
- `POSTGRES_URL`, `CHAINLAKE_SECRET_KEY`, `SMTP_*` for the trigger engine.

Pools (dagster.yaml gives unconfigured pools one slot): `clickhouse` serialises the embedded
engine's writers, `duckdb` the serving file's writer.
"""

from __future__ import annotations

import os

import dagster as dg

from chainlake.events.db import DEFAULT_POSTGRES_URL
from chainlake.settings import env
from resources.clickhouse import ClickHouseResource
from resources.delta import DeltaResource
from resources.duckdb import ServingDuckDB
from resources.notifiers import NotifiersResource
from resources.postgres import PostgresResource
from resources.rpc import RpcResource

RESOURCES: dict[str, dg.ConfigurableResource] = {
    "delta": DeltaResource(
        root=env("DELTA_ROOT", "data/delta"),
        s3_endpoint_url=env("S3_ENDPOINT_URL", None),
        s3_access_key_id=env("AWS_ACCESS_KEY_ID", None),
        s3_secret_access_key=env("AWS_SECRET_ACCESS_KEY", None),
    ),
    "rpc": RpcResource(),
    "clickhouse": ClickHouseResource(
        url=env("CLICKHOUSE_URL", ""),
        path=env("CLICKHOUSE_PATH", "data/clickhouse"),
    ),
    "duckdb": ServingDuckDB(database=env("DUCKDB_PATH", "data/chainlake.duckdb")),
    "postgres": PostgresResource(
        url=env("POSTGRES_URL", DEFAULT_POSTGRES_URL),
        secret_key=env("CHAINLAKE_SECRET_KEY", None),
        resident_evaluator_seconds=(
            dg.EnvVar.int("CHAINLAKE_RESIDENT_EVALUATOR_SECONDS")
            if os.environ.get("CHAINLAKE_RESIDENT_EVALUATOR_SECONDS")
            else 3600
        ),
    ),
    "notifiers": NotifiersResource(
        smtp_host=env("SMTP_HOST", "127.0.0.1"),
        smtp_port=dg.EnvVar.int("SMTP_PORT") if os.environ.get("SMTP_PORT") else 25,
        smtp_username=env("SMTP_USERNAME", None),
        smtp_password=env("SMTP_PASSWORD", None),
        smtp_sender=env("SMTP_FROM", "chainlake@localhost"),
    ),
}
