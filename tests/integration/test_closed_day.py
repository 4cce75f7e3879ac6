"""A chain-day closes on the clock and the whole graph of it follows, without a manual launch.

One anvil chain (1 confirmation), a tracked wallet and an ERC-20 token. The clock is the
chain's: blocks are mined at chosen timestamps (`evm_setNextBlockTimestamp`). The shipped
new-block sensor and daily schedule are ticked at chosen times and the runs they request are
executed as the daemon would (one run per run key); the trigger engine's sensors deliver to a
real HTTP receiver on 127.0.0.1.

- During the day, the new-block sensor's open-day run brings event E1 (a transfer to the
  tracked wallet) to PostgreSQL; it is delivered once.
- E2, the day's last transfer at 23:59:30, is confirmed by a block after midnight, and no
  open-day run sees it. The schedule skips while the confirmed head is still in the day, then
  requests the closed day once the head is past midnight: one `closed_day_job` run
  materialises every partitioned asset of the day once (raw, core, analytics, events).
- E2 reaches PostgreSQL once and is delivered once; E1, decoded again by the closed-day run,
  is neither inserted nor delivered again. The next tick requests nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster_stack import Chain, day_start, start_chain
from test_triggers_flow import Engine
from triggers_helpers import database, receiver

from chainlake.events import db
from chainlake.events.spec import Resolver, apply_spec, parse_spec

pytestmark = pytest.mark.integration

# The chain is named like the shipped config's so the code location's partitions (built from
# config/chains.yaml when it is imported) hold its days.
NAME = "devnet"
CHAIN_ID = 31_337
DAY = dt.date(2026, 11, 2)
EVERY_ASSET = {
    "raw/blocks",
    "raw/transactions",
    "raw/logs",
    "raw/traces",
    "core/token_transfers",
    "core/tokens",
    "core/nft_transfers",
    "core/contracts",
    "core/native_transfers",
    "core/native_balance_movements",
    "core/token_prices",
    "core/balances",
    "analytics/portfolio_snapshots",
    "analytics/risk_metrics",
    "events/chain_events",
    "events/analytics_alerts",
}


def _at(day: dt.date, hh: int, mm: int, ss: int = 0) -> int:
    return day_start(day) + hh * 3600 + mm * 60 + ss


def _mine(chain: Chain, ts: int, *txs: dict[str, Any]) -> list[str]:
    hashes = [chain.rpc("eth_sendTransaction", [tx]) for tx in txs]
    chain.rpc("evm_setNextBlockTimestamp", [hex(ts)])
    chain.rpc("evm_mine")
    return hashes


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    # one block at 00:01 of DAY (the chain's first), mined by the helper
    chain = start_chain(NAME, CHAIN_ID, DAY, 0)
    try:
        with database() as url, receiver() as rec:
            accounts = chain.rpc("eth_accounts")
            wallet = accounts[1].lower()
            (tmp_path / "chains.yaml").write_text(
                yaml.safe_dump(
                    {
                        "chains": [
                            {
                                "name": NAME,
                                "network": NAME,
                                "subnet": "local",
                                "chain_id": CHAIN_ID,
                                "rpc_urls": [chain.url],
                                "confirmations": 1,
                                # DAY is the chain's first: no earlier day to close
                                "start_date": DAY.isoformat(),
                            }
                        ]
                    }
                )
            )
            (tmp_path / "portfolios.yaml").write_text(
                yaml.safe_dump(
                    {
                        "wallets": [{"name": "payee", "address": wallet, "chain": NAME}],
                        "portfolios": [
                            {"id": "book", "name": "book", "chain": NAME, "wallets": ["payee"]}
                        ],
                    }
                )
            )
            for var, value in {
                "CHAINS_CONFIG": tmp_path / "chains.yaml",
                "PORTFOLIOS_CONFIG": tmp_path / "portfolios.yaml",
                "DELTA_ROOT": tmp_path / "delta",
                "DUCKDB_PATH": tmp_path / "chainlake.duckdb",
                "CLICKHOUSE_PATH": tmp_path / "clickhouse",
                "POSTGRES_URL": url,
                "HOOK_URL": rec.url,
            }.items():
                monkeypatch.setenv(var, str(value))
            monkeypatch.delenv("CLICKHOUSE_URL", raising=False)
            spec = {
                "user": "ops",
                "triggers": [
                    {
                        "id": "payee-in",
                        "chain": NAME,
                        "registry": "erc20",
                        "conditions": [
                            {"type": "address_in", "field": "to_address", "value": "tracked"}
                        ],
                        "actions": [{"name": "hook", "type": "rest", "url": "${HOOK_URL}/in"}],
                    }
                ],
            }
            resolver = Resolver({NAME: CHAIN_ID}, lambda name, cid: [wallet])
            with db.connection(url) as c:
                apply_spec(c, parse_spec(spec, resolver=resolver))
            yield {"chain": chain, "url": url, "receiver": rec, "wallet": wallet}
    finally:
        chain.stop()


class Daemon:
    """The shipped new-block sensor and daily schedule, ticked at chosen times; their run
    requests executed in process, each run key once, as the daemon would."""

    def __init__(self, instance: dg.DagsterInstance, tmp_delta: str) -> None:
        from chainlake.config import load_chains
        from chainlake.lake import DeltaStore
        from pipelines.definitions import defs
        from pipelines.schedules import daily_schedule

        self.instance = instance
        self.defs = defs
        self.delta = DeltaStore(root=tmp_delta)
        # the schedule the code location builds for the chain, from this test's chains.yaml
        self.schedule = daily_schedule(load_chains()[NAME])
        self.sensor_cursor: str | None = None
        self.run_keys: set[str] = set()
        self.results: list[dg.ExecuteInProcessResult] = []

    def tick_new_blocks(self) -> list[dg.RunRequest]:
        from sensors.new_blocks import new_block_sensor

        ctx = dg.build_sensor_context(
            cursor=self.sensor_cursor, resources={"delta": self.delta}, instance=self.instance
        )
        result = new_block_sensor(ctx)
        self.sensor_cursor = result.cursor
        return self._launch("new_blocks_job", result.run_requests or [])

    def tick_schedule(self, at: dt.datetime) -> list[dg.RunRequest]:
        ctx = dg.build_schedule_context(instance=self.instance, scheduled_execution_time=at)
        result = self.schedule(ctx)
        if isinstance(result, dg.SkipReason):
            return []
        return self._launch(self.schedule.job_name, list(result))

    def _launch(self, job_name: str, requests: list[dg.RunRequest]) -> list[dg.RunRequest]:
        fresh = [r for r in requests if r.run_key not in self.run_keys]
        for request in fresh:
            self.run_keys.add(request.run_key)
            job = self.defs.resolve_job_def(request.job_name or job_name)
            result = job.execute_in_process(
                partition_key=str(request.partition_key),
                instance=self.instance,
                tags=dict(request.tags),
                raise_on_error=False,
            )
            assert result.success, [
                str(e.step_failure_data.error.message)[:500]
                for e in result.all_events
                if e.is_step_failure
            ]
            self.results.append(result)
        return fresh


def _events(url: str) -> Counter[str]:
    with db.connection(url) as c:
        rows = c.execute("SELECT id FROM events WHERE registry = 'erc20'").fetchall()
    return Counter(r["id"] for r in rows)


def test_a_closed_day_follows_its_last_confirmed_block(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    from tools.devnet.artifacts import load_artifact

    chain, url, rec, wallet = stack["chain"], stack["url"], stack["receiver"], stack["wallet"]
    token = load_artifact("Token")
    deployer = chain.rpc("eth_accounts")[0]
    (deploy,) = _mine(
        chain,
        _at(DAY, 1, 0),
        {"from": deployer, "data": token.deploy_data("Test", "TST", 18, 10**24)},
    )
    address = chain.rpc("eth_getTransactionReceipt", [deploy])["contractAddress"]

    def pay(amount: int) -> dict[str, Any]:
        return {
            "from": deployer,
            "to": address,
            "data": token.call_data("transfer", wallet, amount),
        }

    engine = Engine(url)
    with dg.instance_for_test() as instance:
        daemon = Daemon(instance, str(tmp_path / "delta"))

        # 10:00 E1, confirmed by the 11:00 block: the open-day run decodes it
        _mine(chain, _at(DAY, 10, 0), pay(2 * 10**18))
        _mine(chain, _at(DAY, 11, 0))
        assert [str(r.partition_key) for r in daemon.tick_new_blocks()] == [f"{NAME}|{DAY}"]
        first = _events(url)
        assert list(first.values()) == [1]
        _evaluated, delivered = engine.cycle()
        assert sum(d["succeeded"] for d in delivered) == 1

        # 23:59:30 E2; the 00:00:30 block after midnight confirms it, the confirmed head is
        # still in DAY: the day is not closed, the schedule waits
        _mine(chain, _at(DAY, 23, 59, 30), pay(3 * 10**18))
        next_day = DAY + dt.timedelta(days=1)
        _mine(chain, _at(next_day, 0, 0, 30))
        tick = dt.datetime.fromtimestamp(_at(next_day, 0, 5), dt.UTC)
        assert daemon.tick_schedule(tick) == []

        # the 00:02 block moves the confirmed head past midnight: DAY is closed, and the next
        # tick (every 5 minutes) requests the whole graph of it
        _mine(chain, _at(next_day, 0, 2))
        requests = daemon.tick_schedule(tick + dt.timedelta(minutes=5))
        assert [str(r.partition_key) for r in requests] == [f"{NAME}|{DAY}"]
        assert daemon.schedule.job_name == "closed_day_job"
        closed_run = daemon.results[-1]
        materialised = Counter(
            (e.asset_key.to_user_string(), e.partition)
            for e in closed_run.get_asset_materialization_events()
        )
        assert set(materialised) == {(k, f"{NAME}|{DAY}") for k in EVERY_ASSET}
        assert set(materialised.values()) == {1}
        blocks = next(
            e.materialization
            for e in closed_run.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey(["raw", "blocks"])
        )
        assert blocks.metadata["closed_day"].value is True

        # E2 reached PostgreSQL once, E1 was not inserted again; only E2 is delivered now
        events = _events(url)
        assert len(events) == 2 and set(events.values()) == {1}
        assert set(first) < set(events)
        _evaluated, delivered = engine.cycle()
        assert sum(d["succeeded"] for d in delivered) == 1
        assert len(rec.requests) == 2 and max(rec.by_key().values()) == 1
        assert engine.cycle()[1] == []

        # the day is done: later ticks request nothing for it
        assert daemon.tick_schedule(tick + dt.timedelta(minutes=10)) == []
        assert instance.get_runs_count(dg.RunsFilter(job_name="closed_day_job")) == 1
