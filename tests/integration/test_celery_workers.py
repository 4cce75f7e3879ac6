"""One backfill spread over several machines: the steps of its runs execute on two Celery
workers, each in a network namespace of its own (a host with its own address), and the Delta
tables come out row for row as a single-machine run writes them.

The set-up is a deployment in miniature, every store a server as at scale:

- a broker: the local RabbitMQ, on a vhost made for this test (`rabbitmqctl add_vhost`),
  deleted afterwards;
- the Dagster instance on PostgreSQL (a database of the test's own) and Delta Lake on an S3
  server (moto_server), both reached by the workers over the network;
- two anvil chains with two closed days each;
- two "machines": network namespaces `cl-<id>-1` and `cl-<id>-2`, each joined to this host
  by a veth pair (10.213.X.1 here, 10.213.X.2 there). The broker, PostgreSQL, the S3 server
  and the nodes listen on 127.0.0.1 only, and RabbitMQ lets `guest` in from loopback only, so
  a small TCP forwarder in this process listens on each host-side address and relays to
  127.0.0.1: from a namespace, 10.213.X.1 is "the database server", "the broker" and so on;
- on each machine `dagster-celery worker start` (concurrency 1), with the code location and
  its own addresses of the servers (its own chains.yaml, S3 endpoint, PostgreSQL and broker
  URLs);
- on this host the code location as its own server (`dagster code-server start`), loaded
  with CHAINLAKE_EXECUTOR=celery, the daemon on it, and the README's `dagster job backfill`
  over the four chain-days.

It shows that every step of every run executed in one of the namespaces (the pid of each
STEP_START event lives in that namespace's network namespace), both machines took steps (the
celery executor's "Executing steps ... in celery worker" events name both workers), and every
Delta table equals what a single-machine run (`execute_in_process`, same code, same chains)
wrote under another prefix of the same bucket.

Run it alone:  .venv/bin/pytest tests/integration/test_celery_workers.py -m integration
Needs root (namespaces and veth pairs), RabbitMQ on 127.0.0.1:5672 with rabbitmqctl, and
PostgreSQL on 127.0.0.1:5432; it fails with the missing piece named otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import selectors
import shutil
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from dagster_stack import (
    ROOT,
    VENV_BIN,
    code_server,
    daemon_command,
    free_port,
    process,
    process_tree,
    scratch_database,
    stack_env,
    wait_for,
)

from tests.chain_helpers import Anvil, Filler, day_ts, start_anvil

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

DAYS = 2
FIRST_DAY = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=DAYS + 10)
BACKFILLED = [FIRST_DAY + dt.timedelta(days=d) for d in range(DAYS)]
BROKER = ("127.0.0.1", 5672)
POSTGRES = ("127.0.0.1", 5432)
BUCKET = "lake"
IP = shutil.which("ip") or "/usr/sbin/ip"


# -- preconditions --------------------------------------------------------------------------


def _answers(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=3):
            return True
    except OSError:
        return False


def _require_services() -> None:
    """Fail with the missing piece named, rather than hang on a dead address."""
    if os.geteuid() != 0:
        pytest.fail("needs root: the workers run in network namespaces joined by veth pairs")
    for tool in ("ip", "rabbitmqctl"):
        if shutil.which(tool) is None:
            pytest.fail(f"needs `{tool}` on PATH")
    if not _answers(BROKER):
        pytest.fail(f"RabbitMQ does not answer on {BROKER[0]}:{BROKER[1]} (the Celery broker)")
    if not _answers(POSTGRES):
        pytest.fail(f"PostgreSQL does not answer on {POSTGRES[0]}:{POSTGRES[1]}")


# -- the broker's vhost ---------------------------------------------------------------------


def _rabbitmqctl(*args: str) -> None:
    out = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=120, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {out.stderr.strip()[-500:]}")


@contextlib.contextmanager
def rabbit_vhost(name: str) -> Iterator[str]:
    """A vhost of the test's own (its queues and messages go with it), open to `guest`."""
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        _rabbitmqctl("delete_vhost", name)


