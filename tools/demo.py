"""`make demo`: a local chain with days of activity, every asset for every day, a summary.

**Days.** The demo's chain covers the `DEMO_DAYS` days that end today (UTC), so the Dagster
UI's partitions, which start on the chain's first day (its `start_date` in
`<data>/devnet/chains.yaml`) and end today, are all filled. The days before today are whole
days of `DEMO_BLOCKS_PER_DAY` blocks; today holds the blocks of the same plan whose timestamp
is not after the moment the demo started, so no block lies in the future and the blocks that
`make dev` mines later on the same chain follow on in time. Today is materialised as the open
day, as the new-block sensor would.

**Deterministic apart from the dates.** Fixed seed and dev accounts, genesis at the first
day's midnight: a second run on the same day writes the same rows for the same days (today's
day then holds the same first blocks and the ones mined since). A run on a later day makes a
different chain (other timestamps, other hashes): when the chain differs from the one the
stores under the data directory hold (`<data>/devnet/manifest.json`), the demo removes that
chain's local tables (Delta, embedded ClickHouse, DuckDB) and its events in PostgreSQL first,
so no day of an older chain is mixed with the new one.

**Output.** A progress display per phase and per chain-day, only warnings on the console,
everything else (Dagster's run events at DEBUG, library logs, Python warnings) in
`<data>/logs/demo-<UTC time>.log`, a closing table per chain-day and per portfolio, dbt style,
and an HTML report of the portfolios (`<data>/demo-report.html`). The chain is saved to
`<data>/devnet/state.json`, from which `make dev` starts it again. A failure prints the failing
step, its error in two lines and the log's path, and the exit status is 1.

Settings (environment): `DEMO_DAYS` (5), `DEMO_BLOCKS_PER_DAY` (96), `DEMO_TXS_PER_BLOCK` (20),
`DEMO_RPC_PORT` (8545), `DEMO_DATA_DIR` (`data`: the devnet's config files, the log, the report,
and the defaults of `DELTA_ROOT`, `CLICKHOUSE_PATH` and `DUCKDB_PATH` when those are unset).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.demo_console import FILE_ONLY, Display, listen, open_console, run_quietly, setup_logging

log = logging.getLogger("tools.demo")

DAYS = int(os.environ.get("DEMO_DAYS", "5"))
BLOCKS_PER_DAY = int(os.environ.get("DEMO_BLOCKS_PER_DAY", "96"))
TXS_PER_BLOCK = int(os.environ.get("DEMO_TXS_PER_BLOCK", "20"))
SEED = 7
PORT = int(os.environ.get("DEMO_RPC_PORT", "8545"))
DATA_DIR = Path(os.environ.get("DEMO_DATA_DIR", "data"))
DEVNET_DIR = DATA_DIR / "devnet"
CHAIN = "devnet"

# Rows per chain-day in the closing table: (column, asset).
ROW_COLUMNS = (
    ("blocks", "raw/blocks"),
    ("txs", "raw/transactions"),
    ("logs", "raw/logs"),
    ("transfers", "core/token_transfers"),
    ("balances", "core/balances"),
    ("snapshots", "analytics/portfolio_snapshots"),
    ("events", "events/chain_events"),
)

# Later sections (triggers) add their own lines to the summary.
Summary = Callable[[list[dt.date]], list[str]]
SUMMARIES: list[Summary] = []


def triggers_summary(days: list[dt.date]) -> list[str]:
    """The demo summary's trigger section (see `tools.demo_triggers.summary`)."""
    from tools.demo_triggers import summary

    return summary(days)


SUMMARIES.append(triggers_summary)


def native_balances(days: list[dt.date]) -> list[str]:
    """The demo summary's native-balance section (see `tools.demo_native.summary`)."""
    from tools.demo_native import summary

    return summary(days, CHAIN)


SUMMARIES.append(native_balances)


class DemoFailure(Exception):
    """A step of the demo failed: `step` names it, `error` is at most two lines."""

    def __init__(self, step: str, error: list[str]) -> None:
        super().__init__(f"{step}: {'; '.join(error)}")
        self.step = step
        self.error = error[:2]


