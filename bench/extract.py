"""Benchmark: extraction of blocks, transactions, receipts, logs and traces from one anvil node.

    .venv/bin/python bench/extract.py                  # 2,000 blocks × 50 transactions
    .venv/bin/python bench/extract.py --blocks 300     # quick
    .venv/bin/python bench/extract.py --rounds 2       # a, b, c then c, b, a

One node holds the chain (filled with `tools.devnet.generator.fill`, all blocks in one
UTC day); then, side by side in the same run, against that node:

- (a) raw ceiling: a minimal batched JSON-RPC reader (httpx + threads) fetching every block
  with its full transactions, its receipts and its traces (`eth_getBlockByNumber`,
  `eth_getBlockReceipts`, `trace_block` in one batch; `--no-traces` leaves the traces out, as
  before issue 12), reading each response body whole and throwing it away. A few in-flight /
  batch-size settings are tried and the best is the ceiling.
- (b) ethereum-etl 2.4.2 from PyPI, in its own virtual environment (`bench/.venv-etl`, made
  by this script on first use), exporting blocks + transactions then receipts + logs, with
  the best of a few `--batch-size` / `--max-workers` settings.
- (d) cryo 0.3.2 from PyPI (its Rust extractor behind a Python wheel), in its own virtual
  environment (`bench/.venv-cryo`, made on first use), collecting blocks, transactions, logs
  and traces of the same blocks into Parquet, with the best of a few concurrency / chunk
  settings.
- (c) chainlake: `dg.materialize` of the raw tables (`raw/blocks`, `raw/transactions`,
  `raw/logs`, and `raw/traces` where the code location has it) for the day
  into a fresh local Delta root, in a child process (so its peak RSS is its own). Its RSS is
  sampled every 0.2 s; the peaks of each quarter of the run, and the peaks of runs over two
  smaller days the node also holds (a quarter and a half of the blocks), show whether memory
  stays flat as the day grows.

The node's speed drifts over a run (anvil serving the same blocks 20 % faster or slower minutes
apart), so besides the best-against-best ratio, each (c) is bracketed by two (a) reads at the
best (a) setting, right before and right after it: `c/a_bracketed` compares (c) with the
ceiling of its own minute. CPU seconds of the node and of the reading side are recorded for
every run: on a shared machine they tell a slow node from a slow reader.

Results go to `bench/results/extract-<time>.json`; `bench/README.md` records them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ETL_VENV = ROOT / "bench" / ".venv-etl"
# ethereum-etl pins web3 5, hence its own venv; parsimonious 0.9.0 goes in over its pin,
# which fails on Python 3.11
ETL_PACKAGES = (["ethereum-etl==2.4.2"], ["parsimonious==0.9.0"])
CRYO_VENV = ROOT / "bench" / ".venv-cryo"
CRYO_PACKAGE = "cryo==0.3.2"
CRYO_DATATYPES = ("blocks", "transactions", "logs", "traces")
DAY = dt.date(2026, 10, 1)
SECONDS_PER_BLOCK = 12  # 2,000 blocks in 6 h 40 min: inside one day


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Cpu:
    """CPU seconds the node and the reading side used during a block, and the load."""

    def __init__(self, node_pid: int) -> None:
        self.node_pid = node_pid

    def __enter__(self) -> Cpu:
        self.node0, self.client0 = proc_cpu(self.node_pid), own_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.node = proc_cpu(self.node_pid) - self.node0
        self.client = own_cpu() - self.client0
        self.load = os.getloadavg()[0]

    def figures(self) -> dict[str, float]:
        return {
            "node_cpu_s": round(self.node, 2),
            "reader_cpu_s": round(self.client, 2),
            "load_1min": self.load,
        }

    def __str__(self) -> str:
        return f"node CPU {self.node:.1f} s, reader CPU {self.client:.1f} s, load {self.load:.1f}"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- the chain --------------------------------------------------------------------------------


def start_chain(days: list[tuple[dt.date, int]], txs: int) -> tuple[Any, dict[dt.date, range]]:
    """A node holding `blocks` blocks of `txs` transactions on each of `days` (in order)."""
    from tools.devnet.anvil import Anvil
    from tools.devnet.generator import fill

    def midnight(d: dt.date) -> int:
        return int(dt.datetime.combine(d, dt.time(), dt.UTC).timestamp())

    node = Anvil(genesis=midnight(days[0][0]) - 3_600, accounts=20).start()
    ranges = {}
    for day, blocks in days:
        res = fill(
            node.rpc_url,
            blocks=blocks,
            txs_per_block=txs,
            start_timestamp=midnight(day) + 60,
            seconds_per_block=SECONDS_PER_BLOCK,
        )
        ranges[day] = range(res.first_block, res.last_block + 1)
        log(
            f"{day}: blocks {res.first_block}..{res.last_block}, {res.transactions} txs in {res.seconds:.0f} s"
        )
    return node, ranges


# -- (a) the raw ceiling ----------------------------------------------------------------------


def raw_ceiling(
    url: str, first: int, last: int, in_flight: int, per_batch: int, traces: bool = True
) -> float:
    import httpx
    import orjson

    client = httpx.Client(
        timeout=120,
        limits=httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight),
    )

    def fetch(start: int) -> int:
        calls = []
        for n in range(start, min(start + per_batch, last + 1)):
            methods = [
                ("eth_getBlockByNumber", [hex(n), True]),
                ("eth_getBlockReceipts", [hex(n)]),
                *([("trace_block", [hex(n)])] if traces else []),
            ]
            for i, (method, params) in enumerate(methods):
                calls.append(
                    {"jsonrpc": "2.0", "id": 3 * n + i, "method": method, "params": params}
                )
        r = client.post(
            url, content=orjson.dumps(calls), headers={"content-type": "application/json"}
        )
        r.raise_for_status()
        return len(r.content)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        size = sum(pool.map(fetch, range(first, last + 1, per_batch)))
    seconds = time.perf_counter() - t0
    client.close()
    assert size > 0
    return seconds


# -- (b) ethereum-etl -------------------------------------------------------------------------


def ensure_etl() -> Path:
    exe = ETL_VENV / "bin" / "ethereumetl"
    if exe.exists():
        return exe
    log(f"installing ethereum-etl into {ETL_VENV} (once)")
    subprocess.run([sys.executable, "-m", "venv", str(ETL_VENV)], check=True)
    pip = [str(ETL_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    for packages in ETL_PACKAGES:
        subprocess.run([*pip, *packages], check=True, env=child_env())
    return exe


def ethereum_etl(
    url: str, first: int, last: int, batch_size: int, workers: int, work: Path
) -> float:
    exe = str(ensure_etl())
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    common = ["--provider-uri", url, "--batch-size", str(batch_size), "--max-workers", str(workers)]
    t0 = time.perf_counter()
    subprocess.run(
        [exe, "export_blocks_and_transactions", "--start-block", str(first), "--end-block", str(last),
         "--blocks-output", str(work / "blocks.csv"), "--transactions-output", str(work / "transactions.csv"),
         *common],
        check=True, capture_output=True, env=child_env(),
    )  # fmt: skip
    subprocess.run(
        [exe, "extract_csv_column", "--input", str(work / "transactions.csv"), "--column", "hash",
         "--output", str(work / "hashes.txt")],
        check=True, capture_output=True, env=child_env(),
    )  # fmt: skip
    subprocess.run(
        [exe, "export_receipts_and_logs", "--transaction-hashes", str(work / "hashes.txt"),
         "--receipts-output", str(work / "receipts.csv"), "--logs-output", str(work / "logs.csv"),
         *common],
        check=True, capture_output=True, env=child_env(),
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    rows = sum(1 for _ in (work / "receipts.csv").open()) - 1
    assert rows > 0, "ethereum-etl exported no receipts"
    return seconds


# -- (d) cryo ---------------------------------------------------------------------------------


CRYO_CHILD = r"""
import json, sys, time
import cryo
import polars as pl
from pathlib import Path

