"""Delta tables on S3-compatible object storage: a moto server on 127.0.0.1, started here,
with IAM authentication on, so wrong credentials are refused as on AWS or MinIO."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from chainlake.config import ChainConfig
from chainlake.lake import DeltaStore, ObjectStoreError
from tests.chain_helpers import ROOT, Filler, anvil_node, day_ts, free_port, write_chains_yaml

pytestmark = pytest.mark.integration

CHAIN = ChainConfig(
    name="devnet", network="devnet", subnet="local", chain_id=31337,
    rpc_urls=("http://127.0.0.1:1",), start_date=dt.date(2026, 11, 1),
)  # fmt: skip
TABLES = ["blocks", "transactions", "logs", "traces", "token_transfers"]


@dataclass(frozen=True)
class S3:
    endpoint: str
    key_id: str
    secret: str

    def store(self, root: str, **kw: object) -> DeltaStore:
        return DeltaStore(
            root=root,
            s3_endpoint_url=self.endpoint,
            s3_access_key_id=kw.pop("key_id", self.key_id),  # type: ignore[arg-type]
            s3_secret_access_key=kw.pop("secret", self.secret),  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    import boto3
    import httpx

    port = free_port()
    # the first three calls (creating a user, its key and its policy) go without auth;
    # every later one must be signed with a key moto knows
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)
        iam = boto3.client(
            "iam", endpoint_url=url, region_name="us-east-1",
            aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
        )  # fmt: skip
        iam.create_user(UserName="lake")
        key = iam.create_access_key(UserName="lake")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}  # fmt: skip
        iam.put_user_policy(UserName="lake", PolicyName="lake", PolicyDocument=json.dumps(policy))
        yield S3(url, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        proc.terminate()
        proc.wait(10)


def test_missing_bucket_and_wrong_credentials_are_clear_errors(s3: S3) -> None:
    with pytest.raises(
        ObjectStoreError,
        match=r"bucket 'nope' at http://127.0.0.1:\d+ .* does not exist.*DELTA_S3_CREATE_BUCKET",
    ):
        s3.store("s3://nope/lake").check_bucket()
    s3.store("s3://made/lake", s3_create_bucket=True).check_bucket()
    s3.store("s3://made/lake").check_bucket()  # now it exists
    with pytest.raises(
        ObjectStoreError, match=r"refused the credentials for bucket 'made'.*AWS_SECRET_ACCESS_KEY"
    ):
        s3.store("s3://made/lake", secret="wrong").check_bucket()
    with pytest.raises(ObjectStoreError, match="refused the credentials"):
        s3.store("s3://made/lake", key_id="AKIAUNKNOWN0000000000").check_bucket()


def test_a_run_against_a_missing_bucket_fails_before_reading(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from assets.raw.chain_tables import raw_chain_tables
    from resources.delta import DeltaResource, S3Storage
    from resources.rpc import RpcResource

    monkeypatch.setenv(
        "CHAINS_CONFIG", str(write_chains_yaml(tmp_path / "c.yaml", ["http://127.0.0.1:1"]))
    )
    # The resource checks the bucket when the run starts (a plain DeltaStore is not checked).
    delta = DeltaResource(
        root="s3://absent/lake",
        storage=S3Storage(
            endpoint_url=s3.endpoint, access_key_id=s3.key_id, secret_access_key=s3.secret
        ),
    )
    with pytest.raises(dg.DagsterResourceFunctionError) as e:
        dg.materialize(
            [raw_chain_tables],
            partition_key="devnet|2026-11-06",
            resources={"delta": delta, "rpc": RpcResource(max_retries=0)},
        )
    assert isinstance(e.value.__cause__, ObjectStoreError)
    assert "bucket 'absent'" in str(e.value.__cause__)


def _tables(store: DeltaStore, chain: ChainConfig) -> dict[str, pl.DataFrame]:
    out = {}
    for t in TABLES:
        df = store.scan(chain, t).collect()  # type: ignore[union-attr]
        keys = [
            c
            for c in ("block_number", "transaction_index", "log_index", "trace_index")
            if c in df.columns
        ]
        out[t] = df.sort(keys)
    return out


def test_every_table_on_s3_with_credentials_from_the_environment(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """raw, core and state tables on s3://bucket/prefix, identical to a local run, through a
    reorg across midnight too (which lists, deletes and rewrites on S3)."""
    import dagster as dg

    from assets.core.token_transfers import token_transfers
    from assets.raw.chain_tables import raw_chain_tables
    from chainlake.config import load_chains
    from resources.rpc import RpcResource

    d1, d2 = dt.date(2026, 11, 6), dt.date(2026, 11, 7)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret)
    remote = DeltaStore(
        root="s3://chain-lake/prod/delta", s3_endpoint_url=s3.endpoint, s3_create_bucket=True
    )
    local = DeltaStore(root=str(tmp_path / "local"))

    with anvil_node(genesis_ts=day_ts(d1)) as node:
        monkeypatch.setenv("CHAINS_CONFIG", str(write_chains_yaml(tmp_path / "c.yaml", [node.url])))
        chain = load_chains()["devnet"]
        f = Filler(node)
        f.deploy_emitter(day_ts(d1, 60))
        for i in range(6):
            f.block(day_ts(d1, 86_000 + i * 60), transfers=2, logs=2, salt=i)
        snap = node.rpc("evm_snapshot")
        for i in range(3):
            f.block(day_ts(d2, 10 + i * 12), transfers=1, logs=1, salt=10 + i)

        def run(store: DeltaStore, *days: dt.date) -> None:
            for day in days:
                r = dg.materialize(
                    [raw_chain_tables, token_transfers],
                    partition_key=f"devnet|{day}",
                    resources={"delta": store, "rpc": RpcResource()},
                )
                assert r.success and all(c.passed for c in r.get_asset_check_evaluations())

        run(remote, d1, d2)
        run(local, d1, d2)
        for t, df in _tables(remote, chain).items():
            assert df.equals(_tables(local, chain)[t]), t
        assert remote.list_tables(chain) == sorted(TABLES)
        assert remote.exists(chain, "_state/checkpoint") and remote.exists(
            chain, "_state/day_ranges"
        )

        node.rpc("evm_revert", [snap])
        f.nonce = int(node.rpc("eth_getTransactionCount", [f.sender, "pending"]), 16)
        for i in range(4):
            f.block(day_ts(d2, 30 + i * 12), transfers=2, logs=1, salt=20 + i)
        run(remote, d2)
        clean = DeltaStore(root=str(tmp_path / "clean"))
        run(clean, d1, d2)
        for t, df in _tables(remote, chain).items():
            assert df.equals(_tables(clean, chain)[t]), t
        audit = remote.scan(chain, "_state/reorgs").collect()  # type: ignore[union-attr]
        assert sorted(audit["block_number"].to_list()) == [8, 9, 10]


def _writer(
    endpoint: str,
    key_id: str,
    secret: str,
    worker: int,
    days: list[str],
    rounds: int,
    start: object,
) -> int:
    """One process writing its own days of a shared table, `rounds` times each, starting
    with the others (the first round races to create the table, too)."""
    store = DeltaStore(
        root="s3://concurrency/lake", s3_endpoint_url=endpoint,
        s3_access_key_id=key_id, s3_secret_access_key=secret,
    )  # fmt: skip
    commits = 0
    start.wait()  # type: ignore[attr-defined]
    for r in range(rounds):
        for day in days:
            d = dt.date.fromisoformat(day)
            df = pl.DataFrame(
                {"date": [d] * 50, "block_number": list(range(50)), "worker": worker, "round": r}
            )
            store.replace_day(CHAIN, "shared", d, df)
            commits += 1
    return commits


def test_concurrent_writers_of_different_days_never_lose_a_commit(s3: S3) -> None:
    s3.store("s3://concurrency/lake", s3_create_bucket=True).check_bucket()
    workers, per_worker, rounds = 4, 2, 3
    days = [
        [
            (dt.date(2026, 11, 1) + dt.timedelta(days=w * per_worker + i)).isoformat()
            for i in range(per_worker)
        ]
        for w in range(workers)
    ]
    # spawn, not fork: deltalake in a forked child of a process that used it crashes
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(workers) as pool:
        start = manager.Barrier(workers)
        commits = pool.starmap(
            _writer,
            [
                (s3.endpoint, s3.key_id, s3.secret, w, days[w], rounds, start)
                for w in range(workers)
            ],
        )
    assert sum(commits) == workers * per_worker * rounds
    store = s3.store("s3://concurrency/lake")
    table = store._table(store.table_uri(CHAIN, "shared"))
    assert table is not None
    writes = [h for h in table.history() if h.get("operation") in ("WRITE", "CREATE TABLE")]
    assert len(writes) == sum(commits)  # every commit landed
    df = store.scan(CHAIN, "shared").collect()  # type: ignore[union-attr]
    assert df.height == workers * per_worker * 50
    per_day = df.group_by("date").agg(pl.col("worker").unique(), pl.col("round").unique(), pl.len())
    assert per_day.height == workers * per_worker
    for row in per_day.iter_rows(named=True):
        w = next(i for i, ds in enumerate(days) if row["date"].isoformat() in ds)
        assert row["worker"] == [w] and row["round"] == [rounds - 1] and row["len"] == 50


def test_the_code_locations_delta_resource_reads_s3_settings_when_the_run_starts(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resource as pipelines.resources builds it for an s3:// DELTA_ROOT, with endpoint,
    credentials and bucket creation from the environment of the run: a day written through
    its store reads back, and DuckDB-facing storage options carry the credentials."""
    import dagster as dg

    from pipelines.resources import delta_resource
    from resources.delta import S3Storage

    monkeypatch.setenv("DELTA_ROOT", "s3://from-env/lake")
    resource = delta_resource()
    assert isinstance(resource.storage, S3Storage)
    for name, value in {
        "S3_ENDPOINT_URL": s3.endpoint,
        "AWS_ACCESS_KEY_ID": s3.key_id,
        "AWS_SECRET_ACCESS_KEY": s3.secret,
        "DELTA_S3_CREATE_BUCKET": "true",
    }.items():
        monkeypatch.setenv(name, value)  # after the resource was built, as for a later run
    with dg.build_resources({"delta": resource}) as resources:
        store: DeltaStore = resources.delta
    assert store.storage_options()["AWS_ACCESS_KEY_ID"] == s3.key_id
    day = dt.date(2026, 11, 2)
    store.replace_day(CHAIN, "probe", day, pl.DataFrame({"date": [day], "block_number": [1]}))
    assert store.scan(CHAIN, "probe").collect()["block_number"].to_list() == [1]  # type: ignore[union-attr]

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")  # read again by the next run
    with pytest.raises(dg.DagsterResourceFunctionError) as e:
        with dg.build_resources({"delta": resource}):
            pass
    assert isinstance(e.value.__cause__, ObjectStoreError)
    assert "refused the credentials for bucket 'from-env'" in str(e.value.__cause__)


