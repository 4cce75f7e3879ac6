"""The backtest engine on handcrafted chain-days (cooldowns and rate limits on chain time, state
carried from day to day, chain order whatever the input order) and `chainlake triggers
backtest`'s refusals, each one line naming its cause."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from chainlake.events import backtest as bt
from chainlake.events.conditions import Action, Condition, Trigger, validate_condition
from chainlake.events.decode import chain_events_frame, frame_events
from cli.main import main

ROOT = Path(__file__).resolve().parents[2]
CHAIN = 31337
WALLET = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
OTHER = "0x" + "77" * 20
TOKEN = "0x" + "aa" * 20
DAY1, DAY2 = dt.date(2026, 11, 3), dt.date(2026, 11, 4)


def at(day: dt.date, hh: int, mm: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hh, mm, tzinfo=dt.UTC)


def transfers(rows: list[tuple[int, int, dt.datetime, str]]) -> pl.DataFrame:
    """core/token_transfers rows: (block, log index, block time, to_address), 5000 tokens each."""
    return pl.DataFrame(
        [
            {
                "chain_id": CHAIN, "date": ts.date(), "block_number": block,
                "block_hash": "0x" + f"{block:064x}", "block_timestamp": ts,
                "transaction_hash": "0x" + f"{block * 100 + li:064x}", "transaction_index": 0,
                "log_index": li, "token_address": TOKEN, "from_address": OTHER, "to_address": to,
                "value": None, "value_raw": str(5000 * 10**18),
            }
            for block, li, ts, to in rows
        ]
    )  # fmt: skip


def chain_day(day: dt.date, rows: list[tuple[int, int, dt.datetime, str]]) -> bt.ChainDay:
    """The day's events decoded as events/chain_events decodes them (no registry logs)."""
    frame = chain_events_frame(pl.DataFrame(), transfers(rows), contracts=[], tracked=[WALLET])
    return bt.ChainDay("devnet", CHAIN, day, tuple(frame_events(frame)), blocks=len(rows))


def trigger(tid: str, *conditions: Condition, cooldown: int = 0) -> Trigger:
    return Trigger(
        id=tid,
        name=tid,
        chain_id=CHAIN,
        registry="erc20",
        conditions=(
            validate_condition(Condition("address_in", "to_address", "in", json.dumps([WALLET]))),
            *(validate_condition(c) for c in conditions),
        ),
        actions=(Action(0, "hook", "rest", {"url": "https://hooks.example.com/x"}),),
        cooldown_seconds=cooldown,
    )


COOLDOWN = trigger("in-cooldown", cooldown=3600)
RATE = trigger(
    "in-twice",
    Condition("rate_limit", "", "gte", "2", {"time_window": "30m", "reset_on_trigger": True}),
)
# Day 1 is handed in out of order; the chain order is blocks 10, 11, 12 (and 11's two logs).
DAYS = [
    chain_day(
        DAY1,
        [
            (12, 0, at(DAY1, 11, 5), WALLET),
            (10, 3, at(DAY1, 10, 0), WALLET),
            (11, 7, at(DAY1, 10, 20), WALLET),
            (11, 2, at(DAY1, 10, 20), OTHER),  # not into the tracked wallet: no event of interest
        ],
    ),
    chain_day(DAY2, [(20, 0, at(DAY2, 0, 30), WALLET), (21, 0, at(DAY2, 0, 40), WALLET)]),
]


def fired_events(result: bt.Result, tid: str) -> list[str]:
    return [d["event_id"] for d in result.deliveries if d["trigger_id"] == tid]


def test_cooldown_and_rate_limit_run_on_chain_time_across_days() -> None:
    # Evaluated within milliseconds of wall time: a cooldown of wall time would let one
    # firing through. On chain time: 10:00 fires, 10:20 is within the hour, 11:05 fires,
    # the next day 00:30 fires (the state is carried over midnight), 00:40 is within the hour.
    result = bt.run([COOLDOWN, RATE], DAYS)
    assert fired_events(result, "in-cooldown") == [
        f"{CHAIN}-10-3",
        f"{CHAIN}-12-0",
        f"{CHAIN}-20-0",
    ]
    # two within 30 minutes of chain time: 10:00 + 10:20 (then reset), 00:30 + 00:40; 11:05
    # is alone in its window, and is more than 30 minutes before 00:30
    assert fired_events(result, "in-twice") == [f"{CHAIN}-11-7", f"{CHAIN}-21-0"]
    assert result.fired == {
        ("in-cooldown", DAY1): 2,
        ("in-cooldown", DAY2): 1,
        ("in-twice", DAY1): 1,
        ("in-twice", DAY2): 1,
    }
    assert result.events == 5 and result.firings == 5 and not result.failures
    assert result.days == [("devnet", DAY1, 3, 4), ("devnet", DAY2, 2, 2)]
    # the state after the last event is the live engine's: last firing at 00:30 of day 2
    assert result.states["in-cooldown"]["last_fired_ts"] == int(at(DAY2, 0, 30).timestamp())
    assert result.states["in-cooldown"]["fired_count"] == 3