url, first, last, out, concurrent, chunk = sys.argv[1:7]
t0 = time.perf_counter()
cryo.freeze(
    list(sys.argv[7].split(",")), blocks=[f"{first}:{int(last) + 1}"], rpc=url, output_dir=out,
    max_concurrent_requests=int(concurrent), chunk_size=int(chunk), no_verbose=True,
)
seconds = time.perf_counter() - t0
rows = {}
for f in Path(out).glob("*.parquet"):
    kind = f.name.split("__")[1]
    rows[kind] = rows.get(kind, 0) + pl.scan_parquet(f).select(pl.len()).collect().item()
print(json.dumps({"seconds": seconds, "rows": rows}))
"""


def ensure_cryo() -> Path:
    python = CRYO_VENV / "bin" / "python"
    if python.exists():
        return python
    log(f"installing {CRYO_PACKAGE} into {CRYO_VENV} (once)")
    subprocess.run([sys.executable, "-m", "venv", str(CRYO_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", CRYO_PACKAGE, "polars"],
        check=True,
        env=child_env(),
    )
    return python


def cryo(
    url: str, first: int, last: int, concurrent: int, chunk: int, work: Path
) -> dict[str, Any]:
    python = str(ensure_cryo())
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = subprocess.run(
        [python, "-c", CRYO_CHILD, url, str(first), str(last), str(work), str(concurrent),
         str(chunk), ",".join(CRYO_DATATYPES)],
        check=True, capture_output=True, text=True, env=child_env(), cwd=work,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- (c) chainlake ----------------------------------------------------------------------------


CHILD = r"""
import json, os, resource, sys, threading, time
sys.path.insert(0, sys.argv[1])
os.environ["CHAINS_CONFIG"] = sys.argv[2]
import dagster as dg
from assets.raw.chain_tables import raw_chain_tables
from chainlake.lake import DeltaStore
from resources.rpc import RpcResource