# -- machines: network namespaces -----------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    netns: str
    host_address: str  # this host's end of the veth pair: where the machine finds the servers
    address: str  # the machine's own address

    def netns_inode(self) -> int:
        return os.stat(f"/run/netns/{self.netns}").st_ino


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def _free_subnet() -> int:
    """A third octet of 10.213.0.0/16 no interface of this host uses."""
    used = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    taken = {int(m) for m in re.findall(r"inet 10\.213\.(\d+)\.", used)}
    for octet in (int(uuid.uuid4().hex[:2], 16), *range(256)):
        if octet not in taken:
            return octet
    raise RuntimeError("no free 10.213.X.0/24 on this host")


@contextlib.contextmanager
def machines(tag: str, count: int) -> Iterator[list[Machine]]:
    """`count` network namespaces, each linked to this host by a veth pair with a /30 of
    10.213.X.0/24; removed afterwards (deleting a namespace deletes its veth pair)."""
    octet = _free_subnet()
    made: list[Machine] = []
    try:
        for i in range(count):
            netns, host_if, peer_if = f"cl-{tag}-{i + 1}", f"clh{tag}{i + 1}", f"cln{tag}{i + 1}"
            host, peer = f"10.213.{octet}.{4 * i + 1}", f"10.213.{octet}.{4 * i + 2}"
            _ip("netns", "add", netns)
            made.append(Machine(netns, host, peer))
            _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
            _ip("link", "set", peer_if, "netns", netns)
            _ip("addr", "add", f"{host}/30", "dev", host_if)
            _ip("link", "set", host_if, "up")
            _ip("-n", netns, "addr", "add", f"{peer}/30", "dev", peer_if)
            _ip("-n", netns, "link", "set", peer_if, "up")
            _ip("-n", netns, "link", "set", "lo", "up")
        yield made
    finally:
        for m in made:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", m.netns)
        for i in range(count):
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("link", "del", f"clh{tag}{i + 1}")


# -- the forwarder: a server's loopback port on a host-side veth address --------------------


class _Relay(socketserver.BaseRequestHandler):
    server: _Forwarder

    def handle(self) -> None:
        try:
            upstream = socket.create_connection(self.server.target, timeout=10)
        except OSError:
            return
        upstream.settimeout(None)
        with upstream, selectors.DefaultSelector() as sel:
            sel.register(self.request, selectors.EVENT_READ, upstream)
            sel.register(upstream, selectors.EVENT_READ, self.request)
            while not self.server.stopping.is_set():
                for key, _ in sel.select(timeout=0.5):
                    try:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        key.data.sendall(data)
                    except OSError:
                        return


class _Forwarder(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self.stopping = threading.Event()
        super().__init__(listen, _Relay)


@contextlib.contextmanager
def forwarders(pairs: list[tuple[tuple[str, int], tuple[str, int]]]) -> Iterator[None]:
    servers = [_Forwarder(listen, target) for listen, target in pairs]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        for s in servers:
            s.stopping.set()
            s.shutdown()
            s.server_close()
        for t in threads:
            t.join(5)


# -- the S3 server --------------------------------------------------------------------------


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    import boto3
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(("127.0.0.1", port)), 30, 0.1, "moto_server")
        httpx.get(f"{url}/moto-api/", timeout=10)
        boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        ).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


# -- the chains -----------------------------------------------------------------------------


@dataclass
class FilledChain:
    name: str
    chain_id: int
    node: Anvil
    payee: str  # a tracked wallet: the portfolio that makes core/balances non-empty