def _where(frames: list[tuple[str, int, str]]) -> str:
    """`at <file>:<line> in <function>` of the innermost frame of this project (else of any)."""
    if not frames:
        return ""
    root = Path.cwd().resolve()
    own = [f for f in frames if Path(f[0]).resolve().is_relative_to(root) and ".venv" not in f[0]]
    path, line, fn = (own or frames)[-1]
    shown = Path(path).resolve()
    text = str(shown.relative_to(root)) if shown.is_relative_to(root) else path
    return f"at {text}:{line} in {fn}"


def _two(lines: list[str], where: str) -> list[str]:
    out = [x[:240] for x in lines[:2]]
    if len(out) < 2 and where:
        out.append(where)
    return out


def error_lines(e: BaseException) -> list[str]:
    """An exception as two lines: its type and first line, then the next line of its message
    or of its cause, else where it was raised."""
    import traceback

    lines: list[str] = []
    cur: BaseException | None = e
    while cur is not None and len(lines) < 2:
        text = [x.strip() for x in str(cur).splitlines() if x.strip()]
        if not lines:
            lines.append(f"{type(cur).__name__}: {text[0] if text else ''}".rstrip(": "))
            text = text[1:]
        lines += text[: 2 - len(lines)]
        cur = cur.__cause__ or cur.__context__
    frames = [(f.filename, f.lineno or 0, f.name) for f in traceback.extract_tb(e.__traceback__)]
    return _two(lines, _where(frames))


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def dagster_error_lines(error: Any) -> list[str]:
    """A Dagster `SerializableErrorInfo` as two lines, past Dagster's own wrappers to the
    asset's exception: its type and message, then the message's next line or where it was
    raised."""
    while (
        error.cause is not None
        and error.cls_name
        and (error.cls_name.startswith("Dagster") or error.cls_name == "RetryRequestedFromPolicy")
    ):
        error = error.cause
    lines: list[str] = []
    cur = error
    while cur is not None and len(lines) < 2:
        text = [x.strip() for x in (cur.message or "").splitlines() if x.strip()]
        if text and cur.cls_name and not text[0].startswith(cur.cls_name) and not lines:
            text[0] = f"{cur.cls_name}: {text[0]}"
        lines += text[: 2 - len(lines)]
        cur = cur.cause
    frames = [
        (m.group(1), int(m.group(2)), m.group(3))
        for entry in error.stack or []
        if (m := _FRAME.search(entry))
    ]
    return _two(lines or [str(error.cls_name)], _where(frames))


def demo_days(today: dt.date, days: int = DAYS) -> list[dt.date]:
    """The `days` days that end with `today`, oldest first."""
    if days < 1:
        raise ValueError(f"DEMO_DAYS must be at least 1, not {days}")
    return [today - dt.timedelta(days=days - 1 - i) for i in range(days)]


def use_data_dir() -> None:
    """The stores default to the demo's data directory (a variable already set wins)."""
    os.environ.setdefault("DELTA_ROOT", str(DATA_DIR / "delta"))
    os.environ.setdefault("CLICKHOUSE_PATH", str(DATA_DIR / "clickhouse"))
    os.environ.setdefault("DUCKDB_PATH", str(DATA_DIR / "chainlake.duckdb"))


def write_configs(manifest, rpc_url: str) -> tuple[Path, Path]:
    """Write the devnet's manifest, chains.yaml and portfolios.yaml under <data>/devnet.

    Returns:
        The chains.yaml and portfolios.yaml written.
    """
    from tools.devnet.configs import write_chains_yaml, write_manifest, write_portfolios_yaml

    chains = DEVNET_DIR / "chains.yaml"
    if chains.exists():
        chains.unlink()  # the demo's file holds the devnet only
    write_manifest(DEVNET_DIR / "manifest.json", manifest)
    write_chains_yaml(chains, manifest, rpc_urls=[rpc_url])
    portfolios = write_portfolios_yaml(DEVNET_DIR / "portfolios.yaml", manifest)
    return chains, portfolios


