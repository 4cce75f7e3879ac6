"""Benchmark: a 30-day × 2-chain asset backfill through the daemon, against the node's ceiling.

    .venv/bin/python bench/backfill.py                        # 2 chains × 30 days × 200 blocks × 20 txs
    .venv/bin/python bench/backfill.py --days 3 --blocks 20   # a quick look (or the env vars below)

What runs. Two anvil nodes (chain ids 4201 and 4202), each filled by the devnet generator
(`tools.devnet.generator.generate`: ERC-20 tokens, transfers, approvals, contract creations,
failed transactions, price-feed rounds, registry events) with `--days` UTC days of `--blocks`
blocks of `--txs` transactions, plus one block on the next day so the last day is closed. The
chains' `chains.yaml` entries and a `portfolios.yaml` tracking the generator's wallets on both
chains come from `tools.devnet.configs`. Then, against those nodes:

- (a) raw ceiling: every block of the days, with its transactions and receipts, read from
  both nodes at once by `bench/extract.py`'s raw reader (httpx, batched JSON-RPC, threads;
  bodies read and thrown away), best of two in-flight × batch settings; measured before the
  backfills and again after them.
- (c) raw + core: a fresh stack (its own PostgreSQL database for the Dagster instance and the
  events, its own Delta root, ClickHouse and DuckDB files) set up like `make dev`
  (`chainlake.instance`: the shipped `dagster.yaml`, pools), the code location as its own
  server (`dagster code-server start`) and `dagster-daemon run` on it, then one asset
  backfill of the `raw` and `core` groups over every chain-day, submitted as the UI's
  "Materialize selected" does (a `PartitionBackfill` with asset backfill data: the assets'
  backfill policies decide the runs). Timed from the submission to the end of the last run.
- (c2) the whole graph, the same way on another fresh stack: raw, core, analytics, events and
  serving.

Reported for (c) and (c2): blocks/s and the ratio to (a), runs launched, and orchestration
overhead per chain-day: for each chain, the backfill's wall time less the time some step of
that chain's runs was executing (STEP_START to STEP_SUCCESS in the event log: the asset bodies
with their checks, not the run or step process start-up), summed over the chains and divided by
the chain-days.

Sizes default to the environment: CHAINLAKE_BENCH_DAYS (30), CHAINLAKE_BENCH_BLOCKS (200 a
day), CHAINLAKE_BENCH_TXS (20 a block). Everything this starts (nodes, daemons, their run
workers, scratch databases, temporary directories) is stopped and removed on exit, Ctrl-C or
SIGTERM. Results go to `bench/results/backfill-<time>.json`; `bench/README.md` records them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.dagster_stack import (  # noqa: E402
    VENV_BIN,
    code_server,
    process,
    scratch_database,
    stack_env,
)

CHAIN_IDS = {"chain-a": 4201, "chain-b": 4202}
PHASES = {"c": ("raw", "core"), "c2": ("raw", "core", "analytics", "events", "serving")}
SUBMIT = r"""
import json, sys, time
import dagster as dg
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.utils import make_new_backfill_id
from pipelines.definitions import defs

