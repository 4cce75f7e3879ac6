"""The Dagster UI in a real browser: `dagster dev` on 127.0.0.1 against a temp DAGSTER_HOME
(the repository's dagster.yaml, PostgreSQL), headless Chromium (Debian's package) on the asset
graph and an asset's partitions, a backfill launched through the GraphQL API and awaited, one
of its chain-days materialised again by clicking through the UI (Materialize…, the chain and
the day picked in the launch dialog, Launch 1 run) with the run's success and the partition's
new materialisation confirmed through GraphQL, and screenshots saved under `test-artifacts/`."""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from dagster_stack import (
    ROOT,
    VENV_BIN,
    chains_yaml,
    free_port,
    open_files_under,
    process,
    process_tree,
    scratch_database,
    stack_env,
    start_chain,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
DAYS = 3
FIRST_DAY = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=DAYS + 2)
# chain × date: one chain, from FIRST_DAY to today (the date dimension ends today)
PARTITIONS = DAYS + 3
CHAIN = "browser-chain"
# raw_chain_tables writes its tables together (it cannot be subset): all four or none
BACKFILL_ASSETS = [["raw", "blocks"], ["raw", "transactions"], ["raw", "logs"], ["raw", "traces"]]
# the backfilled day materialised again from the UI
UI_DAY = FIRST_DAY + dt.timedelta(days=1)
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

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on UnauthorizedError { message }
  }
}
"""
RUN_STATUS = """
query Run($id: ID!) {
  runOrError(runId: $id) {
    __typename
    ... on Run { status tags { key value } assetSelection { path } }
    ... on PythonError { message }
  }
}
"""
PARTITION_MATERIALIZATIONS = """
query Materializations($key: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset { assetMaterializations(partitions: $partitions) { runId partition timestamp } }
  }
}
"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on PythonError { message }
  }
}
"""


def graphql(base: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables}, timeout=60)
    r.raise_for_status()
    body = r.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make test installs it)")
def test_asset_graph_partitions_and_a_backfill_in_chromium(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.sync_api import sync_playwright

    from chainlake.instance import ensure_instance

    ARTIFACTS.mkdir(exist_ok=True)
    chain = start_chain(CHAIN, 4_301, FIRST_DAY, DAYS)
    started = time.monotonic()
    try:
        with scratch_database("chainlake_test_browser") as pg_url:
            home = tmp_path / "dagster_home"
            env = stack_env(
                tmp_path, home, pg_url, chains_yaml(tmp_path / "c.yaml", [chain], FIRST_DAY)
            )
            monkeypatch.setenv("DAGSTER_POSTGRES_URL", pg_url)
            ensure_instance(home, pg_url)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            with process(
                [
                    str(VENV_BIN / "dagster"),
                    *("dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)),
                ],
                env,
                tmp_path / "dagster-dev.log",
            ) as dev:
                wait_for(lambda: _up(base), timeout=300, interval=1, what="the webserver")
                ui_up = time.monotonic() - started
                with sync_playwright() as pw:
                    browser = pw.chromium.launch_persistent_context(
                        str(tmp_path / "chromium-profile"),
                        executable_path=str(CHROMIUM),
                        headless=True,
                        args=CHROMIUM_ARGS,
                        viewport={"width": 1600, "height": 1000},
                    )
                    try:
                        page = browser.new_page()
                        _check_asset_graph(page, base)
                        before = _check_partitions(page, base)

                        backfill_id = _launch_backfill(base)
                        # no page polls the webserver while the backfill runs (a live partitions
                        # page made the UI, the webserver and PostgreSQL compete with the runs)
                        page.goto("about:blank")
                        status = wait_for(
                            lambda: _finished(base, backfill_id),
                            timeout=1200,
                            interval=3,
                            what=f"backfill {backfill_id}",
                        )
                        assert status == "COMPLETED_SUCCESS", f"backfill ended {status}"
                        _check_materialized(page, base, before, backfill_id)
                        ui_started = time.monotonic()
                        _rematerialise_from_ui(page, base)
                        ui_run = time.monotonic() - ui_started
                        _check_chart(page, base, home)
                    finally:
                        browser.close()
                held = open_files_under(
                    process_tree(dev.pid),
                    [tmp_path / "delta", tmp_path / "chainlake.duckdb", tmp_path / "clickhouse"],
                )
            assert not held, f"webserver/daemon/code server hold store files: {held}"
            logging.getLogger(__name__).info(
                f"UI up in {ui_up:.1f}s; a day from the UI {ui_run:.1f}s; "
                f"test {time.monotonic() - started:.1f}s"
            )
    finally:
        chain.stop()


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/server_info", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _check_asset_graph(page, base: str) -> None:
    # The global lineage shows the groups; a group's lineage shows its assets with their
    # partition counts, checks and kinds.
    page.goto(f"{base}/asset-groups", wait_until="domcontentloaded")
    for group in ("raw", "core"):
        page.get_by_text(group, exact=True).first.wait_for(timeout=180_000)
    page.screenshot(path=str(ARTIFACTS / "browser-global-lineage.png"), full_page=True)
    # A group's lineage draws its downstream assets too (the raw group feeds eight core,
    # analytics, events and serving assets): a tall window, so that the graph, zoomed to be
    # readable, has every node of the group on screen (nodes off screen are not rendered).
    page.set_viewport_size({"width": 1600, "height": 2600})
    for group, assets in (
        ("raw", ("blocks", "transactions", "logs")),
        ("core", ("token_transfers",)),
    ):
        page.goto(
            f"{base}/locations/__repository__@chainlake/asset-groups/{group}/lineage",
            wait_until="domcontentloaded",
        )
        for name in assets:
            page.get_by_text(name, exact=True).first.wait_for(timeout=120_000)
        counts = page.get_by_text(f"{PARTITIONS} partitions", exact=True)
        # every asset node's count, not just the first one rendered (nodes fill in one by one)
        counts.nth(len(assets) - 1).wait_for(timeout=180_000)
        assert counts.count() >= len(assets), f"{group}: partition counts not shown"
        page.screenshot(path=str(ARTIFACTS / f"browser-{group}-lineage.png"), full_page=True)
    page.set_viewport_size({"width": 1600, "height": 1000})


def _materialized_count(page) -> int:
    label = page.get_by_text(re.compile(r"^Materialized \(\d+\)$")).first
    label.wait_for(timeout=60_000)
    return int(re.search(r"\d+", label.inner_text()).group())  # type: ignore[union-attr]


def _check_partitions(page, base: str) -> int:
    """The chain × date partitions of raw/blocks; returns how many are materialised."""
    page.goto(f"{base}/assets/raw/blocks?view=partitions", wait_until="domcontentloaded")
    page.get_by_text(CHAIN, exact=True).first.wait_for(timeout=120_000)
    page.get_by_text(f"{PARTITIONS} Partitions Selected", exact=True).wait_for(timeout=60_000)
    for d in range(DAYS):
        day = (FIRST_DAY + dt.timedelta(days=d)).isoformat()
        assert page.get_by_text(day, exact=True).count() > 0, f"day {day} not listed"
    page.get_by_placeholder(re.compile("Filter by chain")).wait_for(timeout=10_000)
    page.get_by_placeholder(re.compile("Filter by date")).wait_for(timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "browser-partitions-before.png"), full_page=True)
    return _materialized_count(page)


def _check_chart(page, base: str, home: Path) -> None:
    """A chart from `chainlake.metadata.line_chart` (as portfolio values and risk metrics
    carry) renders as an image in the UI's Markdown metadata."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from chainlake.metadata import line_chart

    days = [(FIRST_DAY + dt.timedelta(days=d)).isoformat() for d in range(DAYS)]
    chart = line_chart({"total_value": list(zip(days, [100.0, 104.5, 103.0], strict=True))},
                       title="Portfolio value (USD)")  # fmt: skip
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=["test", "chart"], metadata={"value_chart": chart})
        )
    page.goto(f"{base}/assets/test/chart?view=events", wait_until="domcontentloaded")
    page.get_by_text("[Show Markdown]").first.click(timeout=120_000)
    img = page.locator('img[src^="data:image/svg+xml"]').first
    img.wait_for(timeout=30_000)
    assert img.evaluate("e => e.naturalWidth") > 0, "the chart image did not load"
    assert img.get_attribute("alt") == "Portfolio value (USD)"
    page.screenshot(path=str(ARTIFACTS / "browser-chart.png"), full_page=True)