def _chain_identity(m) -> tuple[Any, ...]:
    return (m.chain_id, m.seed, m.genesis_timestamp, m.blocks_per_day, m.txs_per_block)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def forget_older_chain(manifest) -> None:
    """Remove what the stores hold of the chain of an earlier run (`<data>/devnet/manifest.json`)
    when it is not `manifest`'s chain (module docstring): its local Delta tables, embedded
    ClickHouse and DuckDB files under the data directory and its events in PostgreSQL. Stores
    elsewhere (S3, a ClickHouse server, a path outside the data directory) are left alone,
    with a warning."""
    from tools.devnet.configs import read_manifest

    previous_path = DEVNET_DIR / "manifest.json"
    if not previous_path.exists():
        return  # no chain of an earlier run here
    try:
        previous = read_manifest(previous_path)
    except (ValueError, KeyError) as e:
        log.info("unreadable %s (%s): treated as another chain", previous_path, e)
    else:
        if _chain_identity(previous) == _chain_identity(manifest):
            return
        log.info(
            "the stores hold another chain (%s, %s days from %s): removing it",
            previous_path,
            previous.days,
            previous.start_date,
        )
    delta_root = os.environ["DELTA_ROOT"]
    local = [
        Path(delta_root) / "devnet" if "://" not in delta_root else None,
        Path(os.environ["CLICKHOUSE_PATH"]) if not os.environ.get("CLICKHOUSE_URL") else None,
        Path(os.environ["DUCKDB_PATH"]),
    ]
    for path in local:
        if path is None or not path.exists():
            continue
        if not _inside(path, DATA_DIR):
            log.warning("%s is outside %s: days of an older demo chain may remain", path, DATA_DIR)
            continue
        log.info("removing %s", path)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if "://" in delta_root or os.environ.get("CLICKHOUSE_URL"):
        log.warning(
            "DELTA_ROOT or CLICKHOUSE_URL is remote: days of an older demo chain may remain"
        )
    _forget_events(manifest.chain_id)


def _forget_events(chain_id: int) -> None:
    import psycopg

    from chainlake.events import db
    from resources.postgres import PostgresResource

    url = PostgresResource().database_url()  # POSTGRES_URL, else the instance's own
    try:
        with db.connection(url) as conn:
            n = conn.execute("DELETE FROM events WHERE chain_id = %s", (chain_id,)).rowcount
        log.info("removed %s events of chain %s from PostgreSQL", n, chain_id)
    except psycopg.errors.UndefinedTable:
        pass  # no schema yet: nothing to forget
    except psycopg.OperationalError as e:
        if "does not exist" not in str(e):
            raise


@dataclass
class DayResult:
    """One chain-day's run: its status, rows written per asset and its checks."""

    day: dt.date
    ok: bool
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)
    checks_passed: int = 0
    checks_total: int = 0
    failed_checks: list[tuple[str, str]] = field(default_factory=list)


def _run_failure(result, where: str) -> DemoFailure | None:
    """The first failed step of a run, as a DemoFailure naming its asset and `where`."""
    for event in result.all_events:
        if event.is_step_failure:
            step = event.step_key or "?"
            asset = step.replace("__", "/") if "__" in step else step
            return DemoFailure(
                f"{asset} ({where})", dagster_error_lines(event.step_failure_data.error)
            )
    if not result.success:
        return DemoFailure(where, ["the run failed before any step (see the log)"])
    return None


def _rows(result) -> dict[str, int]:
    rows: dict[str, int] = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        count = mat.metadata.get("dagster/row_count")
        if count is not None:
            key = mat.asset_key.to_user_string()
            rows[key] = rows.get(key, 0) + int(count.value)
    return rows