groups, keys = json.loads(sys.argv[1]), json.loads(sys.argv[2])
graph = defs.resolve_asset_graph()
selection = sorted(dg.AssetSelection.groups(*groups).resolve(graph), key=str)
instance = dg.DagsterInstance.get()
now = time.time()
backfill = PartitionBackfill.from_asset_partitions(
    backfill_id=make_new_backfill_id(), asset_graph=graph, partition_names=keys,
    asset_selection=selection, backfill_timestamp=now, tags={}, dynamic_partitions_store=instance,
    all_partitions=False, title="bench/backfill.py", description=None, run_config=None,
)
instance.add_backfill(backfill)
print(json.dumps({"backfill_id": backfill.backfill_id, "submitted": now,
                  "assets": [k.to_user_string() for k in selection]}))
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _raw_ceiling():
    spec = importlib.util.spec_from_file_location("bench_extract", ROOT / "bench" / "extract.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.raw_ceiling


# -- the chains -------------------------------------------------------------------------------


class Chains:
    """Two anvil nodes filled by the devnet generator; `blocks[name]` = (first, last) block of
    the generated days."""

    def __init__(self, first_day: dt.date, days: int, blocks: int, txs: int) -> None:
        self.first_day, self.days, self.blocks_per_day, self.txs = first_day, days, blocks, txs
        self.nodes: dict[str, Any] = {}
        self.manifests: dict[str, Any] = {}
        self.blocks: dict[str, tuple[int, int]] = {}

    def start(self) -> None:
        from tools.devnet.anvil import Anvil

        for name, chain_id in CHAIN_IDS.items():
            node = Anvil(
                chain_id=chain_id,
                genesis=self.first_day,
                accounts=20,
                # balances read historical state at each day's blocks
                keep_states=self.days * (self.blocks_per_day + 10) + 100,
            )
            self.nodes[name] = node
            node.start()
        errors: list[BaseException] = []

        def fill(name: str) -> None:
            try:
                self._fill(name)
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=fill, args=(n,), daemon=True) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
        if errors:
            raise errors[0]

    def _fill(self, name: str) -> None:
        from tools.devnet.generator import Rpc, day_start_timestamp, generate

        node = self.nodes[name]
        t0 = time.monotonic()
        manifest = generate(
            node.rpc_url,
            start=self.first_day,
            days=self.days,
            blocks_per_day=self.blocks_per_day,
            txs_per_block=self.txs,
            verify=False,
            progress_every=10**9,
        )
        # one block on the next day: the last generated day is closed
        after = self.first_day + dt.timedelta(days=self.days)
        with Rpc(node.rpc_url) as rpc:
            last = int(rpc.call("eth_blockNumber"), 16)
            rpc.call("evm_mine", day_start_timestamp(after) + 60)
        self.manifests[name] = manifest
        first = manifest.day_blocks[0].first_block
        self.blocks[name] = (first, last)
        log(
            f"{name}: {self.days} days, blocks {first}..{last}, "
            f"{sum(v for k, v in manifest.stats.items() if k != 'failed')} transactions "
            f"in {time.monotonic() - t0:.0f} s"
        )

    def stop(self) -> None:
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.stop()

    def total_blocks(self) -> int:
        return sum(last - first + 1 for first, last in self.blocks.values())

    def write_configs(self, tmp: Path) -> tuple[Path, Path]:
        import yaml

        from tools.devnet.configs import chain_entry, portfolios_document

        chains = []
        for n in self.nodes:
            entry = chain_entry(self.manifests[n], name=n)
            entry["network"] = n  # each chain its own Delta folder: <root>/<network>/<subnet>
            chains.append(entry)
        chains_path = tmp / "chains.yaml"
        chains_path.write_text(yaml.safe_dump({"chains": chains}, sort_keys=False))
        book: dict[str, list[Any]] = {"wallets": [], "portfolios": [], "alerts": []}
        for n in self.nodes:
            doc = portfolios_document(self.manifests[n], chain=n)
            # names are unique across the file: prefix each chain's wallets, portfolios, alerts
            names = {w["name"] for w in doc["wallets"]} | {p["id"] for p in doc["portfolios"]}
            for w in doc["wallets"]:
                w["name"] = f"{n}-{w['name']}"
            for p in doc["portfolios"]:
                p["id"], p["name"] = f"{n}-{p['id']}", f"{n} {p['name']}"
                p["wallets"] = [f"{n}-{w}" for w in p["wallets"]]
            for a in doc["alerts"]:
                a["name"] = f"{n}: {a['name']}"
                for old in sorted(names, key=len, reverse=True):
                    a["expression"] = a["expression"].replace(f'"{old}"', f'"{n}-{old}"')
            for k in book:
                book[k].extend(doc[k])
        portfolios_path = tmp / "portfolios.yaml"
        portfolios_path.write_text(yaml.safe_dump(book, sort_keys=False, width=120))
        return chains_path, portfolios_path

    def keys(self) -> list[str]:
        return [
            f"{n}|{self.first_day + dt.timedelta(days=d)}"
            for n in self.nodes
            for d in range(self.days)
        ]


# -- (a) the raw ceiling ----------------------------------------------------------------------


