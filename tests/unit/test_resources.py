"""The resources' configuration: the Delta storage and ClickHouse engine variants, values read
from the environment when a run starts (not when the code loads), Dagster's validation of the
variants, and the code location loading with and without an environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import dagster as dg
import pytest

from chainlake import instance_names
from chainlake.lake import DeltaStore
from resources.clickhouse import ClickHouseResource, ClickHouseServer, EmbeddedClickHouse
from resources.delta import DeltaResource, LocalStorage, S3Storage
from resources.duckdb import ServingDuckDB
from resources.notifiers import NotifiersResource
from resources.postgres import PostgresResource

ROOT = Path(__file__).resolve().parents[2]
S3_VARIABLES = (
    "S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "DELTA_S3_CREATE_BUCKET",
)


@pytest.fixture(autouse=True)
def no_store_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an environment without the stores' variables."""
    for name in (
        "DELTA_ROOT",
        "CLICKHOUSE_URL",
        "CLICKHOUSE_PATH",
        "DUCKDB_PATH",
        "POSTGRES_URL",
        "CHAINLAKE_INSTANCE",
        "CHAINLAKE_SECRET_KEY",
        "CHAINLAKE_RESIDENT_EVALUATOR_SECONDS",
        "SMTP_HOST",
        "SMTP_PORT",
        "SMTP_FROM",
        *S3_VARIABLES,
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def bucket_checks(monkeypatch: pytest.MonkeyPatch) -> list[DeltaStore]:
    """Stores whose bucket the resource checked (no S3 server is contacted)."""
    checked: list[DeltaStore] = []
    monkeypatch.setattr(DeltaStore, "check_bucket", lambda self, **_: checked.append(self))
    return checked


def _init(resource: DeltaResource) -> DeltaStore:
    return resource.create_resource(dg.build_init_resource_context())


SEEN: list[DeltaStore] = []


@dg.asset
def probe(delta: dg.ResourceParam[DeltaStore]) -> None:
    """Records the store a run was given."""
    SEEN.append(delta)


def _run_probe(resources: dict[str, object], **kwargs: object) -> DeltaStore:
    SEEN.clear()
    result = dg.materialize([probe], resources=resources, **kwargs)  # type: ignore[arg-type]
    assert result.success
    (store,) = SEEN
    return store


def test_s3_storage_yields_a_store_with_the_s3_options(bucket_checks: list[DeltaStore]) -> None:
    resource = DeltaResource(
        root="s3://lake/prod/delta",
        storage=S3Storage(
            endpoint_url="http://127.0.0.1:9000",
            region="eu-west-1",
            access_key_id="key-id",
            secret_access_key="secret",
            create_bucket=True,
        ),
    )
    store = _init(resource)
    assert isinstance(store, DeltaStore) and store.is_s3
    assert store.root == "s3://lake/prod/delta"
    assert (store.bucket, store.prefix) == ("lake", "prod/delta")
    assert store.storage_options() == {
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ACCESS_KEY_ID": "key-id",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_ALLOW_HTTP": "true",
    }
    assert store.s3_create_bucket is True
    assert bucket_checks == [store]  # the bucket is checked once, when the run starts


def test_unset_s3_fields_are_read_from_the_environment_when_the_run_starts(
    bucket_checks: list[DeltaStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    resource = DeltaResource(root="s3://lake/delta", storage=S3Storage())
    monkeypatch.setenv("S3_ENDPOINT_URL", "https://minio.example:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    # explicit, so that DuckDB's views over the tables get the credentials too
    assert _init(resource).storage_options() == {
        "AWS_REGION": "ap-south-1",
        "AWS_ENDPOINT_URL": "https://minio.example:9000",
        "AWS_ACCESS_KEY_ID": "from-env",
        "AWS_SECRET_ACCESS_KEY": "env-secret",
    }


def test_local_storage_yields_a_local_store(
    tmp_path: Path, bucket_checks: list[DeltaStore]
) -> None:
    store = _init(DeltaResource(root=str(tmp_path / "delta"), storage=LocalStorage()))
    assert isinstance(store, DeltaStore) and not store.is_s3
    assert store.root == str(tmp_path / "delta")
    assert store.storage_options() == {}
    assert bucket_checks == []
    assert _init(DeltaResource()).root == "data/delta"  # the default: local, data/delta


def test_root_and_storage_must_agree(bucket_checks: list[DeltaStore]) -> None:
    with pytest.raises(ValueError, match="on S3 but the resource's storage is local"):
        _init(DeltaResource(root="s3://lake/delta", storage=LocalStorage()))
    with pytest.raises(ValueError, match="must be s3://bucket/prefix with storage: s3"):
        _init(DeltaResource(root="data/delta", storage=S3Storage()))
    assert bucket_checks == []


def test_an_envvar_field_resolves_from_the_environment_at_run_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resource = DeltaResource(root=dg.EnvVar("DELTA_ROOT"), storage=LocalStorage())
    dg.Definitions(assets=[probe], resources={"delta": resource})  # built while unset
    monkeypatch.setenv("DELTA_ROOT", str(tmp_path / "first"))
    assert _run_probe({"delta": resource}).root == str(tmp_path / "first")
    monkeypatch.setenv("DELTA_ROOT", str(tmp_path / "second"))
    assert _run_probe({"delta": resource}).root == str(tmp_path / "second")


def test_the_code_locations_switch_and_run_time_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket_checks: list[DeltaStore]
) -> None:
    from pipelines.resources import clickhouse_resource, delta_resource

    # loaded without DELTA_ROOT: local, and the root is whatever DELTA_ROOT is at run time
    local = delta_resource()
    assert isinstance(local.storage, LocalStorage) and local.root is None
    assert _run_probe({"delta": local}).root == "data/delta"
    monkeypatch.setenv("DELTA_ROOT", str(tmp_path / "later"))
    assert _run_probe({"delta": local}).root == str(tmp_path / "later")

    # loaded with an s3:// root: S3 storage, the root an EnvVar the UI names
    monkeypatch.setenv("DELTA_ROOT", "s3://bucket/prefix")
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    remote = delta_resource()
    assert isinstance(remote.storage, S3Storage)
    assert isinstance(remote.root, dg.EnvVar) and remote.root.env_var_name == "DELTA_ROOT"
    store = _run_probe({"delta": remote})
    assert store.root == "s3://bucket/prefix" and store.s3_endpoint_url == "http://127.0.0.1:9000"
    assert bucket_checks == [store]

    # ClickHouse: embedded unless CLICKHOUSE_URL is set (an empty value counts as unset)
    monkeypatch.setenv("CLICKHOUSE_URL", "")
    assert isinstance(clickhouse_resource().engine, EmbeddedClickHouse)
    monkeypatch.setenv("CLICKHOUSE_URL", "http://u:p@clickhouse:8123/chainlake")
    server = clickhouse_resource().engine
    assert isinstance(server, ClickHouseServer)
    assert isinstance(server.url, dg.EnvVar) and server.url.env_var_name == "CLICKHOUSE_URL"


@pytest.mark.parametrize(
    ("resource_key", "resource", "config"),
    [
        ("delta", DeltaResource(), {"storage": {"gcs": {}}}),
        ("clickhouse", ClickHouseResource(), {"engine": {"cloud": {"url": "x"}}}),
    ],
)
def test_an_unknown_variant_is_refused_by_dagster_config_validation(
    resource_key: str, resource: dg.ConfigurableResource, config: dict[str, object]
) -> None:
    (field,) = config
    (variant,) = config[field]  # type: ignore[misc]

    @dg.asset(required_resource_keys={resource_key})
    def uses() -> None:
        pass

    with pytest.raises(dg.DagsterInvalidConfigError) as e:
        dg.materialize(
            [uses],
            resources={resource_key: resource},
            run_config={"resources": {resource_key: {"config": config}}},
        )
    message = str(e.value)
    assert f'unexpected config entry "{variant}"' in message
    assert f"root:resources:{resource_key}:config:{field}" in message


def test_a_variant_can_be_chosen_in_run_config(
    tmp_path: Path, bucket_checks: list[DeltaStore]
) -> None:
    store = _run_probe(
        {"delta": DeltaResource()},
        run_config={
            "resources": {
                "delta": {
                    "config": {
                        "root": "s3://other/lake",
                        "storage": {"s3": {"endpoint_url": "http://127.0.0.1:1"}},
                    }
                }
            }
        },
    )
    assert store.root == "s3://other/lake" and store.s3_endpoint_url == "http://127.0.0.1:1"
    assert bucket_checks == [store]


def test_clickhouse_engines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    embedded = ClickHouseResource()
    assert embedded.embedded
    assert embedded.data_dir() == Path("data/clickhouse").resolve()
    monkeypatch.setenv("CLICKHOUSE_PATH", str(tmp_path / "ch"))
    assert embedded.dsn() == f"chdb://{tmp_path / 'ch'}"  # read when used, not at load
    assert embedded.describe() == f"chdb:{tmp_path / 'ch'}"
    pinned = ClickHouseResource(engine=EmbeddedClickHouse(path=str(tmp_path / "pinned")))
    assert pinned.data_dir() == tmp_path / "pinned"

    server = ClickHouseResource(
        engine=ClickHouseServer(url="https://user:pw@ch.example:8443/analytics")
    )
    assert not server.embedded
    assert server.dsn() == "https://user:pw@ch.example:8443/analytics"
    assert server.describe() == "https://ch.example:8443/analytics"  # no credentials
    with pytest.raises(TypeError, match="no local data directory"):
        server.data_dir()


def test_a_server_session_connects_with_the_url_credentials_and_timeouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No ClickHouse server can run here: the client factory is replaced, and what the
    resource asks of clickhouse-connect is checked."""
    import clickhouse_connect

    calls: list[dict[str, object]] = []

    class Client:
        def close(self) -> None:
            calls.append({"closed": True})

    def get_client(**kwargs: object) -> Client:
        calls.append(kwargs)
        return Client()

    monkeypatch.setattr(clickhouse_connect, "get_client", get_client)
    url = "http://u:pw@ch:8123/chainlake"
    with ClickHouseResource(engine=ClickHouseServer(url=url)).session() as ch:
        assert not ch.embedded
    engine = ClickHouseServer(
        url=url, username="other", password="secret", connect_timeout_seconds=3
    )
    with ClickHouseResource(engine=engine).session():
        pass
    assert calls == [
        # None / "" leave the URL's user and password in force
        {"dsn": url, "username": None, "password": "", "connect_timeout": 10.0,
         "send_receive_timeout": 300.0},
        {"closed": True},
        {"dsn": url, "username": "other", "password": "secret", "connect_timeout": 3.0,
         "send_receive_timeout": 300.0},
        {"closed": True},
    ]  # fmt: skip


def test_optional_settings_of_the_other_resources_are_read_when_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    duckdb, postgres, notifiers = ServingDuckDB(), PostgresResource(), NotifiersResource()
    assert duckdb.path == Path("data/chainlake.duckdb")
    # this checkout's own events database (tests/unit/test_instance_names.py: its name)
    assert postgres.database_url() == instance_names.names({}).events_url
    assert postgres.fernet_key() is None and postgres.resident_lifetime_seconds() == 3600
    smtp = notifiers.smtp_settings()
    assert (smtp.host, smtp.port, smtp.sender) == ("127.0.0.1", 25, "chainlake@localhost")

    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "serving.duckdb"))
    # never connected to: a name of this test's own, as every test's database has
    own_url = f"postgresql://app@db:5432/chainlake_test_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("POSTGRES_URL", own_url)
    monkeypatch.setenv("CHAINLAKE_SECRET_KEY", "k")
    monkeypatch.setenv("CHAINLAKE_RESIDENT_EVALUATOR_SECONDS", "0")
    monkeypatch.setenv("SMTP_HOST", "mail.example")
    monkeypatch.setenv("SMTP_PORT", "587")
    monkeypatch.setenv("SMTP_FROM", "")  # docker-compose's `${SMTP_FROM:-}`: unset
    assert duckdb.path == tmp_path / "serving.duckdb"
    assert postgres.database_url() == own_url
    assert postgres.fernet_key() == "k" and postgres.resident_lifetime_seconds() == 0
    smtp = notifiers.smtp_settings()
    assert (smtp.host, smtp.port, smtp.sender) == ("mail.example", 587, "chainlake@localhost")
    # a value in the resource's config wins over the variable
    assert PostgresResource(url="postgresql://x@y/z").database_url() == "postgresql://x@y/z"
    assert PostgresResource(resident_evaluator_seconds=5).resident_lifetime_seconds() == 5

    monkeypatch.setenv("SMTP_PORT", "twenty-five")
    with pytest.raises(ValueError, match="SMTP_PORT is not an integer"):
        notifiers.smtp_settings()


def test_every_resource_field_has_a_description() -> None:
    from pipelines.resources import RESOURCES

    configs: list[type[dg.Config]] = [
        *(type(r) for r in RESOURCES.values()),
        LocalStorage,
        S3Storage,
        EmbeddedClickHouse,
        ClickHouseServer,
    ]
    missing = [
        f"{c.__name__}.{name}"
        for c in configs
        for name, info in c.model_fields.items()
        if not info.description
    ]
    assert not missing
    assert "database" in ServingDuckDB.model_fields  # the inherited fields are covered too


LOAD = textwrap.dedent(
    """
    import json
    from dagster._core.remote_representation.external_data import RepositorySnap
    from pipelines.definitions import defs

    snap = RepositorySnap.from_def(defs.get_repository_def())
    print(json.dumps({
        r.name: {
            k: v if isinstance(v, str) else {"env": v.name}
            for k, v in r.configured_values.items()
        }
        for r in snap.resources
    }))
    """
)


def _load_definitions(**env: str) -> dict[str, dict[str, object]]:
    """What the UI shows of each resource, with the code location loaded by a fresh
    interpreter in an environment of only `env` (the switch is made at load)."""
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", LOAD],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_code_location_loads_with_no_environment_at_all() -> None:
    shown = _load_definitions()
    assert shown["delta"] == {"root": "null", "storage": '{"local": {}}'}
    assert json.loads(shown["clickhouse"]["engine"]) == {  # type: ignore[arg-type]
        "embedded": {"lock_timeout_seconds": 600.0, "path": None}
    }
    assert shown["postgres"]["url"] == "null"


def test_the_code_location_loads_with_an_s3_root_and_a_clickhouse_server() -> None:
    shown = _load_definitions(
        DELTA_ROOT="s3://bucket/prefix", CLICKHOUSE_URL="http://u:pw-5e8c1a@ch:8123/chainlake"
    )
    assert shown["delta"]["root"] == {"env": "DELTA_ROOT"}
    assert json.loads(shown["delta"]["storage"])["s3"]["endpoint_url"] is None  # type: ignore[arg-type]
    engine = json.loads(shown["clickhouse"]["engine"])  # type: ignore[arg-type]
    assert engine["server"]["url"] == {"env": "CLICKHOUSE_URL"}
    assert "pw-5e8c1a" not in json.dumps(shown)  # the UI names the variables, not their values