def materialise(display: Display, days: list[dt.date]) -> list[DayResult]:
    """Materialise the unpartitioned assets, then every partitioned one for each of `days` on
    the devnet, one run per chain-day; DemoFailure at the first failed step."""
    import dagster as dg

    from pipelines.definitions import defs

    instance = dg.DagsterInstance.get()
    graph = defs.get_repository_def().asset_graph
    partitioned = [k for k in graph.materializable_asset_keys if graph.get(k).is_partitioned]
    unpartitioned = [k for k in graph.materializable_asset_keys if not graph.get(k).is_partitioned]
    if unpartitioned:
        task = display.task("serving (unpartitioned)", total=len(unpartitioned))
        job = defs.resolve_implicit_job_def_def_for_assets(unpartitioned)
        assert job is not None
        with listen(_advance_on_materialisation(task)):
            result = run_quietly(
                job, instance=instance, asset_selection=unpartitioned, raise_on_error=False
            )
        failure = _run_failure(result, "unpartitioned")
        task.finish("FAIL" if failure else "OK")
        if failure:
            raise failure
    results: list[DayResult] = []
    overall = display.task("materialise", total=len(days), unit="chain-days")
    job = defs.resolve_implicit_job_def_def_for_assets(partitioned)
    assert job is not None
    for day in days:
        task = display.task(f"  {CHAIN} {day}", total=len(partitioned), unit="assets")
        with listen(_advance_on_materialisation(task)):
            result = run_quietly(
                job,
                instance=instance,
                partition_key=f"{CHAIN}|{day.isoformat()}",
                asset_selection=partitioned,
                raise_on_error=False,
            )
        evaluations = list(result.get_asset_check_evaluations())
        failed = [
            (
                f"{e.asset_key.to_user_string()}:{e.check_name}",
                str(e.description or e.metadata.get("error") or "check failed"),
            )
            for e in evaluations
            if not e.passed
        ]
        res = DayResult(
            day=day,
            ok=result.success and not failed,
            seconds=task.seconds,
            rows=_rows(result),
            checks_passed=len(evaluations) - len(failed),
            checks_total=len(evaluations),
            failed_checks=failed,
        )
        results.append(res)
        task.finish(
            "OK" if res.ok else "FAIL",
            f"checks {res.checks_passed}/{res.checks_total}",
        )
        overall.advance()
        failure = _run_failure(result, f"{CHAIN} {day}")
        if failure:
            overall.finish("FAIL")
            failure.results = results  # type: ignore[attr-defined]
            raise failure
    overall.finish("OK" if all(r.ok for r in results) else "FAIL")
    return results


def _advance_on_materialisation(task) -> Callable[[Any], None]:
    def on_event(event: Any) -> None:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            task.advance(note=event.asset_key.to_user_string() if event.asset_key else "")
        elif event.event_type_value == "STEP_START":
            task.update(task.completed, note=(event.step_key or "").replace("__", "/"))

    return on_event


def refresh_views() -> None:
    """The DuckDB views read the Delta tables the days just wrote: refresh them."""
    import dagster as dg

    from pipelines.definitions import defs

    key = dg.AssetKey(["serving", "views"])
    job = defs.resolve_implicit_job_def_def_for_assets([key])
    if job is None:
        return
    result = run_quietly(
        job, instance=dg.DagsterInstance.get(), asset_selection=[key], raise_on_error=False
    )
    failure = _run_failure(result, "views")
    if failure:
        raise failure


def _num(v: float | None, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:+.2f}%"


def day_lines(results: list[DayResult], days: list[dt.date], today: dt.date) -> list[str]:
    """The closing table per chain-day, dbt style."""
    head = f"{'':<16}{'chain-day':<22}" + "".join(f"{c:>10}" for c, _ in ROW_COLUMNS)
    lines = [head + f"{'checks':>9}"]
    done = {r.day: r for r in results}
    for i, day in enumerate(days, 1):
        label = f"{CHAIN} {day}" + (" (open)" if day == today else "")
        r = done.get(day)
        if r is None:
            lines.append(f"{f'{i} of {len(days)} SKIP':<16}{label}")
            continue
        status = "OK" if r.ok else "FAIL"
        cells = "".join(f"{r.rows.get(asset, 0):>10,}" for _, asset in ROW_COLUMNS)
        checks = f"{r.checks_passed}/{r.checks_total}"
        lines.append(
            f"{f'{i} of {len(days)} {status}':<16}{label:<22}{cells}{checks:>9}  [{r.seconds:.1f}s]"
        )
        lines += [f"{'':<16}  failed check {name}: {text[:160]}" for name, text in r.failed_checks]
    return lines