def ceiling(chains: Chains) -> dict[str, Any]:
    """Both nodes read at once, every block with its receipts; best of two settings."""
    raw_ceiling = _raw_ceiling()
    tries = []
    for in_flight, per_batch in ((4, 25), (8, 10)):
        seconds: dict[str, float] = {}

        def read(
            name: str,
            in_flight: int = in_flight,
            per_batch: int = per_batch,
            seconds: dict[str, float] = seconds,
        ) -> None:
            first, last = chains.blocks[name]
            seconds[name] = raw_ceiling(
                chains.nodes[name].rpc_url, first, last, in_flight, per_batch
            )

        t0 = time.perf_counter()
        threads = [threading.Thread(target=read, args=(n,), daemon=True) for n in chains.nodes]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
        wall = time.perf_counter() - t0
        row = {
            "in_flight": in_flight,
            "blocks_per_batch": per_batch,
            "wall_s": round(wall, 2),
            "per_chain_s": {k: round(v, 2) for k, v in seconds.items()},
            "blocks_per_s": round(chains.total_blocks() / wall, 1),
            "load_1min": os.getloadavg()[0],
        }
        tries.append(row)
        log(
            f"(a) raw ceiling {in_flight} in flight × {per_batch} blocks: {row['blocks_per_s']} blocks/s"
        )
    best = max(tries, key=lambda r: r["blocks_per_s"])
    return {"best_blocks_per_s": best["blocks_per_s"], "tries": tries}


# -- (c), (c2): a backfill through the daemon ---------------------------------------------------


def _instance(home: Path, pg_url: str):
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    os.environ["DAGSTER_POSTGRES_URL"] = pg_url
    return DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def _run(args: list[str], env: dict[str, str], timeout: float = 900) -> str:
    out = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args[:4])} failed:\n{out.stdout[-2000:]}{out.stderr[-4000:]}"
        )
    return out.stdout


