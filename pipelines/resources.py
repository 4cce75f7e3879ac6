"""Every resource of the code location, configured from the environment through `dg.EnvVar`.

A fresh clone runs with no environment at all: every store then has its embedded default
(local Delta folder, in-process ClickHouse, DuckDB file, local PostgreSQL). The variables:

| variable | default | read |
|---|---|---|
| `DELTA_ROOT` | `data/delta` | at load (the Delta switch below) and as `EnvVar` when set |
| `S3_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` | unset | at run time, S3 only |
| `AWS_REGION` (`AWS_DEFAULT_REGION`) | `us-east-1` | at run time, S3 only |
| `DELTA_S3_CREATE_BUCKET` | `false` | at run time, S3 only |
| `CLICKHOUSE_URL` | unset | at load (the ClickHouse switch below), then as `EnvVar` |
| `CLICKHOUSE_PATH` | `data/clickhouse` | at run time, embedded engine only |
| `DUCKDB_PATH` | `data/chainlake.duckdb` | at run time |
| `POSTGRES_URL` | `postgresql://postgres@127.0.0.1:5432/<instance>_events` (`chainlake.instance_names`) | at run time |
| `CHAINLAKE_INSTANCE` | named after the checkout's path | at run time, when `POSTGRES_URL` is unset |
| `CHAINLAKE_SECRET_KEY` | unset | at run time |
| `CHAINLAKE_RESIDENT_EVALUATOR_SECONDS` | `3600` | at run time (and by the sensor) |
| `SMTP_HOST`, `SMTP_PORT`, `SMTP_USERNAME`, `SMTP_PASSWORD`, `SMTP_FROM` | see `resources.notifiers` | at run time |

Only the choice of store kind is made when the code location loads, one explicit switch per
store, because it decides the shape of the configuration (the `storage` and `engine`
variants): `DELTA_ROOT` starting with s3:// selects `S3Storage`, else `LocalStorage`; a
non-empty `CLICKHOUSE_URL` selects `ClickHouseServer`, else `EmbeddedClickHouse`. Changing
either variable needs a reload of the code location (a run that finds `DELTA_ROOT` moved to
or from S3 since then fails with an error saying so).

Every other value is either a `dg.EnvVar` field, resolved by Dagster when the run starts and
shown in the UI by its variable name (`DELTA_ROOT` when set, `CLICKHOUSE_URL` in server mode:
the switch guarantees they are set), or, for a variable that may be unset, a field left
unset that the resource resolves with `dg.EnvVar(name).get_value()` when it is used. An
unset variable cannot be an `EnvVar` field: Dagster fails the run rather than fall back to a
default. The field descriptions, shown in the UI, name the variable each unset field reads.
So no value from the environment is frozen when the code loads.

Pools (dagster.yaml gives unconfigured pools one slot): `clickhouse` serialises the embedded
engine's writers, `duckdb` the serving file's writer.
"""

from __future__ import annotations

import dagster as dg

from resources.clickhouse import ClickHouseResource, ClickHouseServer, EmbeddedClickHouse
from resources.delta import DeltaResource, LocalStorage, S3Storage
from resources.duckdb import ServingDuckDB
from resources.notifiers import NotifiersResource
from resources.postgres import PostgresResource
from resources.rpc import RpcResource


def delta_resource() -> DeltaResource:
    """The Delta Lake resource, its storage chosen by `DELTA_ROOT` as the code loads.

    Returns:
        S3 storage for an s3:// root, else local storage; `root` is `EnvVar("DELTA_ROOT")`
        when the variable is set, else unset (read at run time, default data/delta).
    """
    root = dg.EnvVar("DELTA_ROOT")
    value = root.get_value()  # the switch: read once, when the code location loads
    if not value:
        return DeltaResource(storage=LocalStorage())
    if value.startswith("s3://"):
        return DeltaResource(root=root, storage=S3Storage())
    return DeltaResource(root=root, storage=LocalStorage())


def clickhouse_resource() -> ClickHouseResource:
    """The ClickHouse resource, its engine chosen by `CLICKHOUSE_URL` as the code loads.

    Returns:
        A server at `EnvVar("CLICKHOUSE_URL")` when the variable is set and not empty, else
        the embedded engine (its directory read at run time, default data/clickhouse).
    """
    url = dg.EnvVar("CLICKHOUSE_URL")
    if url.get_value():  # the switch: read once, when the code location loads
        return ClickHouseResource(engine=ClickHouseServer(url=url))
    return ClickHouseResource(engine=EmbeddedClickHouse())


RESOURCES: dict[str, dg.ConfigurableResource] = {
    "delta": delta_resource(),
    "rpc": RpcResource(),
    "clickhouse": clickhouse_resource(),
    "duckdb": ServingDuckDB(),
    "postgres": PostgresResource(),
    "notifiers": NotifiersResource(),
}