def _launch_backfill(base: str) -> str:
    keys = [f"{CHAIN}|{FIRST_DAY + dt.timedelta(days=d)}" for d in range(DAYS)]
    data = graphql(
        base,
        LAUNCH_BACKFILL,
        {
            "params": {
                "partitionNames": keys,
                "assetSelection": [{"path": p} for p in BACKFILL_ASSETS],
                "title": "browser test",
                "tags": [{"key": "chainlake/test", "value": "browser"}],
            }
        },
    )["launchPartitionBackfill"]
    assert data["__typename"] == "LaunchBackfillSuccess", data
    return data["backfillId"]


def _finished(base: str, backfill_id: str) -> str | None:
    data = graphql(base, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    assert data["__typename"] == "PartitionBackfill", data
    status = data["status"]
    return status if status not in ("REQUESTED", "CANCELING", "FAILING") else None


def _check_materialized(page, base: str, before: int, backfill_id: str) -> None:
    page.goto(f"{base}/assets/raw/blocks?view=partitions", wait_until="domcontentloaded")
    page.get_by_text(CHAIN, exact=True).first.wait_for(timeout=120_000)
    after = _materialized_count(page)
    assert after >= DAYS and after > before, f"materialised partitions: {before} -> {after}"
    page.screenshot(path=str(ARTIFACTS / "browser-partitions-after.png"), full_page=True)
    page.goto(f"{base}/runs/b/{backfill_id}?tab=runs", wait_until="domcontentloaded")
    page.get_by_text(backfill_id).first.wait_for(timeout=120_000)
    page.wait_for_timeout(3_000)
    page.screenshot(path=str(ARTIFACTS / "browser-backfill.png"), full_page=True)


def _rematerialise_from_ui(page, base: str) -> None:
    """Assets → raw/blocks → Materialize…, the chain and one backfilled day picked in the launch
    dialog, Launch 1 run: the run the toast names succeeds, for that partition only, and is
    the partition's newest materialisation."""
    key = f"{CHAIN}|{UI_DAY.isoformat()}"
    before = _partition_materializations(base, key)
    assert before, f"{key} has no materialisation after the backfill"
    try:
        _launch_one_partition(page, base)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "browser-materialize-failed.png"), full_page=True)
        raise
    toast = page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}$"))
    toast.wait_for(timeout=60_000)
    view = page.locator("a[href*='/runs/']").filter(has_text="View").first
    run_id = (view.get_attribute("href") or "").rsplit("/", 1)[-1]
    assert run_id.startswith(toast.inner_text().rsplit(" ", 1)[-1]), (run_id, toast.inner_text())
    status = wait_for(
        lambda: _run_finished(base, run_id), timeout=900, interval=2, what=f"UI run {run_id}"
    )
    run = graphql(base, RUN_STATUS, {"id": run_id})["runOrError"]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert status == "SUCCESS", f"the run launched from the UI ended {status}: {base}/runs/{run_id}"
    assert tags.get("dagster/partition") == key and tags.get("dagster/from_ui") == "true", tags
    assert sorted(a["path"] for a in run["assetSelection"]) == sorted(BACKFILL_ASSETS)
    after = _partition_materializations(base, key)
    assert len(after) == len(before) + 1, f"{key}: {len(before)} -> {len(after)} materialisations"
    assert max(after, key=lambda m: int(m["timestamp"]))["runId"] == run_id
    page.goto(f"{base}/runs/{run_id}", wait_until="domcontentloaded")
    page.get_by_text("Success", exact=True).first.wait_for(timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "browser-ui-run.png"), full_page=True)