def _union(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def backfill(
    chains: Chains, phase: str, timeout: float, progress: dict[str, Any]
) -> dict[str, Any]:
    """One backfill on a fresh stack; `progress` is kept up to date while it runs (what a run
    stopped early records)."""
    from dagster import DagsterEventType, RunsFilter
    from dagster._core.execution.backfill import BulkActionStatus

    groups = PHASES[phase]
    keys = chains.keys()
    with contextlib.ExitStack() as stack:
        tmp = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-backfill-{phase}-"))
        )
        pg_url = stack.enter_context(scratch_database(f"chainlake_bench_backfill_{phase}"))
        home = tmp / "dagster_home"
        home.mkdir()
        chains_path, _ = chains.write_configs(tmp)
        env = stack_env(tmp, home, pg_url, chains_path)
        # CHAINLAKE_RESIDENT_EVALUATOR_SECONDS=0 (stack_env): no resident trigger evaluator
        # holding a run slot for its lifetime; this backfill is about the data runs
        _run([sys.executable, "-m", "chainlake.instance"], env)
        _run([str(VENV_BIN / "chainlake"), "db", "migrate"], env)
        instance = stack.enter_context(_instance(home, pg_url))
        # the code location as its own server, as deployed (README "Operating"): a daemon on
        # workspace.yaml would replace its code server every 60 s, importing the code again
        server = stack.enter_context(code_server(env, tmp))
        daemon = stack.enter_context(
            process(
                [str(VENV_BIN / "dagster-daemon"), "run", "-w", str(server.workspace)],
                env,
                tmp / "daemon.log",
            )
        )
        # the daemon is up (its loops have heartbeats) before the clock starts
        deadline = time.monotonic() + 300
        while not instance.get_daemon_heartbeats().get("BACKFILL"):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the daemon did not start: {(tmp / 'daemon.log').read_text()[-3000:]}"
                )
            time.sleep(1)
        load_start = os.getloadavg()[0]
        submitted = json.loads(
            _run([sys.executable, "-c", SUBMIT, json.dumps(groups), json.dumps(keys)], env)
            .strip()
            .splitlines()[-1]
        )
        backfill_id, t_submit = submitted["backfill_id"], submitted["submitted"]
        log(
            f"({phase}) backfill {backfill_id} of {len(submitted['assets'])} assets × {len(keys)} chain-days submitted"
        )
        runs_filter = RunsFilter(tags={"dagster/backfill": backfill_id})
        done = {BulkActionStatus.COMPLETED, BulkActionStatus.COMPLETED_SUCCESS,
                BulkActionStatus.COMPLETED_FAILED, BulkActionStatus.FAILED, BulkActionStatus.CANCELED}  # fmt: skip
        deadline = time.monotonic() + timeout
        last_report = 0.0
        while True:
            status = instance.get_backfill(backfill_id).status
            records = instance.get_run_records(runs_filter)
            finished = sum(1 for r in records if r.dagster_run.is_finished)
            progress.update(
                status=status.value,
                elapsed_s=round(time.time() - t_submit, 1),
                runs_launched=len(records),
                runs_finished=finished,
                runs_failed=sum(1 for r in records if r.dagster_run.is_failure),
            )
            if status in done and finished == len(records):
                break
            if daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited: {(tmp / 'daemon.log').read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"({phase}) backfill not done after {timeout:.0f} s ({status})")
            if time.monotonic() - last_report > 60:
                log(
                    f"({phase}) {status.value}: {finished}/{len(records)} runs finished, load {os.getloadavg()[0]:.1f}"
                )
                last_report = time.monotonic()
            time.sleep(2)
        load_end = os.getloadavg()[0]

        # the runs, and the time their steps executed, per chain
        runs = []
        steps: dict[str, list[tuple[float, float]]] = {}
        step_seconds: dict[str, float] = {}
        for rec in records:
            run = rec.dagster_run
            # the open edge's tag, or the closed days' (chainlake.run_coordinator)
            chain = run.tags.get("chainlake/chain") or run.tags.get("chainlake/chain-history", "?")
            started: dict[str, float] = {}
            for entry in instance.all_logs(
                run.run_id,
                of_type={
                    DagsterEventType.STEP_START,
                    DagsterEventType.STEP_SUCCESS,
                    DagsterEventType.STEP_FAILURE,
                },
            ):
                event = entry.dagster_event
                if event is None or event.step_key is None:
                    continue
                if event.event_type == DagsterEventType.STEP_START:
                    started[event.step_key] = entry.timestamp
                elif event.step_key in started:
                    span = (started.pop(event.step_key), entry.timestamp)
                    steps.setdefault(chain, []).append(span)
                    name = event.step_key.split("[")[0]
                    step_seconds[name] = step_seconds.get(name, 0.0) + span[1] - span[0]
            runs.append(
                {
                    "run_id": run.run_id,
                    "chain": chain,
                    "status": run.status.value,
                    "partition_range": [
                        run.tags.get(
                            "dagster/asset_partition_range_start", run.tags.get("dagster/partition")
                        ),
                        run.tags.get(
                            "dagster/asset_partition_range_end", run.tags.get("dagster/partition")
                        ),
                    ],
                    "steps": sorted({s for s in run.step_keys_to_execute or []}),
                    "start": rec.start_time,
                    "end": rec.end_time,
                }
            )
        t_end = max((r["end"] or 0.0) for r in runs) if runs else time.time()
        wall = t_end - t_submit
        per_chain = {}
        for chain in chains.nodes:
            chain_runs = [r for r in runs if r["chain"] == chain]
            chain_end = max((r["end"] or 0.0) for r in chain_runs) if chain_runs else t_end
            body = _union(steps.get(chain, []))
            per_chain[chain] = {
                "runs": len(chain_runs),
                "wall_s": round(chain_end - t_submit, 1),
                "steps_executing_s": round(body, 1),
                "overhead_s": round(chain_end - t_submit - body, 1),
            }
        other = [r for r in runs if r["chain"] not in chains.nodes]
        all_steps = [s for spans in steps.values() for s in spans]
        overhead_sum = sum(c["overhead_s"] for c in per_chain.values())
        failed = [r for r in runs if r["status"] != "SUCCESS"]

        # every block of both chains in Delta, once
        import polars as pl

        rows = {}
        for name, (first, last) in chains.blocks.items():
            blocks = pl.read_delta(str(tmp / "delta" / name / "local" / "blocks")).filter(
                # the backfill's days only: the new-block sensor materialises the head's day too
                pl.col("date").is_between(
                    chains.first_day, chains.first_day + dt.timedelta(days=chains.days - 1)
                )
            )
            rows[name] = {"blocks": blocks.height, "unique": blocks["block_number"].n_unique(),
                          "expected": last - first + 1}  # fmt: skip
        result = {
            "phase": phase,
            "groups": groups,
            "assets": submitted["assets"],
            "backfill_id": backfill_id,
            "backfill_status": status.value,
            "chain_days": len(keys),
            "wall_s": round(wall, 1),
            "blocks_per_s": round(chains.total_blocks() / wall, 1),
            "runs_launched": len(runs),
            "runs_failed": len(failed),
            "runs_without_chain": len(other),
            # runs the stack's sensors and schedules launched meanwhile (not the backfill's)
            "other_runs": instance.get_runs_count() - len(runs),
            "per_chain": per_chain,
            "overhead_per_chain_day_s": round(overhead_sum / len(keys), 2),
            # the looser reading: wall time with no step of any run executing, per chain-day
            "idle_per_chain_day_s": round((wall - _union(all_steps)) / len(keys), 2),
            "step_seconds_by_step": {k: round(v, 1) for k, v in sorted(step_seconds.items())},
            "delta_blocks": rows,
            "load_1min": [load_start, load_end],
            "runs": runs,
            "failures": [_failure(instance, r["run_id"]) for r in failed[:3]],
        }
        log(
            f"({phase}) {status.value}: {wall:.1f} s, {result['blocks_per_s']} blocks/s, "
            f"{len(runs)} runs ({len(failed)} failed), overhead {result['overhead_per_chain_day_s']} s "
            f"per chain-day, blocks in Delta {rows}"
        )
        return result