def portfolio_lines(days: list[dt.date]) -> tuple[list[str], int, int]:
    """Per portfolio: OK when it has a snapshot on every demo day, with its last value and its
    30-day risk (ClickHouse); the lines, passes and failures."""
    from assets.analytics.risk_metrics import portfolio_summary
    from tools.demo_report import clickhouse_store, min_observations, read_portfolios

    store = clickhouse_store()
    snapshots, risk = read_portfolios(store, days)
    with store.session() as ch:
        rows = portfolio_summary(ch).to_dicts()
    covered = {
        p: n
        for p, n in snapshots.group_by("portfolio_id").len().iter_rows()  # (portfolio, days)
    }
    lines = [
        f"{'':<16}{'portfolio':<12}{'days':>5} {'last day':<11}{'value (USD)':>16}"
        f"{'total ret':>10}{'VaR95':>9}{'CVaR95':>9}{'Sharpe':>8}{'Sortino':>8}{'max DD':>9}"
        f"{'vol':>8}{'corr':>6}"
    ]
    passed = failed = 0
    for i, r in enumerate(rows, 1):
        n = covered.get(r["portfolio_id"], 0)
        ok = n == len(days) and r["total_value"] is not None
        passed, failed = passed + ok, failed + (not ok)
        status = f"{i} of {len(rows)} " + ("OK" if ok else "FAIL")
        lines.append(
            f"{status:<16}{r['portfolio_id']:<12}"
            f"{f'{n}/{len(days)}':>5} {r['date'].isoformat():<11}{r['total_value']:>16,.2f}"
            f"{_pct(r['total_return']):>10}{_pct(r['var_95']):>9}{_pct(r['cvar_95']):>9}"
            f"{_num(r['sharpe'], '.2f'):>8}{_num(r['sortino'], '.2f'):>8}"
            f"{_pct(r['max_drawdown']):>9}{_pct(r['volatility']):>8}"
            f"{_num(r['correlation'], '.2f'):>6}"
        )
    lines.append(f"{'':<16}analytics: {store.describe()} (risk over 30 days, annualised over 365)")
    if risk.height and risk["var_95"].is_null().all():
        seen = max(risk["observations"].drop_nulls().to_list(), default=0)
        lines.append(
            f"{'':<16}no risk figures yet: they need {min_observations()} daily returns in 30 "
            f"days and these days give {seen} (DEMO_DAYS={min_observations() + 1} shows them)"
        )
    return lines, passed, failed


def _phase(display: Display, name: str, fn: Callable[[], Any], total: int | None = 1) -> Any:
    """Run one phase with its line in the display; any exception becomes a DemoFailure."""
    task = display.task(name, total=total)
    try:
        out = fn()
    except DemoFailure:
        task.finish("FAIL")
        raise
    except Exception as e:
        task.finish("FAIL")
        log.error("%s failed", name, exc_info=True, extra=FILE_ONLY)
        raise DemoFailure(name, error_lines(e)) from e
    task.finish("OK")
    return out


