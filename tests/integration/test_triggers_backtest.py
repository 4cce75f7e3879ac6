"""A backtest over the lake equals what the live engine delivered: two generated days on anvil
are materialised (raw, core transfers, events/chain_events into PostgreSQL) and evaluated day
by day as they arrive, the deliveries delivered to a real receiver; then `chainlake triggers
backtest` over the same days, from Delta alone, must name the same (trigger, action, event)
triples, with triggers whose cooldown and rate limit make chain time matter."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from click.testing import CliRunner
from triggers_helpers import database, receiver

from chainlake.events import db
from chainlake.events.evaluate import evaluate_batch
from chainlake.events.spec import apply_spec, default_resolver, load_spec
from tools.devnet.anvil import Anvil
from tools.devnet.configs import write_chains_yaml, write_portfolios_yaml
from tools.devnet.generator import generate

pytestmark = pytest.mark.integration

START = dt.date(2026, 11, 3)
DAYS = [START, START + dt.timedelta(days=1)]
ROOT = Path(__file__).resolve().parents[2]
HOOK = "${CHAINLAKE_ACTION_SECRET_WEBHOOK_URL}"
# on top of the demo's triggers: a cooldown longer than the blocks' spacing, and a rate limit
EXTRA = [
    {
        "id": "tracked-in-cooldown",
        "name": "Any transfer into a tracked wallet, at most one per 3 hours of chain time",
        "chain": "devnet",
        "registry": "erc20",
        "cooldown": "3h",
        "conditions": [{"type": "address_in", "field": "to_address", "value": "tracked"}],
        "actions": [{"name": "webhook", "type": "rest", "url": HOOK}],
    },
    {
        # the same with phase: fast; the demo's chain has no confirmations, so live it fires at
        # confirmation (its confirmed phase), as the backtest shows every fast trigger
        "id": "tracked-in-cooldown-fast",
        "name": "Any transfer into a tracked wallet, fast phase, at most one per 3 hours",
        "chain": "devnet",
        "registry": "erc20",
        "cooldown": "3h",
        "phase": "fast",
        "conditions": [{"type": "address_in", "field": "to_address", "value": "tracked"}],
        "actions": [{"name": "webhook", "type": "rest", "url": HOOK}],
    },
    {
        "id": "tracked-in-2d",
        "name": "A transfer into a tracked wallet, at most one per 2 days: its state spans days",
        "chain": "devnet",
        "registry": "erc20",
        "cooldown": "2d",
        "conditions": [{"type": "address_in", "field": "to_address", "value": "tracked"}],
        "actions": [{"name": "webhook", "type": "rest", "url": HOOK}],
    },
    {
        "id": "feedback-triples",
        "name": "Three feedbacks within four hours of chain time",
        "chain": "devnet",
        "registry": "reputation",
        "conditions": [
            {"type": "event_type_equals", "value": "NewFeedback"},
            {"type": "rate_limit", "value": 3, "config": {"time_window": "4h"}},
        ],
        "actions": [
            {"name": "webhook", "type": "rest", "url": HOOK},
            {"name": "second", "type": "rest", "url": HOOK + "/second"},
        ],
    },
]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    cfg = tmp_path_factory.mktemp("backtest-cfg")
    with Anvil(genesis=START) as node:
        manifest = generate(
            node.rpc_url, start=START, days=len(DAYS), blocks_per_day=12, txs_per_block=6, seed=11
        )
        yield {
            "chains": write_chains_yaml(cfg / "chains.yaml", manifest, rpc_urls=[node.rpc_url]),
            "portfolios": write_portfolios_yaml(cfg / "portfolios.yaml", manifest),
        }


def test_backtest_equals_live_delivery(
    chain: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assets.core.token_transfers import token_transfers
    from assets.events.chain_events import chain_events
    from assets.raw.chain_tables import raw_chain_tables
    from chainlake.actions.base import Secrets
    from chainlake.actions.deliver import Deliverer, default_senders
    from chainlake.lake import DeltaStore
    from cli.main import main
    from resources.postgres import PostgresResource
    from resources.rpc import RpcResource

    monkeypatch.setenv("CHAINS_CONFIG", str(chain["chains"]))
    monkeypatch.setenv("PORTFOLIOS_CONFIG", str(chain["portfolios"]))
    lake = tmp_path / "delta"
    doc = yaml.safe_load((ROOT / "config" / "triggers.yaml").read_text())
    doc["triggers"] += EXTRA
    triggers_file = tmp_path / "triggers.yaml"
    triggers_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    with database() as url, receiver() as rec:
        monkeypatch.setenv("CHAINLAKE_ACTION_SECRET_WEBHOOK_URL", rec.url)
        with db.connection(url) as c:
            apply_spec(c, load_spec(triggers_file, resolver=default_resolver()))
        # live: each day's events reach PostgreSQL and are evaluated and delivered before the
        # next day's arrive (trigger states persist in PostgreSQL in between)
        delivered = 0
        for day in DAYS:
            result = dg.materialize(
                [raw_chain_tables, token_transfers, chain_events],
                partition_key=f"devnet|{day.isoformat()}",
                resources={
                    "delta": DeltaStore(root=str(lake)),
                    "rpc": RpcResource(),
                    "postgres": PostgresResource(url=url),
                },
            )
            assert result.success
            with db.connection(url) as c:
                report = evaluate_batch(c)
            assert report.events > 0 and not report.failures
            run = Deliverer(
                url=url, senders=default_senders(), secrets=Secrets(getenv={**os.environ}.get)
            ).run()
            assert run.failed == 0
            delivered += run.succeeded
        with db.connection(url) as c:
            live_rows = c.execute(
                "SELECT id, trigger_id, event_id, context->>'action_name' AS action, status, "
                "context FROM deliveries"
            ).fetchall()
            matching_in = c.execute(
                "SELECT count(*) AS n FROM events WHERE registry = 'erc20' AND "
                "to_address = ANY(%s)",
                (default_resolver().tracked_wallets("devnet", 31337),),
            ).fetchone()["n"]
            matching_day2 = c.execute(
                "SELECT count(*) AS n FROM events WHERE registry = 'erc20' AND "
                "to_address = ANY(%s) AND timestamp >= %s",
                (
                    default_resolver().tracked_wallets("devnet", 31337),
                    int(dt.datetime.combine(DAYS[1], dt.time(), dt.UTC).timestamp()),
                ),
            ).fetchone()["n"]
            feedbacks = c.execute(
                "SELECT count(*) AS n FROM events WHERE event_type = 'NewFeedback'"
            ).fetchone()["n"]
        received = [r.headers["idempotency-key"] for r in rec.requests]

        # the backtest: the same file, the same days, from the lake alone; another database
        # URL would do (it connects to none), so point it nowhere
        monkeypatch.setenv("POSTGRES_URL", "postgresql://nobody@127.0.0.1:1/none")
        out = tmp_path / "backtest.parquet"
        before = START - dt.timedelta(days=1)
        cli = CliRunner().invoke(
            main,
            [
                "triggers", "backtest", str(triggers_file),
                "--from", before.isoformat(), "--to", DAYS[-1].isoformat(),
                "--delta-root", str(lake), "--out", str(out),
            ],
        )  # fmt: skip
        assert cli.exit_code == 0, cli.output

    assert {r["status"] for r in live_rows} == {"succeeded"} and delivered == len(live_rows)
    live = {(r["trigger_id"], r["action"], r["event_id"]) for r in live_rows}
    frame = pl.read_parquet(out)
    backtest = set(frame.select("trigger_id", "action_name", "event_id").iter_rows())
    assert len(backtest) == frame.height  # no would-be delivery twice
    assert backtest == live
    # the idempotency keys are the live ones, and exactly those reached the receiver once each
    assert set(frame["idempotency_key"]) == {r["id"] for r in live_rows} == set(received)
    assert len(received) == len(set(received))
    # and each would-be delivery carries the context the live one was rendered from
    contexts = dict(frame.select("idempotency_key", "context").iter_rows())
    assert {r["id"]: json.loads(contexts[r["id"]]) for r in live_rows} == {
        r["id"]: r["context"] for r in live_rows
    }

    fired = frame.unique(["trigger_id", "event_id"]).group_by("trigger_id").len()
    per_trigger = dict(fired.iter_rows())
    # chain time matters: the cooldown let through some of the transfers but not all, the
    # rate limit fired on some feedbacks but not all, and both days delivered something
    assert 1 < per_trigger["tracked-in-cooldown"] < matching_in
    # a fast trigger counts each firing once, as the one without phases does; its deliveries
    # are the confirmed phase, live and in the backtest alike
    assert per_trigger["tracked-in-cooldown-fast"] == per_trigger["tracked-in-cooldown"]
    fast_keys = frame.filter(pl.col("trigger_id") == "tracked-in-cooldown-fast")["idempotency_key"]
    assert all(k.endswith(":webhook:confirmed") and "@0x" in k for k in fast_keys)
    assert 1 <= per_trigger["feedback-triples"] < feedbacks
    # the live engine evaluated each day in its own batch, the state kept in PostgreSQL: the
    # 2-day cooldown that started on day 1 still held on day 2, and so it did in the backtest
    # (whose state starts empty once, then follows the trigger from day to day)
    assert matching_day2 > 0
    assert frame.filter(pl.col("trigger_id") == "tracked-in-2d")["date"].to_list() == [START]
    assert frame.filter(pl.col("trigger_id") == "feedback-triples").height == (
        2 * per_trigger["feedback-triples"]
    )
    assert set(frame["date"]) == set(DAYS)
    # the ids and chain positions match the lake's events
    same = pl.col("event_id") == pl.format("31337-{}-{}", "block_number", "log_index")
    assert frame.select(same.all()).item()

    # the table: a row per trigger, a column per day (the day before the chain: zeros, said)
    lines = cli.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("trigger"))
    assert lines[head].split() == ["trigger", "total"] + [d.strftime("%m-%d") for d in
                                                          [before, *DAYS]]  # fmt: skip
    rows = {line.split()[0]: line.split()[1:] for line in lines[head + 2 :] if line.split()}
    for tid, n in per_trigger.items():
        by_day = frame.filter(pl.col("trigger_id") == tid).unique("event_id")
        assert rows[tid] == [str(n), "0"] + [
            str(by_day.filter(pl.col("date") == d).height) for d in DAYS
        ]
    assert f"devnet {before}: no blocks in the lake" in cli.stderr
    assert f"written to {out}" in lines[-1] and f"{frame.height} would-be deliveries" in lines[-1]

    # a range the lake holds no block of: refused in one line, nothing written
    monkeypatch.chdir(tmp_path)
    args = ["triggers", "backtest", str(triggers_file), "--delta-root", str(lake)]
    early = CliRunner().invoke(main, [*args, "--from", "2026-10-01", "--to", "2026-10-02"])
    assert early.exit_code == 1 and early.stdout == ""
    assert early.stderr.strip() == (
        f"Error: the lake ({lake}) holds no block of devnet from 2026-10-01 to 2026-10-02: "
        "materialise those days first"
    )
    assert not (tmp_path / "data").exists()
    # without --out: under data/backtests/ of the working directory, the path printed
    again = CliRunner().invoke(
        main, [*args, "--from", str(START), "--to", str(DAYS[-1]), "--chain", "devnet"]
    )
    default = Path("data/backtests") / f"triggers_devnet_{START}_{DAYS[-1]}.parquet"
    assert again.exit_code == 0 and again.stdout.splitlines()[-1].endswith(f"written to {default}")
    assert pl.read_parquet(tmp_path / default).equals(frame)
