"""Two instances side by side on one PostgreSQL server, as two checkouts on one machine: each
`CHAINLAKE_INSTANCE` gets its own Dagster storage and events databases (made by
`python -m chainlake.instance`, as `make instance` does), a run of one is not in the other, and
each resident evaluator (a real `resident_evaluator_job` run, in a process of its own that
picks its database from `CHAINLAKE_INSTANCE` alone) is live at the same time as the other's,
evaluates and delivers its own instance's events only. Then `python -m chainlake.instance drop`
(what `make clean` runs) drops one instance's databases and leaves the other's.

Every database here is named `clinst_<random>_...` and dropped at the end, so two checkouts
running these tests at once never meet."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from psycopg import sql
from triggers_helpers import feedback, receiver, wait_until

from chainlake import instance_names
from chainlake.events import db, store
from chainlake.events.resident import live_evaluator
from chainlake.events.spec import Resolver, apply_spec, parse_spec
from chainlake.instance import drop_databases, ensure_database
from resources.postgres import PostgresResource

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
# What each instance's resident evaluator process runs: the job of the code location, with the
# code location's resources (PostgresResource() with no URL: the instance's own database).
EVALUATOR = """
import sys
import dagster as dg
from pipelines.definitions import defs
job = defs.resolve_job_def("resident_evaluator_job")
config = {"max_seconds": int(sys.argv[1]), "idle_wait_seconds": 0.5}
with dg.DagsterInstance.get() as instance:
    job.execute_in_process(instance=instance, run_config={"ops": {"serve_triggers": {"config": config}}})