def main() -> int:
    """Run `make demo`: start anvil, generate the chain, materialise everything, print the
    closing tables and write the report; the exit status."""
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    console = open_console()
    log_path = DATA_DIR / "logs" / f"demo-{started:%Y%m%dT%H%M%SZ}.log"
    setup_logging(log_path, console)
    use_data_dir()
    try:
        days = demo_days(started.date())
    except ValueError as e:
        console.print(f"demo: {e}", highlight=False)
        return 2
    console.print(
        f"chainlake demo: {CHAIN}, {len(days)} days {days[0]} .. {days[-1]} "
        f"(today up to {started:%H:%M} UTC), {BLOCKS_PER_DAY} blocks × {TXS_PER_BLOCK} txs a day",
        highlight=False,
    )
    console.print(f"log: {log_path}", highlight=False)
    from tools.devnet.anvil import Anvil

    node = None
    results: list[DayResult] = []
    lines: list[str] = []
    try:
        with Display(console) as display:
            node = _phase(display, "start chain", lambda: Anvil(port=PORT, genesis=days[0]).start())
            log.info("local chain at %s", node.rpc_url)
            manifest = _generate(display, node.rpc_url, days, int(started.timestamp()))

            def configure() -> None:
                forget_older_chain(manifest)
                chains, portfolios = write_configs(manifest, node.rpc_url)
                os.environ["CHAINS_CONFIG"] = str(chains)
                os.environ["PORTFOLIOS_CONFIG"] = str(portfolios)

            _phase(display, "configure", configure)
            try:
                results = materialise(display, days)
            except DemoFailure as f:
                results = getattr(f, "results", [])
                raise
            _phase(display, "views", refresh_views)
            # `make dev` starts the chain from it (tools/devnet up --state)
            _phase(display, "save chain", lambda: node.dump_state(DEVNET_DIR / "state.json"))
            portfolios, p_ok, p_fail = _phase(display, "portfolios", lambda: portfolio_lines(days))
            for section in SUMMARIES:
                name = section.__name__.replace("_", " ")
                lines += _phase(display, name, functools.partial(section, days))
            report = _phase(display, "report", lambda: _write_report(days))
    except DemoFailure as f:
        console.print()
        _print(console, day_lines(results, days, started.date()))
        console.print()
        console.print(f"[red]FAIL[/red] {f.step}", highlight=False)
        for line in f.error:
            console.print(f"  {line}", markup=False, highlight=False)
        console.print(f"log: {log_path}", highlight=False)
        d_ok = sum(r.ok for r in results)
        console.print(
            f"[red]Done.[/red] PASS={d_ok} FAIL={len(results) - d_ok or 1} "
            f"SKIP={len(days) - len(results)} in {time.monotonic() - t0:.0f}s",
            highlight=False,
        )
        return 1
    except KeyboardInterrupt:
        console.print(f"\ninterrupted; log: {log_path}", highlight=False)
        return 130
    finally:
        if node is not None:
            node.stop()
    console.print()
    _print(console, day_lines(results, days, started.date()))
    console.print()
    _print(console, portfolios)
    console.print()
    _print(console, lines)
    console.print()
    d_ok = sum(r.ok for r in results)
    passed, failed = d_ok + p_ok, len(results) - d_ok + p_fail
    first = next((r for r in results if not r.ok and r.failed_checks), None)
    if first is not None:
        name, text = first.failed_checks[0]
        console.print(f"[red]FAIL[/red] {name} ({CHAIN} {first.day})", highlight=False)
        console.print(f"  {text[:240]}", markup=False, highlight=False)
    console.print(f"report: {report}", highlight=False)
    console.print(f"log: {log_path}", highlight=False)
    colour = "green" if not failed else "red"
    console.print(
        f"[{colour}]Done.[/{colour}] PASS={passed} FAIL={failed} "
        f"({len(results)} chain-days, {p_ok + p_fail} portfolios) in "
        f"{time.monotonic() - t0:.0f}s; `make dev` opens the Dagster UI on this data",
        highlight=False,
    )
    return 1 if failed else 0


def _generate(display: Display, rpc_url: str, days: list[dt.date], until: int):
    from tools.devnet.generator import generate

    task = display.task("generate", total=None, unit="blocks")
    try:
        manifest = generate(
            rpc_url,
            start=days[0],
            days=len(days),
            blocks_per_day=BLOCKS_PER_DAY,
            txs_per_block=TXS_PER_BLOCK,
            seed=SEED,
            until=until,
            progress=lambda done, total: task.update(done, total),
        )
    except Exception as e:
        task.finish("FAIL")
        log.error("generate failed", exc_info=True, extra=FILE_ONLY)
        raise DemoFailure("generate", error_lines(e)) from e
    task.finish("OK", f"{manifest.head_block + 1} blocks")
    return manifest


def _write_report(days: list[dt.date]) -> Path:
    from tools.demo_report import write_report

    return write_report(DATA_DIR / "demo-report.html", days)


def _print(console, lines: list[str]) -> None:
    for line in lines:
        console.print("  " + line, markup=False, highlight=False)


if __name__ == "__main__":
    raise SystemExit(main())
