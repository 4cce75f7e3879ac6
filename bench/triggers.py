"""Trigger engine benchmark: event-to-delivery latency through the real Dagster daemon.

    .venv/bin/python bench/triggers.py                      # 10,000 events over 60 s
    .venv/bin/python bench/triggers.py --events 2000 --seconds 20 --instance fast
    .venv/bin/python bench/triggers.py --fast-phase         # block at the head -> unconfirmed delivery

What runs: a Dagster instance on PostgreSQL (the project's dagster.yaml, set up like `make dev`
by chainlake.instance; `--instance fast` swaps in a plain run coordinator and threaded sensors
for comparison), `dagster-daemon` and `dagster-webserver` as subprocesses, a code location with
the trigger engine's jobs and sensors (this file's `defs`), an events database migrated with
`chainlake db migrate`'s code, one trigger (every ERC-20 transfer -> REST webhook) and a local
webhook receiver in this process.

Events are inserted at a steady rate (a commit every 100 ms); each event's latency is from its
commit to its arrival at the receiver. Lost = events never received; duplicates = deliveries
received more than once (by idempotency key). Results go to stdout and bench/results/ (JSON).

`--fast-phase`: two-phase alerts. An anvil node (tools.devnet) with an ERC-20 token of the
devnet contracts, a chains.yaml with `confirmations` and a portfolios.yaml tracking the
recipient, one trigger with `phase: fast` (every Transfer -> REST webhook). Blocks are mined one
by one (`evm_mine`), each with one transfer to the tracked wallet; a block's latency is from
the moment `evm_mine` returned (the node serves the block) to the arrival of its unconfirmed
delivery, read at the head by the resident evaluator's head reader.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # loaded by path as a code location, or run as a script
    sys.path.insert(0, str(ROOT))

from pipelines.triggers import (  # noqa: E402
    deliver_actions_job,
    evaluate_triggers_job,
    resident_evaluator_job,
)
from resources.notifiers import NotifiersResource  # noqa: E402
from resources.postgres import PostgresResource  # noqa: E402
from sensors.chain_events import chain_events_sensor  # noqa: E402
from sensors.pending_actions import pending_actions_sensor  # noqa: E402
from sensors.resident_evaluator import resident_evaluator_sensor  # noqa: E402

# The code location the bench's daemon loads: the trigger engine alone.
defs = dg.Definitions(
    jobs=[evaluate_triggers_job, resident_evaluator_job, deliver_actions_job],
    sensors=[chain_events_sensor, resident_evaluator_sensor, pending_actions_sensor],
    resources={
        "postgres": PostgresResource(),
        "notifiers": NotifiersResource(),
    },
)

PG = "postgresql://postgres@127.0.0.1:5432/"
CHAIN = 31337
FAST_INSTANCE = """
storage:
  postgres:
    postgres_url:
      env: DAGSTER_POSTGRES_URL
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
run_launcher:
  module: dagster._core.launcher
  class: DefaultRunLauncher
sensors:
  use_threads: true
  num_workers: 4
telemetry:
  enabled: false