"""


def _databases(prefix: str) -> set[str]:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
        ).fetchall()
    return {r[0] for r in rows}


@contextlib.contextmanager
def instance_prefix() -> Iterator[str]:
    """A prefix for this test's instance names; every database under it is dropped after."""
    prefix = f"clinst_{uuid.uuid4().hex[:10]}_"
    try:
        yield prefix
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            for name in sorted(_databases(prefix)):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def _env(name: str, home: Path, **extra: str) -> dict[str, str]:
    """A checkout's environment with CHAINLAKE_INSTANCE set and no database URL; the Dagster URL
    is the one the Makefile exports (`python3 -m chainlake.instance_names dagster-url`)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DAGSTER_") and k not in ("POSTGRES_URL", "CHAINLAKE_INSTANCE")
    }
    env.update(
        CHAINLAKE_INSTANCE=name,
        DAGSTER_HOME=str(home),
        DAGSTER_POSTGRES_URL=instance_names.names({"CHAINLAKE_INSTANCE": name}).dagster_url,
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def _chainlake_instance(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chainlake.instance", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _trigger(trigger_id: str) -> dict[str, Any]:
    return {
        "user": "ops",
        "triggers": [
            {
                "id": trigger_id,
                "chain_id": 31337,
                "registry": "reputation",
                "conditions": [{"type": "score_threshold", "operator": "lt", "value": 30}],
                "actions": [{"name": "hook", "type": "rest", "url": "${HOOK_URL}/score"}],
            }
        ],
    }


def _dagster_instance(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    """The Dagster instance the UI of the checkout with `env` shows."""
    with monkeypatch.context() as m:
        m.setenv("DAGSTER_POSTGRES_URL", env["DAGSTER_POSTGRES_URL"])
        return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])


def _count(url: str, table: str) -> int:
    with db.connection(url) as conn:
        query = sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table))
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row["n"])


@contextlib.contextmanager
def _evaluator(env: dict[str, str], log: Path, seconds: int) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", EVALUATOR, str(seconds)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # the run ends as interrupted; its lock goes
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def test_two_instances_never_see_each_others_runs_or_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with instance_prefix() as prefix, receiver() as rec:
        names = {k: f"{prefix}{k}" for k in ("a", "b")}
        env = {
            k: _env(n, tmp_path / k / ".dagster_home", HOOK_URL=rec.url) for k, n in names.items()
        }

        # `make instance` in each checkout: two databases each, named after the instance
        for k, n in names.items():
            done = _chainlake_instance(env[k])
            assert done.returncode == 0, done.stderr
            assert f"Instance {n}:" in done.stdout
            assert f"database {n}_dagster" in done.stdout and f"database {n}_events" in done.stdout
        assert _databases(prefix) == {
            f"{n}_{kind}" for n in names.values() for kind in ("dagster", "events")
        }

        # the events database each checkout's resources choose, from CHAINLAKE_INSTANCE alone
        url = {}
        for k, n in names.items():
            with monkeypatch.context() as m:
                m.delenv("POSTGRES_URL", raising=False)
                m.setenv("CHAINLAKE_INSTANCE", n)
                url[k] = PostgresResource().migrated_url()
            assert url[k] == f"postgresql://postgres@127.0.0.1:5432/{n}_events"
            with db.connection(url[k]) as conn:
                apply_spec(conn, parse_spec(_trigger(f"low-{k}"), resolver=Resolver()))

        with contextlib.ExitStack() as stack:
            procs = {
                k: stack.enter_context(_evaluator(env[k], tmp_path / f"evaluator-{k}.log", 600))
                for k in names
            }
            listen = {k: stack.enter_context(db.connection(url[k], autocommit=True)) for k in names}
            for conn in listen.values():
                conn.execute("LISTEN new_event")

            def owners() -> dict[str, str | None]:
                return {k: live_evaluator(listen[k]) for k in names}

            # both evaluators live at once: the liveness lock is per instance, not per server
            both_live = wait_until(lambda: all(owners().values()), 240)
            logs = {k: (tmp_path / f"evaluator-{k}.log").read_text()[-3000:] for k in names}
            assert both_live, (owners(), {k: p.poll() for k, p in procs.items()}, logs)
            run = owners()
            assert run["a"] != run["b"]

            # the same on-chain event into a's events database only: a evaluates and delivers it
            with db.connection(url["a"]) as conn:
                assert store.insert_events(conn, [feedback(10, score=1)]) == ["31337-10-0"]

            def keys() -> list[str]:
                return sorted(rec.by_key())

            assert wait_until(lambda: keys() == ["low-a:31337-10-0:hook"], 60), keys()
            # b's evaluator, which looks at its database at least every 0.5 s, never saw it
            assert not wait_until(lambda: len(keys()) > 1, 3), keys()
            assert (_count(url["b"], "events"), _count(url["b"], "deliveries")) == (0, 0)
            assert [n.channel for n in listen["b"].notifies(timeout=0.5)] == []
            assert [n.channel for n in listen["a"].notifies(timeout=0.5)] == ["new_event"]

            # and b's own copy of it is b's to evaluate: its evaluator was working all along
            with db.connection(url["b"]) as conn:
                assert store.insert_events(conn, [feedback(10, score=1)]) == ["31337-10-0"]
            assert wait_until(lambda: len(keys()) == 2, 60), keys()
            assert keys() == ["low-a:31337-10-0:hook", "low-b:31337-10-0:hook"]
            for k in names:
                assert (_count(url[k], "events"), _count(url[k], "deliveries")) == (1, 1)
            assert owners() == run  # neither evaluator left or was taken over

        # each Dagster instance holds its own evaluator run and not the other's
        for k, other in (("a", "b"), ("b", "a")):
            inst = _dagster_instance(env[k], monkeypatch)
            try:
                assert inst.run_storage.postgres_url.endswith(f"/{names[k]}_dagster")  # type: ignore[attr-defined]
                assert inst.get_run_by_id(run[k]) is not None
                assert inst.get_run_by_id(run[other]) is None
                assert [r.run_id for r in inst.get_runs()] == [run[k]]
            finally:
                inst.dispose()

        # `make clean` in checkout a: a's databases go, b's stay
        dropped = _chainlake_instance(env["a"], "drop")
        assert dropped.returncode == 0, dropped.stderr
        a, b = names["a"], names["b"]
        assert f"Dropping the PostgreSQL databases of instance {a}:" in dropped.stdout
        assert f"Dagster storage: {a}_dagster (dropped)" in dropped.stdout
        assert f"events: {a}_events (dropped)" in dropped.stdout
        assert _databases(prefix) == {f"{b}_dagster", f"{b}_events"}
        again = _chainlake_instance(env["a"], "drop")
        assert again.returncode == 0 and f"{a}_events (absent)" in again.stdout


def test_drop_leaves_databases_the_instance_does_not_own(tmp_path: Path) -> None:
    with instance_prefix() as prefix:
        name = f"{prefix}c"
        own = instance_names.names({"CHAINLAKE_INSTANCE": name})
        elsewhere = f"postgresql://postgres@127.0.0.1:5432/{prefix}shared"
        for url in (own.dagster_url, own.events_url, elsewhere):
            ensure_database(url)
        env = {"CHAINLAKE_INSTANCE": name, "POSTGRES_URL": elsewhere}

        done = drop_databases(env)
        assert [(d.role, d.database, d.outcome) for d in done] == [
            ("Dagster storage", f"{name}_dagster", "dropped"),
            ("events", f"{prefix}shared", f"kept: POSTGRES_URL names it, not instance {name}"),
        ]
        # the explicit events database, and the instance's own one it stands in for, are intact
        assert _databases(prefix) == {f"{prefix}shared", f"{name}_events"}

        # a name that cannot be the instance's drops nothing and says which variable is wrong
        bad = _chainlake_instance(
            _env(name, tmp_path / "home") | {"CHAINLAKE_INSTANCE": f"{name}; DROP DATABASE x"},
            "drop",
        )
        assert bad.returncode == 1 and bad.stdout == ""
        assert bad.stderr.startswith("chainlake.instance drop: CHAINLAKE_INSTANCE=")
        assert _databases(prefix) == {f"{prefix}shared", f"{name}_events"}

        assert [d.outcome for d in drop_databases({"CHAINLAKE_INSTANCE": name})] == [
            "absent",
            "dropped",
        ]
        assert _databases(prefix) == {f"{prefix}shared"}