samples = []
done = threading.Event()

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def sample():
    while not done.wait(0.2):
        samples.append((time.perf_counter(), rss()))

# Dagster's instance (and the SQL machinery it imports) is made before the clock starts: a
# one-time cost of the process, not of extraction.
instance = dg.DagsterInstance.ephemeral()
t = threading.Thread(target=sample, daemon=True)
rss_before = rss()
u0 = resource.getrusage(resource.RUSAGE_SELF)
cpu0 = u0.ru_utime + u0.ru_stime
t0 = time.perf_counter()
t.start()
result = dg.materialize(
    [raw_chain_tables],
    partition_key=sys.argv[4],
    resources={"delta": DeltaStore(root=sys.argv[3]), "rpc": RpcResource()},
    instance=instance,
    raise_on_error=True,
)
seconds = time.perf_counter() - t0
done.set()
usage = resource.getrusage(resource.RUSAGE_SELF)
t.join()
rows = {}
for m in result.get_asset_materialization_events():
    key = "/".join(m.asset_key.path)
    rows[key] = m.materialization.metadata["rows_written"].value
quarters = [0, 0, 0, 0]
for ts, v in samples:
    q = min(3, int(4 * (ts - t0) / seconds))
    quarters[q] = max(quarters[q], v)
print(json.dumps({
    "seconds": seconds,
    "run_cpu_s": usage.ru_utime + usage.ru_stime - cpu0,
    "rows": rows,
    "checks_passed": all(c.passed for c in result.get_asset_check_evaluations()),
    "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "rss_before_run": rss_before,
    "rss_peak_by_quarter": quarters,
}))
"""


def chainlake(
    url: str, work: Path, in_flight: int, batch_size: int, day: dt.date = DAY
) -> dict[str, Any]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg = work / "chains.yaml"
    cfg.write_text(
        "chains:\n  - name: devnet\n    network: devnet\n    subnet: local\n    chain_id: 31337\n"
        f'    rpc_urls: ["{url}"]\n    confirmations: 0\n    start_date: 2026-01-01\n'
        f"    max_requests_in_flight: {in_flight}\n    batch_size: {batch_size}\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT), str(cfg), str(work / "delta"), f"devnet|{day}"],
        check=True,
        capture_output=True,
        text=True,
        env=child_env(DAGSTER_HOME=str(work)),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_env(**extra: str) -> dict[str, str]:
    """Children may cache bytecode even where this shell forbids it: a deployed process
    imports from cached bytecode, and compiling web3 or Dagster from source on every start
    would be measured as extraction time."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **extra}


# -- the run ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    mem = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem) / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average_at_start": os.getloadavg(),
    }


