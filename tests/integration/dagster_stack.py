"""Helpers for tests that run the real Dagster processes: a Postgres-backed instance in a temp
DAGSTER_HOME (through `chainlake.instance`, like `make dev`), the daemon or `dagster dev` as
subprocesses, local anvil chains with days of blocks, and a check that a process tree holds no
file of an embedded store."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV") or ROOT / ".venv") / "bin"
ANVIL = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
PG_ADMIN = os.environ.get(
    "TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- PostgreSQL ---------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new database, dropped afterwards; yields its SQLAlchemy URL (psycopg2 driver)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# -- anvil --------------------------------------------------------------------------------


@dataclass
class Chain:
    name: str
    chain_id: int
    url: str
    process: subprocess.Popen[bytes]
    cache_dir: str
    blocks_per_day: dict[dt.date, int]

    def rpc(self, method: str, params: Sequence[Any] = ()) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        r = httpx.post(
            self.url,
            content=orjson.dumps(body),
            headers={"content-type": "application/json"},
            timeout=60,
        )
        out = orjson.loads(r.content)
        if out.get("error"):
            raise RuntimeError(f"{method}: {out['error']}")
        return out["result"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.cache_dir, ignore_errors=True)


def day_start(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())


def start_chain(
    name: str, chain_id: int, first_day: dt.date, days: int, *, blocks_per_day: int = 4
) -> Chain:
    """An anvil node whose blocks spread over `days` UTC days from `first_day`, each block with
    two native transfers, plus one block on the day after so the last day is closed."""
    port = free_port()
    cache = tempfile.mkdtemp(prefix="anvil-cache-")
    proc = subprocess.Popen(
        [
            str(ANVIL),
            *("--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id)),
            # keep historical state: balances read the chain at earlier blocks
            *("--prune-history", "10000", "--cache-path", cache, "--no-mining", "--silent"),
            *("--timestamp", str(day_start(first_day) - 3600)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    chain = Chain(name, chain_id, f"http://127.0.0.1:{port}", proc, cache, {})
    deadline = time.monotonic() + 30
    while True:
        try:
            chain.rpc("eth_chainId")
            break
        except (httpx.HTTPError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                chain.stop()
                raise RuntimeError("anvil did not start") from None
            time.sleep(0.1)
    accounts = chain.rpc("eth_accounts")
    nonce = 0
    step = 86_400 // blocks_per_day
    for d in range(days + 1):
        day = first_day + dt.timedelta(days=d)
        count = blocks_per_day if d < days else 1
        for b in range(count):
            for i in range(2):
                tx = {
                    "from": accounts[0],
                    "to": accounts[1 + (b + i) % 9],
                    "value": hex(10**15 + d * 1000 + b * 10 + i),
                    "nonce": hex(nonce),
                    "gas": hex(21_000),
                }
                chain.rpc("eth_sendTransaction", [tx])
                nonce += 1
            chain.rpc("evm_setNextBlockTimestamp", [hex(day_start(day) + 60 + b * step)])
            chain.rpc("evm_mine")
        if d < days:
            chain.blocks_per_day[day] = count
    return chain


def chains_yaml(path: Path, chains: Sequence[Chain], start_date: dt.date) -> Path:
    lines = ["chains:"]
    for c in chains:
        lines += [
            f"  - name: {c.name}",
            f"    network: {c.name}",
            "    subnet: local",
            f"    chain_id: {c.chain_id}",
            f'    rpc_urls: ["{c.url}"]',
            "    confirmations: 0",
            f"    start_date: {start_date.isoformat()}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- Dagster processes --------------------------------------------------------------------


def stack_env(tmp: Path, dagster_home: Path, postgres_url: str, chains_config: Path) -> dict:
    """The environment of the daemon, the webserver and the runs: every store under `tmp`.

    A test that tracks no wallet says so with an empty portfolios.yaml (a missing one is an
    error)."""
    portfolios = tmp / "portfolios.yaml"
    if not portfolios.exists():
        portfolios.write_text("# nothing tracked in this test\nwallets: []\nportfolios: []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "CLICKHOUSE_"))}
    env.update(
        DAGSTER_HOME=str(dagster_home),
        DAGSTER_POSTGRES_URL=postgres_url,
        # the events database too (its own version table lets it share the database), so
        # the sensors and jobs of the stack never touch a developer's `chainlake` database
        POSTGRES_URL=postgres_url.replace("postgresql+psycopg2://", "postgresql://", 1),
        CHAINS_CONFIG=str(chains_config),
        DELTA_ROOT=str(tmp / "delta"),
        DUCKDB_PATH=str(tmp / "chainlake.duckdb"),
        CLICKHOUSE_PATH=str(tmp / "clickhouse"),
        PORTFOLIOS_CONFIG=str(tmp / "portfolios.yaml"),
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        # no resident trigger evaluator: it would hold one of the queue's run slots for its
        # whole lifetime (tests/integration/test_resident_evaluator.py covers it)
        CHAINLAKE_RESIDENT_EVALUATOR_SECONDS="0",
        # A code server answers a run launch once the run's worker process has loaded the code
        # location: past Dagster's 60 s on a 2-core machine shared by several test sessions
        # (seen at a load average of 40), the queue marks the run failed without a retry.
        DAGSTER_GRPC_TIMEOUT_SECONDS="300",
    )
    return env


# `dagster-daemon run` with the backfill daemon's tick (Dagster 1.13's fixed 30 s, not instance
# config) shortened, for a test whose backfill does not depend on it: a job backfill, whose
# runs are all requested at its first tick, waits up to a tick for it. An asset backfill's plan
# does depend on it: a self-dependent asset's day (core/balances) joins a multi-day run only
# when its sources land in the same tick as the day before it, so with 5 s ticks test_backfill
# saw one balances run per chain-day; it runs the plain daemon. (Patching the daemon to keep
# its first code server instead of a new one every 60 s was tried too: under load that server
# stopped on a missed heartbeat and, never replaced, failed every later launch. `code_server`
# below is the way: a server of its own, without a heartbeat.)
_TEST_DAEMON = """
import sys
from dagster._daemon import controller
from dagster._daemon.cli import main

