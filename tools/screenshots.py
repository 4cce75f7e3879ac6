"""Screenshots of the Dagster UI on the demo's data, the README's "What you see" (docs/img/).

Run by hand after `make demo`, with nothing else on the demo's RPC port (8545) or `make dev`
of this checkout running:

    make demo
    .venv/bin/python -m tools.screenshots                 # writes docs/img/*.png
    .venv/bin/python -m tools.screenshots --out /tmp/shots --port 3123

It starts `make dev` itself (the UI and the daemon on the demo's stores and instance, the demo's
chain brought back from data/devnet/state.json) on `--port`, with a block every
`--block-time` seconds so the new-block sensor has blocks to read; waits until every running
sensor and 5-minute schedule has ticked (up to 5 minutes); then headless
Chromium (Debian's /usr/bin/chromium through playwright) saves:

- `asset-graph.png`: the asset lineage, every group expanded;
- `asset-columns.png`: `core/token_transfers`, a chain × day partitioned asset, with its
  columns and their descriptions;
- `portfolio-chart.png`: `analytics/portfolio_snapshots`, its numeric metadata plotted over
  its partitions (each portfolio's value in USD over the demo's days);
- `automation.png`: Automation, the schedules and sensors with their latest ticks.

At the end it stops `make dev` as Ctrl-C would (SIGINT to its process group), which saves the
chain back and stops it. Ticks that did not succeed are listed on the console (the picture
shows them too): the script reports what the UI shows, it does not hide it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
STATE = ROOT / "data" / "devnet" / "state.json"
REPOSITORY = {"repositoryName": "__repository__", "repositoryLocationName": "chainlake"}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TICKS = """
query Ticks($repo: RepositorySelector!, $any: [InstigationTickStatus!]) {
  sensorsOrError(repositorySelector: $repo) {
    __typename
    ... on Sensors { results { name sensorState { status ticks(limit: 1, statuses: $any) { status } } } }
    ... on PythonError { message }
  }
  schedulesOrError(repositorySelector: $repo) {
    __typename
    ... on Schedules {
      results { name cronSchedule scheduleState { status ticks(limit: 1, statuses: $any) { status } } }
    }
    ... on PythonError { message }
  }
}
"""
GROUPS = "query Groups { assetNodes { groupName } }"
IN_PROGRESS = """
query InProgress {
  runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED]}) {
    __typename
    ... on Runs { results { runId assetSelection { path } } }
    ... on PythonError { message }
  }
}
"""
# Schedules that tick within minutes of a start; the hourly and daily maintenance ones do not.
FREQUENT_CRON = "*/5 * * * *"


class ScreenshotError(RuntimeError):
    """The UI did not come up or a page did not show what it should."""


def graphql(base: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """One GraphQL request to the webserver; ScreenshotError on GraphQL errors."""
    r = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables}, timeout=60)
    r.raise_for_status()
    body = r.json()
    if body.get("errors"):
        raise ScreenshotError(f"GraphQL: {body['errors'][0].get('message')}")
    return body["data"]


def latest_ticks(base: str) -> dict[str, str | None]:
    """The latest tick status (None: no tick yet) of each running sensor and of each running
    schedule that ticks every 5 minutes."""
    # every status named: without a filter the webserver answers from a per-repository cache
    # keyed by the code location's current origin, which misses the ticks of a sensor whose
    # state was stored by an earlier `dagster dev` (dagster 1.13)
    data = graphql(
        base, TICKS, {"repo": REPOSITORY, "any": ["STARTED", "SKIPPED", "SUCCESS", "FAILURE"]}
    )
    out: dict[str, str | None] = {}
    for field, state in (("sensorsOrError", "sensorState"), ("schedulesOrError", "scheduleState")):
        found = data[field]
        if "results" not in found:
            raise ScreenshotError(f"{field}: {found.get('message', found['__typename'])}")
        for item in found["results"]:
            if item[state]["status"] != "RUNNING":
                continue
            if state == "scheduleState" and item["cronSchedule"] != FREQUENT_CRON:
                continue
            ticks = item[state]["ticks"]
            out[item["name"]] = ticks[0]["status"] if ticks else None
    return out


def runs_in_progress(base: str) -> int:
    """How many runs that materialise assets are queued or running (the resident trigger
    evaluator's run, which materialises nothing, runs all the time)."""
    found = graphql(base, IN_PROGRESS, {})["runsOrError"]
    if "results" not in found:
        raise ScreenshotError(f"runsOrError: {found.get('message', found['__typename'])}")
    return sum(1 for run in found["results"] if run["assetSelection"])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 2.0) -> Any:
    """Poll `predicate` until it returns something true; ScreenshotError naming `what` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ScreenshotError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/server_info", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def make_dev(port: int, block_time: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`make dev` on `port` in its own process group, its output in `log`; stopped as Ctrl-C
    stops it (SIGINT to the group, so its trap saves and stops the chain)."""
    env = {**os.environ, "DEV_PORT": str(port), "DEV_BLOCK_TIME": str(block_time)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["make", "dev", f"DEV_PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # a shell may start this script with SIGINT ignored; the children must not inherit it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                pass
            # what `dagster dev` left behind (a run still going, a code server it gave up on):
            # SIGTERM, then SIGKILL after 30 s. The chain is in a session of its own.
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and _group_alive(proc.pid):
                    time.sleep(0.5)
            proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def shoot(base: str, out: Path) -> list[Path]:
    """The four pictures, each taken when no run is in progress (so an asset shows its last
    materialisation, not a spinner); their paths."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    groups = sorted({n["groupName"] for n in graphql(base, GROUPS, {})["assetNodes"]})
    saved: list[Path] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})

            def button(icon: str) -> Any:
                return page.get_by_role("button").filter(has=page.get_by_role("img", name=icon))

            def save(name: str, settle_ms: int = 3_000) -> None:
                path = out / name
                for _ in range(10):  # a run may start between the check and the picture
                    wait_for(lambda: runs_in_progress(base) == 0, 300, "the runs in progress")
                    page.wait_for_timeout(settle_ms)  # the UI polls every 2 s
                    page.screenshot(path=str(path))
                    if runs_in_progress(base) == 0:
                        break
                saved.append(path)
                print(f"  {path}")

            # the asset graph, every group expanded, the side panel closed, zoomed out to fit
            expanded = ",".join(f"global@global:{g}" for g in groups)
            page.goto(f"{base}/asset-groups/?expanded={expanded}", wait_until="domcontentloaded")
            page.get_by_text("token_transfers", exact=True).first.wait_for(timeout=180_000)
            # the graph's own side panel (the navigation's button has the same icon, lower down)
            toggles = button("panel_show_right")
            toggles.first.wait_for(timeout=30_000)
            top = min(toggles.all(), key=lambda b: (b.bounding_box() or {"y": 1e9})["y"])
            top.click(timeout=30_000)
            for _ in range(2):
                button("zoom_out").first.click(timeout=30_000)
                page.wait_for_timeout(300)
            save("asset-graph.png")

            # a partitioned asset and its columns
            page.goto(f"{base}/assets/core/token_transfers", wait_until="domcontentloaded")
            page.get_by_text("Columns", exact=True).first.wait_for(timeout=120_000)
            page.get_by_text("block_number", exact=True).first.wait_for(timeout=60_000)
            save("asset-columns.png")

            # portfolio values plotted over the partitions of portfolio_snapshots (Overview →
            # Metadata → Plots), scrolled to the plots of each portfolio's value in USD
            page.goto(f"{base}/assets/analytics/portfolio_snapshots", wait_until="domcontentloaded")
            plots = page.get_by_role("button", name="Plots")
            plots.wait_for(timeout=120_000)
            plots.scroll_into_view_if_needed()
            plots.click()
            title = page.get_by_text(re.compile(r"^value_usd/")).first
            title.wait_for(timeout=60_000)
            page.locator("canvas").first.wait_for(timeout=60_000)
            title.evaluate("e => e.scrollIntoView({block: 'start'})")
            save("portfolio-chart.png")

            # schedules and sensors with their latest ticks
            page.goto(f"{base}/automation", wait_until="domcontentloaded")
            page.get_by_text("new_block_sensor", exact=True).first.wait_for(timeout=120_000)
            save("automation.png", settle_ms=10_000)  # the switches and ticks load row by row
        finally:
            browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    """Start `make dev`, wait for the ticks, take the pictures; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--port", type=int, default=3123, help="the UI's port")
    parser.add_argument("--block-time", type=int, default=60, help="seconds between blocks")
    parser.add_argument(
        "--tick-timeout", type=float, default=420, help="seconds to wait for every first tick"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `make dev` is stopped too
    if not STATE.is_file():
        print(f"screenshots: no demo chain at {STATE}; run `make demo` first", file=sys.stderr)
        return 1
    if not CHROMIUM.exists():
        print(f"screenshots: {CHROMIUM} is missing; `make chromium` installs it", file=sys.stderr)
        return 1
    base = f"http://127.0.0.1:{args.port}"
    if _up(base):
        print(f"screenshots: something already answers on {base}; pass --port", file=sys.stderr)
        return 1
    log = ROOT / "data" / "screenshots-make-dev.log"
    print(f"make dev on {base} (log {log})")
    try:
        with make_dev(args.port, args.block_time, log) as proc:

            def ready() -> bool:
                if proc.poll() is not None:
                    raise ScreenshotError(f"make dev exited with {proc.returncode}; see {log}")
                return _up(base)

            wait_for(ready, timeout=300, what=f"the UI at {base}")
            ticks = wait_for(
                lambda: (t := latest_ticks(base)) and all(t.values()) and t,
                timeout=args.tick_timeout,
                what="a first tick of every running sensor and schedule",
                interval=5,
            )
            shoot(base, args.out)
            ticks = latest_ticks(base)
    except ScreenshotError as e:
        print(f"screenshots: {e}", file=sys.stderr)
        return 1
    bad = {name: status for name, status in ticks.items() if status not in ("SUCCESS", "SKIPPED")}
    for name, status in sorted(bad.items()):
        print(f"  latest tick of {name}: {status}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