def _filled_chain(name: str, chain_id: int) -> FilledChain:
    """An anvil node with DAYS closed days of 4 blocks, each holding native transfers and
    ERC-20 Transfer logs (so every raw and core table has rows), plus one block on the day
    after; past states kept for the balances read at earlier blocks."""
    node = start_anvil(
        genesis_ts=day_ts(FIRST_DAY, -3600),
        keep_states=10_000,
        extra=("--chain-id", str(chain_id)),
    )
    filler = Filler(node)
    filler.deploy_emitter(day_ts(FIRST_DAY, -1800))
    for d in range(DAYS):
        day = FIRST_DAY + dt.timedelta(days=d)
        for b in range(4):
            filler.block(day_ts(day, 60 + b * 21_600), salt=d * 10 + b)
    filler.block(day_ts(FIRST_DAY + dt.timedelta(days=DAYS), 60))
    return FilledChain(name, chain_id, node, filler.accounts[1])


def _chains_yaml(path: Path, chains: list[FilledChain]) -> Path:
    lines = ["chains:"]
    for c in chains:
        lines += [
            f"  - name: {c.name}",
            f"    network: {c.name}",
            "    subnet: local",
            f"    chain_id: {c.chain_id}",
            f'    rpc_urls: ["{c.node.url}"]',
            "    confirmations: 0",
            f"    start_date: {FIRST_DAY.isoformat()}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _portfolios_yaml(path: Path, chains: list[FilledChain]) -> None:
    lines = ["wallets:"]
    lines += [
        f'  - {{name: {c.name}-payee, address: "{c.payee}", chain: {c.name}}}' for c in chains
    ]
    lines.append("portfolios:")
    for c in chains:
        lines += [
            f"  - id: {c.name}-book",
            f"    name: {c.name} book",
            f"    chain: {c.name}",
            f"    wallets: [{c.name}-payee]",
        ]
    path.write_text("\n".join(lines) + "\n")


# -- the test -------------------------------------------------------------------------------

SINGLE_MACHINE = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from pipelines.definitions import defs

    job = defs.resolve_job_def("chain_day_job")
    with dg.DagsterInstance.get() as instance:
        for key in sys.argv[1:]:
            assert job.execute_in_process(partition_key=key, instance=instance).success, key
    """
)


def _tables(root: str, endpoint: str, chains_file: Path) -> dict[tuple[str, str], pl.DataFrame]:
    """Every table of both chains, the backfilled days only: the daemon's new-block sensor also
    reads the chain's head, a block on the day after them, into the same tables."""
    from chainlake.config import load_chains
    from chainlake.lake import DeltaStore

    store = DeltaStore(
        root=root,
        s3_endpoint_url=endpoint,
        s3_access_key_id="test",
        s3_secret_access_key="test",
        s3_allow_http=True,
    )
    out = {}
    for chain in load_chains(chains_file).values():
        for table in store.list_tables(chain):
            df = store.scan(chain, table).collect()  # type: ignore[union-attr]
            if "date" in df.columns:
                df = df.filter(pl.col("date").is_in(BACKFILLED))
            # row order is the writer's business: compare sorted on every plain column
            nested = (pl.List, pl.Struct, pl.Array, pl.Object)
            keys = [c for c, t in df.schema.items() if not isinstance(t, nested)]
            out[(chain.name, table)] = df.sort(keys)
    return out


def test_one_backfill_on_two_celery_workers_in_their_own_network_namespaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
    from dagster._core.instance.ref import InstanceRef

    from chainlake.instance import ensure_instance

    _require_services()
    tag = uuid.uuid4().hex[:4]
    chains = [_filled_chain("chain-a", 4_301), _filled_chain("chain-b", 4_302)]
    keys = [f"{c.name}|{FIRST_DAY + dt.timedelta(days=d)}" for c in chains for d in range(DAYS)]
    try:
        with (
            s3_server() as s3,
            scratch_database("chainlake_test_celery") as pg_url,
            rabbit_vhost(f"chainlake-test-{tag}") as vhost,
            machines(tag, 2) as hosts,
        ):
            home = tmp_path / "dagster_home"
            config = _chains_yaml(tmp_path / "chains.yaml", chains)
            _portfolios_yaml(tmp_path / "portfolios.yaml", chains)
            monkeypatch.setenv("DAGSTER_HOME", str(home))
            monkeypatch.setenv("DAGSTER_POSTGRES_URL", pg_url)
            ensure_instance(home, pg_url)
            env = stack_env(tmp_path, home, pg_url, config)
            env.update(
                DELTA_ROOT=f"s3://{BUCKET}/celery",
                S3_ENDPOINT_URL=s3,
                AWS_ACCESS_KEY_ID="test",
                AWS_SECRET_ACCESS_KEY="test",
                AWS_REGION="us-east-1",
                CHAINLAKE_EXECUTOR="celery",
                DAGSTER_CELERY_BROKER_URL=f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}",
            )

            # The single-machine reference: the same job, in one process, another prefix.
            single = {
                k: v
                for k, v in env.items()
                if k not in ("CHAINLAKE_EXECUTOR", "DAGSTER_CELERY_BROKER_URL")
            }
            single["DELTA_ROOT"] = f"s3://{BUCKET}/single"
            out = subprocess.run(
                [sys.executable, "-c", SINGLE_MACHINE, *keys],
                cwd=ROOT,
                env=single,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert out.returncode == 0, out.stderr[-4000:]

            # Every server a machine needs, at its host-side address, same port.
            ports = [BROKER[1], POSTGRES[1], int(s3.rsplit(":", 1)[1])]
            ports += [int(c.node.url.rsplit(":", 1)[1]) for c in chains]
            relays = [((m.host_address, p), ("127.0.0.1", p)) for m in hosts for p in ports]

            def machine_env(m: Machine) -> dict[str, str]:
                own = {k: v.replace("127.0.0.1", m.host_address) for k, v in env.items()}
                own_chains = tmp_path / f"chains-{m.netns}.yaml"
                own_chains.write_text(config.read_text().replace("127.0.0.1", m.host_address))
                own["CHAINS_CONFIG"] = str(own_chains)
                return own

            with forwarders(relays), contextlib.ExitStack() as stack:
                workers = []
                for i, m in enumerate(hosts, start=1):
                    cfg = tmp_path / f"celery-{m.netns}.yaml"
                    broker = f"pyamqp://guest:guest@{m.host_address}:5672/{vhost}"
                    cfg.write_text(f"execution:\n  config:\n    broker: '{broker}'\n")
                    log = tmp_path / f"worker-{i}.log"
                    proc = stack.enter_context(
                        process(
                            [
                                *(IP, "netns", "exec", m.netns),
                                str(VENV_BIN / "dagster-celery"),
                                *("worker", "start", "-A", "dagster_celery.app"),
                                *("-y", str(cfg), "-n", f"machine{i}", "-l", "INFO"),
                                *("--", "--concurrency=1"),
                            ],
                            machine_env(m),
                            log,
                        )
                    )
                    workers.append((m, proc, log))
                for m, proc, log in workers:
                    wait_for(
                        lambda log=log, proc=proc: (
                            proc.poll() is not None or " ready." in log.read_text(errors="replace")
                        ),
                        180,
                        0.5,
                        f"the Celery worker in {m.netns}",
                    )
                    assert proc.poll() is None, log.read_text(errors="replace")[-3000:]

                with (
                    code_server(env, tmp_path) as server,
                    process(
                        daemon_command("run", "-w", str(server.workspace), backfill_tick_seconds=5),
                        env,
                        tmp_path / "daemon.log",
                    ),
                ):
                    workspace = str(server.workspace)
                    launched = subprocess.run(
                        [
                            *(str(VENV_BIN / "dagster"), "job", "backfill", "-w", workspace),
                            *("-j", "chain_day_job", "--partitions", ",".join(keys), "--noprompt"),
                        ],
                        cwd=ROOT,
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=600,
                    )
                    assert launched.returncode == 0, launched.stderr[-3000:]
                    backfill = re.search(r"Launched backfill job `([^`]+)`", launched.stdout)
                    assert backfill, launched.stdout[-2000:]
                    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
                    runs_filter = RunsFilter(tags={"dagster/backfill": backfill.group(1)})

                    def finished():
                        runs = instance.get_runs(runs_filter)
                        done = len(runs) == len(keys) and all(r.is_finished for r in runs)
                        return runs if done else None

                    runs = wait_for(finished, 600, 2, "the backfill's runs")

                    # Where each step ran, read while the workers' processes still exist.
                    inode = {m.netns_inode(): m.netns for m in hosts}
                    worker_pids = {m.netns: set(process_tree(proc.pid)) for m, proc, _ in workers}
                    steps_on: dict[str, list[str]] = {m.netns: [] for m in hosts}
                    elsewhere: list[str] = []
                    named_workers: set[str] = set()
                    failed = []
                    for run in runs:
                        if run.status != DagsterRunStatus.SUCCESS:
                            failed.append(run)
                        for rec in instance.get_records_for_run(
                            run.run_id, of_type=DagsterEventType.STEP_START
                        ).records:
                            event = rec.event_log_entry.dagster_event
                            assert event is not None and event.pid is not None
                            where = f"{run.tags.get('dagster/partition')} {event.step_key}"
                            try:
                                ns = inode.get(os.stat(f"/proc/{event.pid}/ns/net").st_ino)
                            except FileNotFoundError:
                                ns = None
                            if ns is not None and event.pid in worker_pids[ns]:
                                steps_on[ns].append(where)
                            else:
                                elsewhere.append(f"{where} (pid {event.pid})")
                        for rec in instance.get_records_for_run(
                            run.run_id, of_type=DagsterEventType.ENGINE_EVENT
                        ).records:
                            entry = rec.event_log_entry
                            event = entry.dagster_event
                            if event is None or "in celery worker" not in (event.message or ""):
                                continue
                            worker = event.engine_event_data.metadata.get("Celery worker")
                            if worker is not None:
                                named_workers.add(str(worker.value).split("@")[0])
                    worker_logs = [log.read_text(errors="replace") for _, _, log in workers]

            assert not failed, _failure_summary(instance, failed, worker_logs)
            assert not elsewhere, f"steps outside the two machines: {elsewhere}"
            for netns, steps in steps_on.items():
                assert steps, f"no step ran on {netns}: {steps_on}"
            assert named_workers == {"machine1", "machine2"}, named_workers
            for text in worker_logs:
                assert re.search(r"Task execute_plan\[[^\]]+\] succeeded", text), text[-2000:]

            # The same rows in every table as the single-machine run.
            celery = _tables(f"s3://{BUCKET}/celery", s3, config)
            reference = _tables(f"s3://{BUCKET}/single", s3, config)
            assert set(celery) == set(reference)
            filled = {"blocks", "transactions", "logs", "token_transfers", "native_transfers"}
            assert filled | {"balances"} <= {t for _, t in reference}
            for key, frame in reference.items():
                if key[1] in filled or key[1] == "balances":
                    assert frame.height > 0, key
                assert celery[key].equals(frame), key
            logging.getLogger(__name__).info(
                "steps per machine: %s; tables equal to the single-machine run (rows): %s",
                {ns: len(steps) for ns, steps in steps_on.items()},
                {f"{c}/{t}": f.height for (c, t), f in sorted(reference.items())},
            )
    finally:
        for c in chains:
            c.node.stop()


def _failure_summary(instance, failed, worker_logs: list[str]) -> str:
    from dagster import DagsterEventType

    lines = [f"{len(failed)} runs did not succeed"]
    for run in failed[:3]:
        for rec in instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.STEP_FAILURE
        ).records[:1]:
            err = rec.event_log_entry.dagster_event.step_failure_data.error
            lines.append(f"{run.tags.get('dagster/partition')}: {err.message.strip()[:800]}")
    lines += [text[-1500:] for text in worker_logs]
    return "\n".join(lines)