def test_chainlake_sql_reads_the_lake_on_s3(s3: S3, tmp_path: Path) -> None:
    """`chainlake sql` with an s3:// DELTA_ROOT and the S3 settings of the Delta resource:
    DuckDB reads the chain's tables there (its own S3 client, given the same credentials)."""
    from click.testing import CliRunner

    from cli.main import main

    store = s3.store("s3://sql-lake/delta", s3_create_bucket=True)
    for n, day in enumerate((dt.date(2026, 11, 2), dt.date(2026, 11, 3)), start=1):
        rows = pl.DataFrame({"date": [day] * n, "block_number": list(range(n))})
        store.replace_day(CHAIN, "blocks", day, rows)
    env = {
        "CHAINS_CONFIG": str(write_chains_yaml(tmp_path / "c.yaml", ["http://127.0.0.1:1"])),
        "DELTA_ROOT": "s3://sql-lake/delta",
        "S3_ENDPOINT_URL": s3.endpoint,
        "AWS_ACCESS_KEY_ID": s3.key_id,
        "AWS_SECRET_ACCESS_KEY": s3.secret,
        "DUCKDB_PATH": str(tmp_path / "none.duckdb"),
    }
    query = "SELECT date, count(*) AS n FROM devnet_blocks GROUP BY date ORDER BY date"
    result = CliRunner().invoke(
        main, ["sql", "-c", query, "--format", "csv", "--no-clickhouse"], env=env
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["date,n", "2026-11-02,1", "2026-11-03,2"]
    wrong = CliRunner().invoke(
        main, ["sql", "-c", query, "--no-clickhouse"], env={**env, "AWS_SECRET_ACCESS_KEY": "x"}
    )
    assert wrong.exit_code == 1 and "refused the credentials" in wrong.output