def main() -> None:
    # a kill (SIGTERM) unwinds like Ctrl-C, so the node this run started is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--blocks", type=int, default=2000)
    p.add_argument("--txs", type=int, default=50)
    p.add_argument("--rounds", type=int, default=1, help="times each side runs (interleaved)")
    p.add_argument("--in-flight", type=int, default=4, help="chainlake's max_requests_in_flight")
    p.add_argument("--batch-size", type=int, default=25, help="chainlake's batch_size")
    p.add_argument("--skip-etl", action="store_true")
    p.add_argument("--skip-cryo", action="store_true")
    p.add_argument(
        "--no-traces",
        dest="traces",
        action="store_false",
        help="the raw ceiling (a) reads no traces (the figures before issue 12)",
    )
    p.add_argument(
        "--no-flatness",
        dest="flatness",
        action="store_false",
        help="skip the smaller days (a quarter and a half of --blocks) that show peak memory does not grow with the day",
    )
    args = p.parse_args()

    info = machine()
    log(f"machine: {info}")
    if not args.skip_etl:
        ensure_etl()
    if not args.skip_cryo:
        ensure_cryo()
    # smaller days before the benchmark's, to show that memory does not grow with the day
    smaller = [
        (DAY - dt.timedelta(days=2), args.blocks // 4),
        (DAY - dt.timedelta(days=1), args.blocks // 2),
    ]
    node, ranges = start_chain([*(smaller if args.flatness else []), (DAY, args.blocks)], args.txs)
    url, first, last = node.rpc_url, ranges[DAY].start, ranges[DAY].stop - 1
    n_blocks, n_txs = args.blocks, args.blocks * args.txs
    work = Path(tempfile.mkdtemp(prefix="chainlake-bench-"))
    runs: dict[str, list[dict[str, Any]]] = {"a": [], "b": [], "c": [], "d": [], "a_bracket": []}
    try:

        def side_a(r: int) -> None:
            for in_flight, per_batch in ((4, 25), (8, 10), (4, 50), (2, 25)):
                with Cpu(node.pid) as cpu:
                    s = raw_ceiling(url, first, last, in_flight, per_batch, args.traces)
                runs["a"].append(
                    {"round": r, "in_flight": in_flight, "blocks_per_batch": per_batch,
                     "seconds": s, **cpu.figures()}
                )  # fmt: skip
                log(
                    f"(a) raw ceiling, {in_flight} in flight × {per_batch} blocks: {n_blocks / s:.0f} blocks/s, {cpu}"
                )

        def side_b(r: int) -> None:
            for batch_size, workers in ((100, 5), (50, 8)):
                with Cpu(node.pid) as cpu:
                    s = ethereum_etl(url, first, last, batch_size, workers, work / "etl")
                runs["b"].append(
                    {"round": r, "batch_size": batch_size, "max_workers": workers,
                     "seconds": s, **cpu.figures()}
                )  # fmt: skip
                log(
                    f"(b) ethereum-etl, batch {batch_size} × {workers} workers: {n_blocks / s:.0f} blocks/s, {cpu}"
                )

        def side_d(r: int) -> None:
            for concurrent, chunk in ((8, 100), (16, 50), (4, 250)):
                with Cpu(node.pid) as cpu:
                    d = cryo(url, first, last, concurrent, chunk, work / "cryo")
                assert d["rows"].get("blocks") == n_blocks, d
                assert d["rows"].get("transactions") == n_txs, d
                runs["d"].append(
                    {"round": r, "max_concurrent_requests": concurrent, "chunk_size": chunk,
                     **d, **cpu.figures()}
                )  # fmt: skip
                log(
                    f"(d) cryo, {concurrent} concurrent × chunks of {chunk}: "
                    f"{n_blocks / d['seconds']:.0f} blocks/s, rows {d['rows']}, {cpu}"
                )

        def bracket(r: int, when: str) -> None:
            # the raw reader at the best setting seen so far, right before and right after c:
            # the node's speed drifts by 20 % or more over a run, so c is compared with the
            # ceiling of its own minute
            best = min(runs["a"], key=lambda x: x["seconds"])
            s = raw_ceiling(
                url, first, last, best["in_flight"], best["blocks_per_batch"], args.traces
            )
            runs["a_bracket"].append({"round": r, "when": when, "seconds": s})
            log(f"(a) bracket {when} c: {n_blocks / s:.0f} blocks/s")

        def side_c(r: int) -> None:
            if runs["a"]:
                bracket(r, "before")
            with Cpu(node.pid) as cpu:
                c = chainlake(url, work / "chainlake", args.in_flight, args.batch_size)
            if runs["a"]:
                bracket(r, "after")
            assert c["checks_passed"], c
            assert c["rows"]["raw/blocks"] == n_blocks, c
            assert c["rows"]["raw/transactions"] == n_txs, c
            runs["c"].append({"round": r, **c, **cpu.figures()})
            log(
                f"(c) chainlake: {n_blocks / c['seconds']:.0f} blocks/s, {cpu} (run itself "
                f"{c['run_cpu_s']:.1f} s), peak RSS {c['peak_rss'] / 2**20:.0f} MiB (by quarter: "
                f"{', '.join(f'{q / 2**20:.0f}' for q in c['rss_peak_by_quarter'])} MiB)"
            )

        sides = [
            side_a,
            *([] if args.skip_etl else [side_b]),
            *([] if args.skip_cryo else [side_d]),
            side_c,
        ]
        for r in range(args.rounds):
            # the node serves later requests a little slower (its state grows): odd rounds run
            # the sides in reverse order, so no side always has the fresher node
            for side in sides if r % 2 == 0 else sides[::-1]:
                side(r)
        flat = []
        for day, blocks in smaller if args.flatness else []:
            c = chainlake(url, work / "chainlake", args.in_flight, args.batch_size, day)
            assert c["rows"]["raw/blocks"] == blocks, c
            flat.append({"day": day.isoformat(), "blocks": blocks, "peak_rss": c["peak_rss"]})
            log(
                f"(c) chainlake, a day of {blocks} blocks: peak RSS {c['peak_rss'] / 2**20:.0f} MiB"
            )
        if runs["c"]:
            flat.append(
                {
                    "day": DAY.isoformat(),
                    "blocks": n_blocks,
                    "peak_rss": max(x["peak_rss"] for x in runs["c"]),
                }
            )
    finally:
        node.stop()
        shutil.rmtree(work, ignore_errors=True)

    best = {
        k: min(x["seconds"] for x in v) for k, v in runs.items() if v and k in ("a", "b", "c", "d")
    }
    summary: dict[str, Any] = {
        side: {
            "seconds": s,
            "blocks_per_s": round(n_blocks / s, 1),
            "transactions_per_s": round(n_txs / s, 1),
        }
        for side, s in best.items()
    }
    summary["c/a"] = round(best["a"] / best["c"], 3)
    if "b" in best:
        summary["c/b"] = round(best["b"] / best["c"], 3)
    if "d" in best:
        summary["c/d"] = round(best["d"] / best["c"], 3)
    summary["a_reads_traces"] = args.traces
    summary["c_tables"] = sorted(runs["c"][0]["rows"]) if runs["c"] else []
    # the ratios round by round too: within a round the sides ran minutes apart
    summary["per_round"] = []
    for r in range(args.rounds):
        c_s = next(x["seconds"] for x in runs["c"] if x["round"] == r)
        row = {
            "round": r,
            "c/a": round(min(x["seconds"] for x in runs["a"] if x["round"] == r) / c_s, 3),
        }
        if runs["b"]:
            row["c/b"] = round(min(x["seconds"] for x in runs["b"] if x["round"] == r) / c_s, 3)
        if runs["d"]:
            row["c/d"] = round(min(x["seconds"] for x in runs["d"] if x["round"] == r) / c_s, 3)
        around = [x["seconds"] for x in runs["a_bracket"] if x["round"] == r]
        if around:
            # c's speed over the mean speed of the two bracketing raw reads
            ceiling = statistics.fmean(1 / x for x in around)
            row["c/a_bracketed"] = round((1 / c_s) / ceiling, 3)
        summary["per_round"].append(row)
    bracketed = [row["c/a_bracketed"] for row in summary["per_round"] if "c/a_bracketed" in row]
    if bracketed:
        summary["c/a_bracketed_median"] = statistics.median(bracketed)
    c_runs = runs["c"]
    summary["c_peak_rss_mib"] = round(max(x["peak_rss"] for x in c_runs) / 2**20)
    summary["c_peak_rss_mib_by_day_size"] = {
        f["blocks"]: round(f["peak_rss"] / 2**20) for f in flat
    }
    summary["c_median_seconds"] = statistics.median(x["seconds"] for x in c_runs)
    result = {
        "benchmark": "extract",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "load_average_at_end": os.getloadavg(),
        "params": vars(args),
        "summary": summary,
        "runs": runs,
        "own_cpu_seconds": resource.getrusage(resource.RUSAGE_SELF).ru_utime,
    }
    out = ROOT / "bench" / "results" / f"extract-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    log(json.dumps(summary, indent=2))
    log(f"written {out}")


if __name__ == "__main__":
    main()