"""


# ---- receiver ------------------------------------------------------------------------------


class Receiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: dict[str, list[float]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real webhook receivers do

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                self.rfile.read(n)
                now = time.time()
                key = self.headers.get("idempotency-key", "")
                with outer.lock:
                    outer.arrivals.setdefault(key, []).append(now)
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dagster_processes(
    home: Path, env_vars: dict[str, str], log_dir: Path, location: str
) -> Iterator[str]:
    """dagster-daemon and dagster-webserver on the chosen code location; yields the UI URL.
    engine: this file's `defs` (trigger jobs and sensors only); full: pipelines.definitions,
    the project's whole code location, as `make dev` serves it."""
    workspace = home / "workspace.yaml"
    if location == "full":
        target = "  - python_module:\n      module_name: pipelines.definitions\n"
    else:
        target = f"  - python_file:\n      relative_path: {Path(__file__).resolve()}\n"
    workspace.write_text(
        "load_from:\n"
        + target
        + "      attribute: defs\n"
        + f"      working_directory: {ROOT}\n"
        + f"      location_name: {home.name.replace('-', '_')}\n"
    )
    bin_dir = Path(sys.executable).parent
    port = free_port()
    procs = []
    environ = {**os.environ, **env_vars, "PYTHONPATH": str(ROOT)}
    for name, cmd in (
        ("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)]),
        (
            "webserver",
            [
                str(bin_dir / "dagster-webserver"),
                "-w",
                str(workspace),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
        ),
    ):
        log = open(log_dir / f"{name}.log", "wb")  # closed with the process
        procs.append(
            (
                subprocess.Popen(
                    cmd, env=environ, cwd=ROOT, stdout=log, stderr=log, start_new_session=True
                ),
                log,
            )
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for p, _ in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p, log in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            log.close()
        # The code servers they started run in sessions of their own: end them by their pid.
        stray = home.name.replace("-", "_")
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if stray in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    os.kill(int(proc.name), signal.SIGTERM)


def wait_http(url: str, timeout: float) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


# ---- the run -------------------------------------------------------------------------------


def transfer(i: int) -> dict[str, Any]:
    return {
        "chain_id": CHAIN, "block_number": i, "block_hash": f"0x{i:064x}",
        "transaction_hash": f"0x{i + 10**9:064x}", "log_index": 0, "registry": "erc20",
        "event_type": "Transfer", "timestamp": 1_790_000_000 + i, "token_address": "0x" + "aa" * 20,
        "from_address": "0x" + "bb" * 20, "to_address": "0x" + "cc" * 20, "amount": 10**18,
    }  # fmt: skip


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    mem = next(
        (int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
         if line.startswith("MemTotal")), 0,
    )  # fmt: skip
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_mb": mem, "python": platform.python_version(),
        "dagster": dg.__version__, "load_avg_at_start": os.getloadavg(),
    }  # fmt: skip


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from chainlake.events import db, store
    from chainlake.events.spec import Resolver, apply_spec, parse_spec
    from chainlake.instance import ensure_instance

    tag = uuid.uuid4().hex[:8]
    events_url = f"{PG}chainlake_bench_{tag}"
    dagster_url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/dagster_bench_{tag}"
    home = Path(tempfile.mkdtemp(prefix="dagster-bench-"))
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    receiver = Receiver()
    info: dict[str, Any] = {"machine": machine(), "instance": args.instance,
                            "location": args.location, "events": args.events,
                            "seconds": args.seconds}  # fmt: skip
    try:
        db.migrate(events_url)
        ensure_instance(home, dagster_url)
        if args.instance == "fast":
            (home / "dagster.yaml").unlink()
            (home / "dagster.yaml").write_text(FAST_INSTANCE)
        spec = parse_spec(
            {"user": "bench", "triggers": [{
                "id": "every-transfer", "chain_id": CHAIN, "registry": "erc20",
                "conditions": [{"type": "event_type_equals", "value": "Transfer"}],
                "actions": [{"name": "hook", "type": "rest", "url": "${CHAINLAKE_ACTION_SECRET_BENCH_HOOK}",
                             "body_template": {"event": "{event_id}", "amount": "{amount}"}}],
            }]},
            resolver=Resolver(),
        )  # fmt: skip
        with db.connection(events_url) as conn:
            apply_spec(conn, spec)
        env_vars = {
            "DAGSTER_HOME": str(home), "DAGSTER_POSTGRES_URL": dagster_url,
            "POSTGRES_URL": events_url, "CHAINLAKE_ACTION_SECRET_BENCH_HOOK": receiver.url,
            # the receiver listens on 127.0.0.1: the operator's allow-list lets actions reach it
            "CHAINLAKE_ACTION_ALLOW_HOSTS": "127.0.0.1,::1",
            "CHAINLAKE_RESIDENT_EVALUATOR_SECONDS": "3600" if args.evaluator == "resident" else "0",
        }  # fmt: skip
        with dagster_processes(home, env_vars, home, args.location) as ui:
            t0 = time.time()
            wait_http(f"{ui}/server_info", 180)
            # Warm-up: one event through the whole path, so the code server and both sensors
            # are up before the clock starts. Not counted.
            with db.connection(events_url) as conn:
                store.insert_events(conn, [transfer(10**8)])
            while receiver.count() < 1:
                if time.time() - t0 > 300:
                    raise TimeoutError(
                        "warm-up event not delivered within 300 s; see the logs in " + str(home)
                    )
                time.sleep(0.2)
            info["startup_to_first_delivery_s"] = round(time.time() - t0, 1)
            if args.evaluator == "resident":
                # as deployed: the resident evaluator is live before the clock starts
                from chainlake.events.resident import live_evaluator

                while True:
                    with db.connection(events_url, autocommit=True) as conn:
                        if live_evaluator(conn):
                            break
                    if time.time() - t0 > 300:
                        raise TimeoutError("no resident evaluator live within 300 s: " + str(home))
                    time.sleep(0.2)
                info["startup_to_resident_live_s"] = round(time.time() - t0, 1)
            with receiver.lock:
                receiver.arrivals.clear()
            print(
                f"warm: first delivery {info['startup_to_first_delivery_s']} s after start; inserting"
            )

            committed: dict[str, float] = {}
            conn = db.connect(events_url)
            start = time.time()
            sent = 0
            tick = 0.1
            while sent < args.events:
                due = min(
                    args.events, round((time.time() - start) / args.seconds * args.events) + 1
                )
                if due > sent:
                    batch = [transfer(i) for i in range(sent + 1, due + 1)]
                    store.insert_events(conn, batch)
                    conn.commit()
                    now = time.time()
                    for e in batch:
                        committed[f"every-transfer:{CHAIN}-{e['block_number']}-0:hook"] = now
                    sent = due
                time.sleep(tick - ((time.time() - start) % tick))
            inserted_in = time.time() - start
            conn.close()
            print(f"inserted {sent} events in {inserted_in:.1f} s; waiting for deliveries")
            deadline = time.time() + args.drain_timeout
            last_count = -1
            while time.time() < deadline:
                got = receiver.count()
                if got >= sent:
                    break
                if got != last_count:
                    last_count = got
                time.sleep(0.5)
            finished = time.time()

            with receiver.lock:
                arrivals = {k: list(v) for k, v in receiver.arrivals.items()}
            latencies = sorted(arrivals[k][0] - committed[k] for k in committed if k in arrivals)
            duplicates = sum(len(v) - 1 for v in arrivals.values())
            unexpected = [k for k in arrivals if k not in committed]
            first_arrival = min((v[0] for v in arrivals.values()), default=finished)
            last_arrival = max((v[0] for v in arrivals.values()), default=finished)
            # A receiver answers before the sender writes its audit row: let the last ones land.
            for _ in range(40):
                with db.connection(events_url) as c:
                    busy = db.scalar(
                        c, "SELECT count(*) FROM deliveries WHERE status = 'in_progress'"
                    )
                if not busy:
                    break
                time.sleep(0.25)
            with db.connection(events_url) as c:
                statuses = {r["status"]: r["n"] for r in c.execute(
                    "SELECT status, count(*) AS n FROM deliveries GROUP BY status").fetchall()}  # fmt: skip
                attempts = {r["status"]: r["n"] for r in c.execute(
                    "SELECT status, count(*) AS n FROM action_results GROUP BY status").fetchall()}  # fmt: skip
            records = run_records(home, dagster_url)
            runs = count_runs(records)
            try:
                with db.connection(events_url) as c:
                    delivered_by = {
                        r["delivery_id"]: r["job_id"]
                        for r in c.execute(
                            "SELECT delivery_id, job_id FROM action_results WHERE status = 'success'"
                        ).fetchall()
                    }
                stages = breakdown(records, committed, arrivals, delivered_by)
            except Exception as e:  # the headline figures must survive a bug here
                stages = {"error": f"{type(e).__name__}: {e}"}
        info.update(
            inserted=sent,
            insert_seconds=round(inserted_in, 1),
            delivered=len(latencies),
            lost=sent - len(latencies),
            duplicates=duplicates,
            unexpected=len(unexpected),
            latency_s={
                "p50": round(percentile(latencies, 0.50), 2),
                "p95": round(percentile(latencies, 0.95), 2),
                "p99": round(percentile(latencies, 0.99), 2),
                "max": round(latencies[-1], 2) if latencies else None,
                "mean": round(statistics.fmean(latencies), 2) if latencies else None,
            },
            throughput_per_s=round(len(latencies) / max(1e-9, last_arrival - start), 1),
            delivery_window_s=round(last_arrival - first_arrival, 1),
            deliveries_by_status=statuses,
            attempts_by_status=attempts,
            runs=runs,
            median_stage_s=stages,
            load_avg_at_end=os.getloadavg(),
        )
    finally:
        receiver.close()
        if not args.keep:
            for url in (events_url, dagster_url.replace("+psycopg2", "")):
                with contextlib.suppress(Exception):
                    db.drop_database(url)
    out = results_dir / f"triggers-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(info, indent=2, default=str))
    info["result_file"] = str(out.relative_to(ROOT))
    info["dagster_home"] = str(home)
    return info


def run_records(home: Path, dagster_url: str) -> list[dict[str, Any]]:
    """Every run of the bench instance: job, status, its batch tag, and when it was created
    (the sensor's request), started (out of the queue, process up) and ended."""
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["DAGSTER_POSTGRES_URL"] = dagster_url
    with dg.DagsterInstance.get() as instance:
        return [
            {
                "run_id": r.dagster_run.run_id,
                "job": r.dagster_run.job_name,
                "status": r.dagster_run.status.value,
                "batch": r.dagster_run.tags.get("chainlake/events"),
                "created": r.create_timestamp.timestamp(),
                "started": r.start_time,
                "ended": r.end_time,
            }
            for r in instance.get_run_records()
        ]


def breakdown(
    records: list[dict[str, Any]],
    committed: dict[str, float],
    arrivals: dict[str, list[float]],
    delivered_by: dict[str, str],
) -> dict[str, Any]:
    """Where the time goes, as medians in seconds. Per run: requested by the sensor -> started
    (the queue, then the run process coming up). Per event, with the run that delivered it
    (action_results.job_id): commit -> that run started, and run started -> at the receiver."""
    runs = {r["run_id"]: r for r in records}
    to_start, in_run = [], []
    for key, t_commit in committed.items():
        run = runs.get(delivered_by.get(key, ""))
        if key not in arrivals or run is None or not run["started"]:
            continue
        if run["job"] != "evaluate_triggers_job":  # the resident run started before the events
            continue
        to_start.append(run["started"] - t_commit)
        in_run.append(arrivals[key][0] - run["started"])
    launch = [
        r["started"] - r["created"]
        for r in records
        if r["job"] == "evaluate_triggers_job" and r["started"]
    ]
    by_job: dict[str, int] = {}
    for key in committed:
        run = runs.get(delivered_by.get(key, ""))
        if run is not None:
            by_job[run["job"]] = by_job.get(run["job"], 0) + 1
    med = lambda xs: round(statistics.median(xs), 2) if xs else None  # noqa: E731
    return {
        "deliveries_by_job": by_job,
        "run_requested_to_started": med(launch),
        "event_commit_to_its_run_started": med(to_start),
        "run_started_to_delivered": med(in_run),
    }


def count_runs(records: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in records:
        out.setdefault(r["job"], {}).setdefault(r["status"], 0)
        out[r["job"]][r["status"]] += 1
    return out


# ---- fast phase: a block at the head -> its unconfirmed delivery ----------------------------


def _chain_files(home: Path, rpc_url: str, confirmations: int, wallet: str) -> dict[str, str]:
    """chains.yaml and portfolios.yaml of the bench's chain; the env vars naming them."""
    chains = home / "chains.yaml"
    chains.write_text(
        "chains:\n  - name: devnet\n    network: devnet\n    subnet: local\n"
        f'    chain_id: {CHAIN}\n    rpc_urls: ["{rpc_url}"]\n'
        f"    confirmations: {confirmations}\n    start_date: 2026-11-01\n"
    )
    portfolios = home / "portfolios.yaml"
    portfolios.write_text(
        f'wallets:\n  - {{name: bench, address: "{wallet}", chain: devnet}}\n'
        "portfolios:\n  - {id: bench, name: Bench, chain: devnet, wallets: [bench]}\n"
    )
    return {"CHAINS_CONFIG": str(chains), "PORTFOLIOS_CONFIG": str(portfolios)}


def run_fast_phase(args: argparse.Namespace) -> dict[str, Any]:
    from chainlake.events import db
    from chainlake.events.resident import live_evaluator
    from chainlake.events.spec import Resolver, apply_spec, parse_spec
    from chainlake.instance import ensure_instance
    from tools.devnet.anvil import Anvil
    from tools.devnet.artifacts import load_artifact

    tag = uuid.uuid4().hex[:8]
    events_url = f"{PG}chainlake_bench_{tag}"
    dagster_url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/dagster_bench_{tag}"
    home = Path(tempfile.mkdtemp(prefix="dagster-bench-"))
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    receiver = Receiver()
    info: dict[str, Any] = {"machine": machine(), "mode": "fast-phase", "instance": args.instance,
                            "location": args.location, "blocks": args.blocks,
                            "block_interval_s": args.block_interval,
                            "confirmations": args.confirmations}  # fmt: skip
    node = Anvil(automine=False).start()
    try:
        accounts = node.rpc("eth_accounts")
        sender, wallet = accounts[0], accounts[1].lower()
        token = load_artifact("Token")
        node.rpc(
            "eth_sendTransaction",
            {"from": sender, "data": token.deploy_data("Bench", "BNC", 18, 10**30), "gas": hex(3_000_000)},
        )  # fmt: skip
        node.rpc("evm_mine")
        latest = node.rpc("eth_getBlockByNumber", "latest", True)
        receipt = node.rpc("eth_getTransactionReceipt", latest["transactions"][0]["hash"])
        token_address = receipt["contractAddress"]
        for _ in range(args.confirmations):
            node.rpc("evm_mine")

        def transfer_block(amount: int) -> tuple[int, float]:
            """One block with one transfer to the tracked wallet: (its number, when served)."""
            node.rpc(
                "eth_sendTransaction",
                {"from": sender, "to": token_address, "gas": hex(100_000),
                 "data": token.call_data("transfer", wallet, amount)},
            )  # fmt: skip
            node.rpc("evm_mine")
            served = time.time()
            return int(node.rpc("eth_blockNumber"), 16), served

        db.migrate(events_url)
        ensure_instance(home, dagster_url)
        if args.instance == "fast":
            (home / "dagster.yaml").unlink()
            (home / "dagster.yaml").write_text(FAST_INSTANCE)
        files = _chain_files(home, node.rpc_url, args.confirmations, wallet)
        spec = parse_spec(
            {"user": "bench", "triggers": [{
                "id": "fast-transfer", "chain_id": CHAIN, "registry": "erc20", "phase": "fast",
                "conditions": [{"type": "event_type_equals", "value": "Transfer"}],
                "actions": [{"name": "hook", "type": "rest", "url": "${CHAINLAKE_ACTION_SECRET_BENCH_HOOK}"}],
            }]},
            resolver=Resolver(),
        )  # fmt: skip
        with db.connection(events_url) as conn:
            apply_spec(conn, spec)
        env_vars = {
            "DAGSTER_HOME": str(home), "DAGSTER_POSTGRES_URL": dagster_url,
            "POSTGRES_URL": events_url, "CHAINLAKE_ACTION_SECRET_BENCH_HOOK": receiver.url,
            "CHAINLAKE_ACTION_ALLOW_HOSTS": "127.0.0.1,::1",
            "CHAINLAKE_RESIDENT_EVALUATOR_SECONDS": "3600", **files,
            # with --location full, the confirmed pipeline's runs write stores of their own
            "DELTA_ROOT": str(home / "delta"),
            "CLICKHOUSE_PATH": str(home / "clickhouse"),
            "DUCKDB_PATH": str(home / "serving.duckdb"),
        }  # fmt: skip
        with dagster_processes(home, env_vars, home, args.location) as ui:
            t0 = time.time()
            wait_http(f"{ui}/server_info", 180)
            while True:
                with db.connection(events_url, autocommit=True) as conn:
                    if live_evaluator(conn):
                        break
                if time.time() - t0 > 300:
                    raise TimeoutError("no resident evaluator live within 300 s: " + str(home))
                time.sleep(0.2)
            info["startup_to_resident_live_s"] = round(time.time() - t0, 1)
            # warm-up: one block through the whole path before the clock starts (not counted)
            transfer_block(1)
            while receiver.count() < 1:
                if time.time() - t0 > 300:
                    raise TimeoutError("warm-up block not delivered within 300 s: " + str(home))
                time.sleep(0.1)
            info["startup_to_first_delivery_s"] = round(time.time() - t0, 1)
            with receiver.lock:
                receiver.arrivals.clear()
            print(f"warm: first fast delivery {info['startup_to_first_delivery_s']} s after start")
            served: dict[int, float] = {}
            start = time.time()
            for i in range(args.blocks):
                number, at = transfer_block(10**18 + i)
                served[number] = at
                time.sleep(max(0.0, start + (i + 1) * args.block_interval - time.time()))

            def received(phase: str) -> int:
                with receiver.lock:
                    return sum(1 for k in receiver.arrivals if k.endswith(":" + phase))

            deadline = time.time() + args.drain_timeout
            while received("unconfirmed") < len(served) and time.time() < deadline:
                time.sleep(0.2)
            # the confirmed pipeline is in the full location only: its runs confirm the blocks
            # once `confirmations` blocks are on top of the last one
            confirming: dict[int, float] = {}
            if args.location == "full":
                for _ in range(args.confirmations):
                    node.rpc("evm_mine")
                    confirming[int(node.rpc("eth_blockNumber"), 16)] = time.time()
                    time.sleep(args.block_interval)
                deadline = time.time() + args.drain_timeout
                while received("confirmed") < len(served) and time.time() < deadline:
                    time.sleep(1.0)
            with receiver.lock:
                arrivals = {k: list(v) for k, v in receiver.arrivals.items()}
            with db.connection(events_url) as c:
                phases = {r["phase"]: r["n"] for r in c.execute(
                    "SELECT phase, count(*) AS n FROM deliveries GROUP BY phase").fetchall()}  # fmt: skip
        by_block: dict[int, list[float]] = {}
        confirmed_at: dict[int, float] = {}
        for key, times in arrivals.items():
            # fast-transfer:31337-<block>-<log>@<hash>:hook:unconfirmed
            number = int(key.split(":")[1].split("-")[1])
            if key.endswith(":unconfirmed"):
                by_block.setdefault(number, []).extend(times)
            elif key.endswith(":confirmed"):
                confirmed_at[number] = min(times)
        latencies = sorted(by_block[n][0] - served[n] for n in served if n in by_block)
        # a block is confirmed once the block `confirmations` above it is served
        mined = {**served, **confirming}
        after_confirmed = sorted(
            confirmed_at[n] - mined[n + args.confirmations]
            for n in served
            if n in confirmed_at and n + args.confirmations in mined
        )
        info.update(
            blocks_mined=len(served),
            delivered=len(latencies),
            lost=len(served) - len(latencies),
            duplicates=sum(len(v) - 1 for v in arrivals.values()),
            latency_s={
                "p50": round(percentile(latencies, 0.50), 3),
                "p95": round(percentile(latencies, 0.95), 3),
                "p99": round(percentile(latencies, 0.99), 3),
                "max": round(latencies[-1], 3) if latencies else None,
                "mean": round(statistics.fmean(latencies), 3) if latencies else None,
            },
            deliveries_by_phase=phases,
            # --location full: the confirmed follow-ups, from the block's last confirmation
            confirmed_received=len(confirmed_at),
            confirmed_after_confirmation_s={
                "p50": round(percentile(after_confirmed, 0.50), 1),
                "max": round(after_confirmed[-1], 1) if after_confirmed else None,
            },
            load_avg_at_end=os.getloadavg(),
        )
    finally:
        receiver.close()
        node.stop()
        if not args.keep:
            for url in (events_url, dagster_url.replace("+psycopg2", "")):
                with contextlib.suppress(Exception):
                    db.drop_database(url)
    out = results_dir / f"triggers-fast-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(info, indent=2, default=str))
    info["result_file"] = str(out.relative_to(ROOT))
    info["dagster_home"] = str(home)
    return info


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--instance", choices=["project", "fast"], default="project",
                   help="project: the repository's dagster.yaml; fast: plain run coordinator, threaded sensors")  # fmt: skip
    p.add_argument("--location", choices=["engine", "full"], default="full",
                   help="full: pipelines.definitions, as deployed; engine: the trigger jobs and sensors only")  # fmt: skip
    p.add_argument("--evaluator", choices=["resident", "batch"], default="resident",
                   help="resident: one long-lived evaluator run (as deployed); batch: a run per batch of events")  # fmt: skip
    p.add_argument(
        "--drain-timeout", type=float, default=600.0, help="wait this long for the last deliveries"
    )
    p.add_argument("--keep", action="store_true", help="keep the bench databases")
    p.add_argument("--fast-phase", action="store_true",
                   help="two-phase alerts: latency from a block at the head to its unconfirmed delivery")  # fmt: skip
    p.add_argument("--blocks", type=int, default=120, help="--fast-phase: blocks mined")
    p.add_argument("--block-interval", type=float, default=0.5,
                   help="--fast-phase: seconds between blocks")  # fmt: skip
    p.add_argument("--confirmations", type=int, default=6, help="--fast-phase: the chain's")
    args = p.parse_args()
    if args.fast_phase:
        info = run_fast_phase(args)
        lat = info["latency_s"]
        print(json.dumps(info, indent=2, default=str))
        print(
            f"\n{info['delivered']}/{info['blocks_mined']} blocks delivered unconfirmed, lost "
            f"{info['lost']}, duplicates {info['duplicates']}; block served -> unconfirmed "
            f"delivery p50 {lat['p50']} s, p95 {lat['p95']} s, p99 {lat['p99']} s, max {lat['max']} s"
        )
        return 0 if info["lost"] == 0 and info["duplicates"] == 0 else 1
    info = run(args)
    lat = info["latency_s"]
    print(json.dumps(info, indent=2, default=str))
    print(
        f"\n{info['delivered']}/{info['inserted']} delivered, lost {info['lost']}, duplicates "
        f"{info['duplicates']}; latency p50 {lat['p50']} s, p95 {lat['p95']} s, p99 {lat['p99']} s; "
        f"throughput {info['throughput_per_s']}/s"
    )
    return 0 if info["lost"] == 0 and info["duplicates"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