def test_a_fast_trigger_fires_once_per_event_as_its_confirmed_phase() -> None:
    import dataclasses

    fast = dataclasses.replace(COOLDOWN, id="fast-cooldown", phase="fast")
    result = bt.run([COOLDOWN, fast], DAYS)
    # the same firings as the trigger without phases: the cooldown counts each firing once
    assert fired_events(result, "fast-cooldown") == fired_events(result, "in-cooldown")
    rows = [d for d in result.deliveries if d["trigger_id"] == "fast-cooldown"]
    block = "0x" + f"{10:064x}"
    assert rows[0]["idempotency_key"] == f"fast-cooldown:{CHAIN}-10-3@{block}:hook:confirmed"
    assert {json.loads(d["context"])["phase"] for d in rows} == {"confirmed"}
    plain = [d for d in result.deliveries if d["trigger_id"] == "in-cooldown"]
    assert all("phase" not in json.loads(d["context"]) for d in plain)
    assert result.states["fast-cooldown"]["fired_count"] == 3


def test_days_are_evaluated_in_date_order_whatever_the_input_order() -> None:
    assert bt.run([COOLDOWN, RATE], list(reversed(DAYS))).deliveries == (
        bt.run([COOLDOWN, RATE], DAYS).deliveries
    )


def test_a_day_alone_starts_from_an_empty_state() -> None:
    # without day 1, day 2's 00:30 transfer is the first the trigger sees, and 00:40 is in
    # its cooldown; the rate limit sees both within 30 minutes
    result = bt.run([COOLDOWN, RATE], DAYS[1:])
    assert fired_events(result, "in-cooldown") == [f"{CHAIN}-20-0"]
    assert fired_events(result, "in-twice") == [f"{CHAIN}-21-0"]


def test_deliveries_frame_rows_and_table() -> None:
    result = bt.run([COOLDOWN, RATE], DAYS)
    frame = bt.deliveries_frame(result)
    assert frame.schema == bt.DELIVERY_SCHEMA and frame.height == 5
    first = frame.row(0, named=True)
    assert first["trigger_id"] == "in-cooldown" and first["action_name"] == "hook"
    assert first["event_id"] == f"{CHAIN}-10-3"
    assert (first["block_number"], first["log_index"], first["date"]) == (10, 3, DAY1)
    assert first["block_time"] == at(DAY1, 10, 0)
    assert first["idempotency_key"] == f"in-cooldown:{CHAIN}-10-3:hook"
    ctx = json.loads(first["context"])
    assert ctx["idempotency_key"] == first["idempotency_key"]
    assert ctx["to_address"] == WALLET and ctx["amount"] == str(5000 * 10**18)
    assert ctx["block_time"] == at(DAY1, 10, 0).isoformat()
    # nothing fired: still a typed frame
    assert bt.deliveries_frame(bt.run([COOLDOWN], [])).schema == bt.DELIVERY_SCHEMA

    lines = bt.firings_table(result)
    assert lines[0].split() == ["trigger", "total", "11-03", "11-04"]
    assert lines[1].split() == ["(events", "of", "interest)", "5", "3", "2"]
    assert lines[2].split() == ["in-cooldown", "3", "2", "1"]
    assert lines[3].split() == ["in-twice", "2", "1", "1"]


def test_a_long_range_prints_in_blocks_of_days() -> None:
    days = [bt.ChainDay("devnet", CHAIN, DAY1 + dt.timedelta(days=i), ()) for i in range(12)]
    lines = bt.firings_table(bt.run([COOLDOWN], days))
    heads = [line for line in lines if line.startswith("trigger")]
    assert len(heads) == 2
    assert len(heads[0].split()) == 2 + bt.DAYS_PER_TABLE and len(heads[1].split()) == 2 + 2


def test_an_evaluation_that_raises_is_skipped_and_counted() -> None:
    # 90 digits do not fit the amount context: converting to token units raises for that
    # event and that trigger only, as in the live engine (which records it and goes on)
    big = trigger("big", Condition("amount_threshold", "", "gte", "1", {"decimals": 18}))
    first, *rest = DAYS[0].events
    odd = bt.ChainDay("devnet", CHAIN, DAY1, ({**first, "amount": "1" * 90}, *rest))
    result = bt.run([big, COOLDOWN], [odd])
    assert fired_events(result, "in-cooldown") == [f"{CHAIN}-10-3", f"{CHAIN}-12-0"]
    assert fired_events(result, "big") == [f"{CHAIN}-11-7", f"{CHAIN}-12-0"]
    assert [(f.trigger_id, f.event_id) for f in result.failures] == [("big", f"{CHAIN}-10-3")]
    assert result.failures[0].error.startswith("Inexact")