controller.DEFAULT_DAEMON_INTERVAL_SECONDS = int(sys.argv.pop(1))
sys.argv[0] = "dagster-daemon"
sys.exit(main())
"""


def daemon_command(*args: str, backfill_tick_seconds: int) -> list[str]:
    """The argv of `dagster-daemon ARGS` with the backfill daemon ticking every
    `backfill_tick_seconds` (see `_TEST_DAEMON`)."""
    return [str(VENV_BIN / "python"), "-c", _TEST_DAEMON, str(backfill_tick_seconds), *args]


@contextlib.contextmanager
def process(args: Sequence[str], env: dict, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process in its own group, its output in `log`; the whole group (code servers, run
    workers) is stopped afterwards: SIGTERM, then SIGKILL for whatever is left after 30 s."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(args),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _group_alive(proc.pid):
                proc.poll()
                time.sleep(0.5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass(frozen=True)
class CodeServer:
    workspace: Path  # a workspace file naming this server as the code location
    pid: int  # the server's process; its tree holds the run workers it starts


@contextlib.contextmanager
def code_server(env: dict, tmp: Path) -> Iterator[CodeServer]:
    """The code location as a server of its own (`dagster code-server start`, as the compose
    file's user-code container runs it): a workspace file pointing at it, for the daemon
    and every `dagster` command of the test.

    With the repository's workspace.yaml (a python_module) each of those would start a code
    server of its own, and the daemon replaces its server every 60 s (Dagster's workspace
    refresh): each start imports the code location again, about 8 CPU-seconds here."""
    from dagster._grpc.types import ListRepositoriesResponse

    port = free_port()
    workspace = tmp / "grpc-workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        f"  - grpc_server: {{host: 127.0.0.1, port: {port}, location_name: chainlake}}\n"
    )
    argv = [
        *(str(VENV_BIN / "dagster"), "code-server", "start"),
        *("-h", "127.0.0.1", "-p", str(port), "-m", "pipelines.definitions", "-a", "defs"),
        *("--location-name", "chainlake", "-d", str(ROOT)),
    ]
    with process(argv, env, tmp / "code-server.log") as server:
        listed = wait_for(
            lambda: server.poll() is not None or _listed(port),
            timeout=300,
            interval=0.5,
            what="the code server",
        )
        log = (tmp / "code-server.log").read_text(errors="replace")[-3000:]
        assert server.poll() is None, log
        assert isinstance(listed, ListRepositoriesResponse), f"{listed}\n{log}"
        yield CodeServer(workspace, server.pid)


def _listed(port: int) -> object | None:
    """What the server answers when asked for its repositories (a ListRepositoriesResponse, or
    the error that kept its code location from loading), or None while it does not listen."""
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._serdes import deserialize_value

    try:
        return deserialize_value(DagsterGrpcClient(port=port, host="127.0.0.1").list_repositories())
    except Exception:  # not listening yet
        return None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def process_tree(pid: int) -> list[int]:
    """`pid` and every descendant, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def open_files_under(pids: Sequence[int], roots: Sequence[Path]) -> dict[int, list[str]]:
    """Files under `roots` that any of `pids` holds open (the chdb and DuckDB locks are held
    through open files)."""
    prefixes = [str(r.resolve()) for r in roots]
    held: dict[int, list[str]] = {}
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if any(target.startswith(p) for p in prefixes):
                held.setdefault(pid, []).append(target)
    return held


def wait_for(predicate, timeout: float, interval: float = 1.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