def _launch_one_partition(page, base: str) -> None:
    """The clicks: raw/blocks → Materialize…, confirm the multi-asset, pick the chain and the
    day, Launch 1 run."""
    from playwright.sync_api import expect

    page.goto(f"{base}/assets/raw/blocks?view=partitions", wait_until="domcontentloaded")
    page.get_by_text(CHAIN, exact=True).first.wait_for(timeout=120_000)
    page.get_by_role("button", name="Materialize…").click(timeout=60_000)
    # raw/blocks is one multi-asset with raw/transactions and raw/logs: the UI asks first
    page.get_by_role("dialog").filter(
        has_text="Additional assets will be materialized"
    ).get_by_role("button", name="Confirm").click(timeout=60_000)
    dialog = page.get_by_role("dialog").filter(has_text="Partition selection")
    # the date dimension's range input, once its time window has loaded (until then the dialog
    # shows a second chooser like the chain's)
    dates = dialog.get_by_placeholder(re.compile("^ex: "))
    dates.wait_for(timeout=60_000)
    dialog.get_by_text("Select a partition or create one").first.click(timeout=60_000)
    item = page.get_by_role("menuitem").filter(has_text=CHAIN)
    item.click(timeout=30_000)
    expect(item.locator("input[type=checkbox]")).to_be_checked(timeout=10_000)
    # close the chain list by clicking the dialog's title (Escape could close the dialog)
    dialog.get_by_text(re.compile("^Launch runs to materialize")).click(timeout=10_000)
    dates.fill(UI_DAY.isoformat())
    dates.press("Enter")
    dialog.get_by_text("1 partition", exact=True).wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "browser-materialize-dialog.png"), full_page=True)
    dialog.get_by_role("button", name="Launch 1 run").click(timeout=30_000)


def _run_finished(base: str, run_id: str) -> str | None:
    run = graphql(base, RUN_STATUS, {"id": run_id})["runOrError"]
    assert run["__typename"] == "Run", run
    return run["status"] if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None


def _partition_materializations(base: str, key: str) -> list[dict[str, Any]]:
    data = graphql(
        base,
        PARTITION_MATERIALIZATIONS,
        {"key": {"path": ["raw", "blocks"]}, "partitions": [key]},
    )["assetOrError"]
    assert data["__typename"] == "Asset", data
    found = data["assetMaterializations"]
    assert all(m["partition"] == key for m in found), found
    return found