def test_day_range() -> None:
    assert bt.day_range(DAY1, DAY2) == [DAY1, DAY2]
    assert bt.day_range(DAY2, DAY2) == [DAY2]
    with pytest.raises(ValueError, match="--from 2026-11-04 is after --to 2026-11-03"):
        bt.day_range(DAY2, DAY1)


# ---- the command line ----------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHAINS_CONFIG", str(ROOT / "config" / "chains.yaml"))
    monkeypatch.setenv("PORTFOLIOS_CONFIG", str(ROOT / "config" / "portfolios.yaml"))
    monkeypatch.setenv("DELTA_ROOT", str(tmp_path / "no-lake"))
    # the backtest writes nothing to PostgreSQL: a database that cannot be reached is fine
    monkeypatch.setenv("POSTGRES_URL", "postgresql://nobody@127.0.0.1:1/none")
    return tmp_path


def backtest(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["triggers", "backtest", *args])
    return r.exit_code, r.stdout, r.stderr


TRIGGERS = str(ROOT / "config" / "triggers.yaml")


def test_cli_refuses_from_after_to(cli_env: Path) -> None:
    code, out, err = backtest(TRIGGERS, "--from", "2026-11-05", "--to", "2026-11-03")
    assert code == 1 and out == ""
    assert err.strip() == "Error: --from 2026-11-05 is after --to 2026-11-03"


def test_cli_refuses_a_bad_date(cli_env: Path) -> None:
    code, _, err = backtest(TRIGGERS, "--from", "2026-13-01", "--to", "2026-11-03")
    assert code == 2
    assert "Invalid value for '--from': '2026-13-01' does not match the format" in err


def test_cli_refuses_an_unknown_chain(cli_env: Path) -> None:
    code, _, err = backtest(
        TRIGGERS, "--from", "2026-11-03", "--to", "2026-11-03", "--chain", "mainnet"
    )
    assert code == 1
    assert err.strip() == "Error: unknown chain 'mainnet' (chains.yaml has: devnet)"


def test_cli_refuses_a_missing_lake(cli_env: Path) -> None:
    code, out, err = backtest(TRIGGERS, "--from", "2026-11-03", "--to", "2026-11-04")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: no raw/logs Delta table for chain 'devnet' at ")
    assert str(cli_env / "no-lake") in lines[0] and "set DELTA_ROOT" in lines[0]
    assert not (cli_env / "no-lake").exists() and not list(cli_env.rglob("*.parquet"))


def test_cli_reports_a_bad_file_as_apply_does(cli_env: Path) -> None:
    bad = cli_env / "draft.yaml"
    bad.write_text(
        "user: ops\n"
        "triggers:\n"
        "  - id: draft\n"
        "    chain: devnet\n"
        "    registry: erc20\n"
        "    cooldown: soon\n"
        "    conditions: [{type: amount_threshold, operator: '>>', value: 10}]\n"
        "    actions: [{name: hook, type: rest, url: 'https://hooks.example.com/x'}]\n"
    )
    code, out, err = backtest(str(bad), "--from", "2026-11-03", "--to", "2026-11-03")
    assert code == 1 and out == ""
    applied = CliRunner().invoke(main, ["triggers", "apply", str(bad), "--dry-run"])
    assert applied.exit_code == 1
    problems = applied.stderr.strip().splitlines()[:-1]
    assert problems == err.strip().splitlines()[:-1]
    assert any("trigger 'draft': field 'cooldown'" in p for p in problems)
    assert any("trigger 'draft': field 'conditions[0].operator'" in p for p in problems)
    assert err.strip().splitlines()[-1] == f"{bad}: 2 problem(s); nothing backtested"


def test_cli_refuses_a_file_with_nothing_to_backtest(cli_env: Path) -> None:
    only = cli_env / "analytics.yaml"
    only.write_text(
        "user: ops\n"
        "triggers:\n"
        "  - id: alerts\n"
        "    chain: devnet\n"
        "    registry: analytics\n"
        "    conditions: [{type: event_type_equals, value: AlertFired}]\n"
        "    actions: [{name: hook, type: rest, url: 'https://hooks.example.com/x'}]\n"
    )
    code, _, err = backtest(str(only), "--from", "2026-11-03", "--to", "2026-11-03")
    assert code == 1
    assert err.strip() == (
        f"Error: {only}: no enabled trigger whose events the lake holds (1 in the file; "
        "disabled: 0, analytics: 1, chain not in chains.yaml: 0)"
    )