def _failure(instance, run_id: str) -> str:
    from dagster import DagsterEventType

    for entry in instance.all_logs(
        run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}
    ):
        event = entry.dagster_event
        if event is not None and event.event_type == DagsterEventType.STEP_FAILURE:
            return f"{event.step_key}: {event.step_failure_data.error.message.strip()[:600]}"
        if event is not None:
            return (event.message or "")[:600]
    return "?"


# -- the run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C; once unwinding, further signals are ignored so the clean-up
    (daemons, nodes, databases) finishes."""

    def handler(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    yield


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    import dagster

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "dagster": dagster.__version__, "load_average_at_start": os.getloadavg()}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--days", type=int, default=int(os.environ.get("CHAINLAKE_BENCH_DAYS", 30)))
    p.add_argument("--blocks", type=int, default=int(os.environ.get("CHAINLAKE_BENCH_BLOCKS", 200)),
                   help="blocks a day")  # fmt: skip
    p.add_argument("--txs", type=int, default=int(os.environ.get("CHAINLAKE_BENCH_TXS", 20)),
                   help="transactions a block")  # fmt: skip
    p.add_argument("--phases", default="c,c2", help="which backfills: c (raw + core), c2 (all)")
    p.add_argument("--timeout", type=float, default=5400, help="seconds a backfill may take")
    args = p.parse_args()
    phases = [x for x in args.phases.split(",") if x]
    info = machine()
    log(f"machine: {info}")
    # closed days up to the day before yesterday: the backfill of the whole graph reaches every
    # later day through the risk windows and alerts, so few days lie between them and today
    first_day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=args.days + 1)
    chains = Chains(first_day, args.days, args.blocks, args.txs)
    result: dict[str, Any] = {"benchmark": "backfill", "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "machine": info, "params": vars(args)}  # fmt: skip
    out = ROOT / "bench" / "results" / f"backfill-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        # after every step, so a run stopped early keeps what it measured
        result["summary"] = summarise(result, phases)
        result["load_average_at_end"] = os.getloadavg()
        out.write_text(json.dumps(result, indent=2, default=str))

    with _stop_on_signals():
        try:
            chains.start()
            result["blocks"] = chains.total_blocks()
            result["transactions"] = {n: m.stats for n, m in chains.manifests.items()}
            # (a) before and after each backfill: each is compared with the ceiling of its time
            result["a"] = [ceiling(chains)]
            save()
            for phase in phases:
                result[phase] = {"finished": False}
                result[phase] = backfill(chains, phase, args.timeout, result[phase])
                save()
                result["a"].append(ceiling(chains))
                save()
        finally:
            save()
            chains.stop()
    log(json.dumps(result["summary"], indent=2))
    log(f"written {out}")


def summarise(result: dict[str, Any], phases: list[str]) -> dict[str, Any]:
    ceilings = [a["best_blocks_per_s"] for a in result.get("a", [])]
    if not ceilings:
        return {}
    summary: dict[str, Any] = {"a_blocks_per_s": ceilings}
    for i, phase in enumerate(phases):
        r = result.get(phase)
        if r is None:
            continue
        if "blocks_per_s" not in r:  # stopped early: how far it got
            summary[phase] = r
            continue
        around = ceilings[i : i + 2]
        a = sum(around) / len(around)
        summary[phase] = {
            "blocks_per_s": r["blocks_per_s"],
            "a_around_blocks_per_s": round(a, 1),
            f"{phase}/a": round(r["blocks_per_s"] / a, 3),
            f"{phase}/a_best": round(r["blocks_per_s"] / max(ceilings), 3),
            "wall_s": r["wall_s"],
            "runs_launched": r["runs_launched"],
            "runs_failed": r["runs_failed"],
            "overhead_per_chain_day_s": r["overhead_per_chain_day_s"],
            "idle_per_chain_day_s": r["idle_per_chain_day_s"],
            "load_1min": r["load_1min"],
        }
    return summary


if __name__ == "__main__":
    main()
