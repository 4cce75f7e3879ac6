"""Two-phase alerts on a real anvil: a `phase: fast` trigger fires on events read at the head
(unconfirmed) and its delivery is followed by a confirmed message once the confirmed pipeline
(raw tables -> token_transfers -> events/chain_events) has the block, or by a retracted one
when a reorg (evm_snapshot / evm_revert, then other blocks) took the event away: seen by the
head reader, or found by settlement when nobody was reading the head. One message per phase
arrives at a real local HTTP receiver; a trigger without `phase: fast` delivers exactly as
before, once, at confirmation."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from tests.chain_helpers import Anvil, Filler, anvil_node, day_ts, write_chains_yaml
from tests.integration.triggers_helpers import Receiver, database, receiver

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 3)
CONFIRMATIONS = 3
ROOT = Path(__file__).resolve().parents[2]
TRIGGERS = {
    "user": "ops",
    "triggers": [
        {
            "id": "fast-transfer",
            "chain": "devnet",
            "registry": "erc20",
            "phase": "fast",
            "conditions": [
                {
                    "type": "amount_threshold",
                    "operator": "gte",
                    "value": 1,
                    "config": {"decimals": 18},
                }
            ],
            "actions": [{"name": "hook", "type": "rest", "url": "${CHAINLAKE_ACTION_SECRET_HOOK}"}],
        },
        {
            "id": "slow-transfer",
            "chain": "devnet",
            "registry": "erc20",
            "conditions": [
                {
                    "type": "amount_threshold",
                    "operator": "gte",
                    "value": 1,
                    "config": {"decimals": 18},
                }
            ],
            "actions": [{"name": "hook", "type": "rest", "url": "${CHAINLAKE_ACTION_SECRET_HOOK}"}],
        },
    ],
}


def _confirm(lake: Path, url: str) -> None:
    """The confirmed pipeline for the day, as new_blocks_job runs it: raw tables up to the
    confirmed head, token transfers, and the day's events into PostgreSQL."""
    from assets.core.token_transfers import token_transfers
    from assets.events.chain_events import chain_events
    from assets.raw.chain_tables import raw_chain_tables
    from chainlake.lake import DeltaStore
    from resources.postgres import PostgresResource
    from resources.rpc import RpcResource

    result = dg.materialize(
        [raw_chain_tables, token_transfers, chain_events],
        partition_key=f"devnet|{DAY.isoformat()}",
        resources={
            "delta": DeltaStore(root=str(lake)),
            "rpc": RpcResource(),
            "postgres": PostgresResource(url=url),
        },
    )
    assert result.success


def _deliver(url: str) -> Any:
    from chainlake.actions.base import Secrets
    from chainlake.actions.deliver import Deliverer, default_senders

    return Deliverer(
        url=url, senders=default_senders(), secrets=Secrets(getenv={**os.environ}.get)
    ).run()


def _keys(rec: Receiver) -> dict[str, int]:
    return rec.by_key()


def _transfer_block(f: Filler, ts: int, salt: int) -> str:
    """A block with one Transfer (from the tracked treasury); returns its log's event id."""
    f.block(ts, transfers=0, logs=1, salt=salt)
    return f"31337-{f.head()}-0"


def _reset_nonce(f: Filler, node: Anvil) -> None:
    f.nonce = int(node.rpc("eth_getTransactionCount", [f.sender, "pending"]), 16)


def test_fast_trigger_unconfirmed_then_confirmed_or_retracted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chainlake.events import db, store
    from chainlake.events.evaluate import evaluate_batch
    from chainlake.events.head import default_readers
    from chainlake.events.spec import apply_spec, default_resolver, parse_spec

    with anvil_node(genesis_ts=day_ts(DAY)) as node, database() as url, receiver() as rec:
        chains = write_chains_yaml(
            tmp_path / "chains.yaml", [node.url], confirmations=CONFIRMATIONS
        )
        monkeypatch.setenv("CHAINS_CONFIG", str(chains))
        monkeypatch.setenv("PORTFOLIOS_CONFIG", str(ROOT / "config" / "portfolios.yaml"))
        monkeypatch.setenv("CHAINLAKE_ACTION_SECRET_HOOK", rec.url + "/hook")
        with db.connection(url) as conn:
            apply_spec(conn, parse_spec(TRIGGERS, resolver=default_resolver()))
        f = Filler(node)
        f.deploy_emitter(day_ts(DAY, 600))
        for i in range(CONFIRMATIONS + 1):
            f.mine(day_ts(DAY, 700 + i))
        # the resident evaluator's head reader: chains.yaml's node, portfolios.yaml's wallets
        (reader,) = default_readers()
        conn = db.connect(url)
        try:
            # A: read at the head, delivered at once as unconfirmed
            a = _transfer_block(f, day_ts(DAY, 800), salt=0)
            a_hash = node.rpc("eth_getBlockByNumber", [hex(f.head()), False])["hash"]
            first = reader.poll(conn)
            assert first.events == 1 and first.fired == 1 and len(first.delivery_ids) == 1
            assert reader.poll(conn).events == 0, "a block is read once"
            assert _deliver(url).succeeded == 1
            key_a = f"fast-transfer:{a}@{a_hash}:hook"
            assert _keys(rec) == {f"{key_a}:unconfirmed": 1}
            (msg,) = rec.requests
            assert msg.headers["x-chainlake-phase"] == "unconfirmed"
            assert msg.body["phase"] == "unconfirmed" and msg.body["event_id"] == a

            # B: read at the head, then a reorg at the head replaces its block
            snap = node.rpc("evm_snapshot")
            b = _transfer_block(f, day_ts(DAY, 810), salt=1)
            b_hash = node.rpc("eth_getBlockByNumber", [hex(f.head()), False])["hash"]
            assert reader.poll(conn).fired == 1
            node.rpc("evm_revert", [snap])
            _reset_nonce(f, node)
            f.mine(day_ts(DAY, 811))  # another block at B's height, without B's transfer
            replaced = reader.poll(conn)
            assert len(replaced.follow_up_ids) == 1 and replaced.events == 0
            assert _deliver(url).succeeded == 2
            key_b = f"fast-transfer:{b}@{b_hash}:hook"
            assert _keys(rec) == {
                f"{key_a}:unconfirmed": 1,
                f"{key_b}:unconfirmed": 1,
                f"{key_b}:retracted": 1,
            }
            b_msgs = [r for r in rec.requests if r.body["event_id"] == b]
            assert [r.body["phase"] for r in b_msgs] == ["unconfirmed", "retracted"]

            # C: read at the head, reorged out while nobody reads the head: settlement finds it
            snap = node.rpc("evm_snapshot")
            c = _transfer_block(f, day_ts(DAY, 820), salt=2)
            c_hash = node.rpc("eth_getBlockByNumber", [hex(f.head()), False])["hash"]
            assert reader.poll(conn).fired == 1
            node.rpc("evm_revert", [snap])
            _reset_nonce(f, node)
            # D: a transfer nobody read at the head (the head reader is not polled from here)
            d = _transfer_block(f, day_ts(DAY, 821), salt=3)
            assert d == c, "D sits at C's height and log index, in another block"
            d_hash = node.rpc("eth_getBlockByNumber", [hex(f.head()), False])["hash"]
            assert d_hash != c_hash
            for i in range(CONFIRMATIONS):
                f.mine(day_ts(DAY, 830 + i))
        finally:
            conn.close()
        _deliver(url)  # C's unconfirmed message
        assert _keys(rec)[f"fast-transfer:{c}@{c_hash}:hook:unconfirmed"] == 1

        # the blocks reach their confirmations: the confirmed pipeline inserts A and D
        _confirm(tmp_path / "lake", url)
        with db.connection(url) as conn:
            report = evaluate_batch(conn)
            again = evaluate_batch(conn)
            phases = {
                r["id"]: r["status"]
                for r in conn.execute(
                    "SELECT id || '@' || block_hash AS id, status FROM head_events"
                )
            }
            state = store.get_trigger_state(conn, "fast-transfer") or {}
        assert again.events == 0 and again.deliveries_added == 0
        assert phases == {
            f"{a}@{a_hash}": "confirmed",
            f"{b}@{b_hash}": "retracted",
            f"{c}@{c_hash}": "retracted",
        }
        # slow-transfer fires on A and D once each; fast-transfer fires on D only (never seen
        # at the head), confirmed; A's and C's follow-ups were enqueued by settlement
        assert report.by_trigger == {"slow-transfer": 2, "fast-transfer": 1}
        delivered = _deliver(url)
        # A confirmed, C retracted, D confirmed (fast); A and D (slow)
        assert delivered.failed == 0 and delivered.succeeded == 5
        assert _deliver(url).claimed == 0
        keys = _keys(rec)
        assert set(keys.values()) == {1}, "exactly one message per phase"
        assert set(keys) == {
            f"{key_a}:unconfirmed",
            f"{key_a}:confirmed",
            f"{key_b}:unconfirmed",
            f"{key_b}:retracted",
            f"fast-transfer:{c}@{c_hash}:hook:unconfirmed",
            f"fast-transfer:{c}@{c_hash}:hook:retracted",
            f"fast-transfer:{d}@{d_hash}:hook:confirmed",
            f"slow-transfer:{a}:hook",
            f"slow-transfer:{d}:hook",
        }
        # the phases of one delivery arrive in order
        order = [r.headers["idempotency-key"] for r in rec.requests]
        assert order.index(f"{key_a}:unconfirmed") < order.index(f"{key_a}:confirmed")
        # the trigger without phases: no phase header, no phase field, as before
        slow = [r for r in rec.requests if r.headers["idempotency-key"].startswith("slow-")]
        assert all("x-chainlake-phase" not in r.headers and "phase" not in r.body for r in slow)
        # a fast firing counts once: A, B, C at the head and D at confirmation
        assert state["fired_count"] == 4

        # the audit: every delivery and attempt with its phase
        with db.connection(url) as conn:
            audit = {
                (r["delivery_id"], r["phase"])
                for r in conn.execute(
                    "SELECT delivery_id, phase FROM action_results WHERE status = 'success'"
                )
            }
            confirmed_row = conn.execute(
                "SELECT event_id, follows FROM deliveries WHERE id = %s", (f"{key_a}:confirmed",)
            ).fetchone()
        assert (f"{key_a}:unconfirmed", "unconfirmed") in audit
        assert (f"{key_a}:confirmed", "confirmed") in audit
        assert (f"{key_b}:retracted", "retracted") in audit
        assert (f"slow-transfer:{a}:hook", None) in audit
        assert confirmed_row == {"event_id": a, "follows": f"{key_a}:unconfirmed"}
        # `chainlake triggers deliveries` lists both phases, each named
        from click.testing import CliRunner

        from cli.main import main

        out = CliRunner().invoke(
            main, ["triggers", "deliveries", "--url", url, "--trigger", "fast-transfer"]
        )
        assert out.exit_code == 0, out.output
        listed = {line.split()[-1]: line.split()[4] for line in out.output.splitlines()}
        assert listed[f"{key_a}:unconfirmed"] == "unconfirmed"
        assert listed[f"{key_a}:confirmed"] == "confirmed"
        assert listed[f"{key_b}:retracted"] == "retracted"
        assert len(listed) == 7


def test_phase_round_trips_through_the_triggers_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chainlake.events import db, store
    from chainlake.events.spec import Resolver, apply_spec, load_spec

    monkeypatch.setenv("CHAINLAKE_ACTION_SECRET_HOOK", "http://127.0.0.1:9/hook")
    path = tmp_path / "triggers.yaml"
    path.write_text(yaml.safe_dump(TRIGGERS))
    spec = load_spec(path, resolver=Resolver({"devnet": 31337}))
    with database() as url, db.connection(url) as conn:
        apply_spec(conn, spec)
        phases = {t.id: t.phase for t in store.load_triggers(conn)}
    assert phases == {"fast-transfer": "fast", "slow-transfer": "confirmed"}


def test_the_resident_evaluator_reads_the_head_and_delivers_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring as deployed: the resident evaluator's head thread finds a new block, and its
    delivery threads send the unconfirmed message without a run or a sensor in between."""
    import threading

    from chainlake.actions.base import Secrets
    from chainlake.actions.deliver import Deliverer, default_senders
    from chainlake.events import db
    from chainlake.events.head import default_readers
    from chainlake.events.resident import live_evaluator, serve
    from chainlake.events.spec import apply_spec, default_resolver, parse_spec
    from tests.integration.triggers_helpers import wait_until

    with anvil_node(genesis_ts=day_ts(DAY)) as node, database() as url, receiver() as rec:
        chains = write_chains_yaml(
            tmp_path / "chains.yaml", [node.url], confirmations=CONFIRMATIONS
        )
        monkeypatch.setenv("CHAINS_CONFIG", str(chains))
        monkeypatch.setenv("PORTFOLIOS_CONFIG", str(ROOT / "config" / "portfolios.yaml"))
        monkeypatch.setenv("CHAINLAKE_ACTION_SECRET_HOOK", rec.url + "/hook")
        with db.connection(url) as conn:
            apply_spec(conn, parse_spec(TRIGGERS, resolver=default_resolver()))
        f = Filler(node)
        f.deploy_emitter(day_ts(DAY, 600))
        for i in range(CONFIRMATIONS + 1):
            f.mine(day_ts(DAY, 700 + i))
        done = threading.Event()
        out: dict[str, Any] = {}
        deliverer = Deliverer(
            url=url, senders=default_senders(), secrets=Secrets(getenv={**os.environ}.get)
        )

        def run() -> None:
            out["report"] = serve(
                url,
                owner="fast-test",
                deliverer=deliverer,
                max_seconds=120,
                should_stop=done.is_set,
                heads=default_readers(),
                head_interval=0.1,
                log=lambda line: None,
            )

        t = threading.Thread(target=run)
        t.start()
        try:
            with db.connection(url, autocommit=True) as c:
                assert wait_until(lambda: live_evaluator(c) == "fast-test", 30)
            a = _transfer_block(f, day_ts(DAY, 800), salt=0)
            assert wait_until(lambda: len(rec.requests) == 1, 20)
        finally:
            done.set()
            t.join(60)
        (msg,) = rec.requests
        assert msg.headers["idempotency-key"].startswith(f"fast-transfer:{a}@0x")
        assert msg.headers["x-chainlake-phase"] == "unconfirmed"
        report = out["report"]
        assert report.heads is not None
        assert (report.heads.events, report.heads.fired, report.heads.deliveries_added) == (1, 1, 1)
        assert report.delivered is not None and report.delivered.succeeded == 1


def test_an_event_already_confirmed_is_not_a_head_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A head poll that comes after the confirmed pipeline brought the event (a slow poll, the
    pipeline on another node) leaves it to the confirmed evaluation: one firing, confirmed."""
    from chainlake.events import db, store
    from chainlake.events.evaluate import evaluate_batch
    from chainlake.events.head import default_readers
    from chainlake.events.spec import apply_spec, default_resolver, parse_spec

    with anvil_node(genesis_ts=day_ts(DAY)) as node, database() as url:
        chains = write_chains_yaml(
            tmp_path / "chains.yaml", [node.url], confirmations=CONFIRMATIONS
        )
        monkeypatch.setenv("CHAINS_CONFIG", str(chains))
        monkeypatch.setenv("PORTFOLIOS_CONFIG", str(ROOT / "config" / "portfolios.yaml"))
        monkeypatch.setenv("CHAINLAKE_ACTION_SECRET_HOOK", "http://127.0.0.1:9/hook")
        with db.connection(url) as conn:
            apply_spec(conn, parse_spec(TRIGGERS, resolver=default_resolver()))
        f = Filler(node)
        f.deploy_emitter(day_ts(DAY, 600))
        for i in range(CONFIRMATIONS + 1):
            f.mine(day_ts(DAY, 700 + i))
        (reader,) = default_readers()
        a = _transfer_block(f, day_ts(DAY, 800), salt=0)
        _, decoded = reader._read([f.head()])
        assert [e["id"] for e in decoded] == [a]
        with db.connection(url) as conn:
            store.insert_events(conn, decoded)  # the checkpoint not moved: a lagging view
        conn = db.connect(url)
        try:
            polled = reader.poll(conn)
        finally:
            conn.close()
        assert (polled.blocks_read, polled.events, polled.fired) == (CONFIRMATIONS, 0, 0)
        with db.connection(url) as conn:
            report = evaluate_batch(conn)
            keys = [r["id"] for r in conn.execute("SELECT id FROM deliveries ORDER BY id")]
        assert report.by_trigger == {"fast-transfer": 1, "slow-transfer": 1}
        assert len(keys) == 2 and keys[0].startswith(f"fast-transfer:{a}@0x")
        assert keys[0].endswith(":hook:confirmed") and keys[1] == f"slow-transfer:{a}:hook"


def test_head_reader_and_confirmed_evaluation_racing_count_each_firing_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head reader polls while the confirmed side inserts the same blocks' events (and
    moves the checkpoint) and evaluates them, as fast as both can: no deadlock, no error, and
    every event fires the fast trigger once, either unconfirmed then confirmed or confirmed
    only."""
    import threading
    import time

    from chainlake.events import db, store
    from chainlake.events.evaluate import evaluate_batch
    from chainlake.events.head import default_readers
    from chainlake.events.spec import apply_spec, default_resolver, parse_spec

    with anvil_node(genesis_ts=day_ts(DAY)) as node, database() as url:
        chains = write_chains_yaml(tmp_path / "chains.yaml", [node.url], confirmations=2)
        monkeypatch.setenv("CHAINS_CONFIG", str(chains))
        monkeypatch.setenv("PORTFOLIOS_CONFIG", str(ROOT / "config" / "portfolios.yaml"))
        monkeypatch.setenv("CHAINLAKE_ACTION_SECRET_HOOK", "http://127.0.0.1:9/hook")
        with db.connection(url) as conn:
            apply_spec(conn, parse_spec(TRIGGERS, resolver=default_resolver()))
        f = Filler(node)
        f.deploy_emitter(day_ts(DAY, 600))
        for i in range(3):
            f.mine(day_ts(DAY, 700 + i))
        (poller,) = default_readers()
        (decoder,) = default_readers()
        done = threading.Event()
        errors: list[BaseException] = []
        mined: list[int] = []

        def poll() -> None:
            conn = db.connect(url)
            try:
                while not done.is_set():
                    poller.poll(conn)
            except BaseException as e:
                errors.append(e)
            finally:
                conn.close()

        def confirm() -> None:
            seen = 0
            try:
                while not done.is_set() or seen < len(mined):
                    if seen == len(mined):
                        time.sleep(0.01)
                        continue
                    number = mined[seen]
                    blocks, decoded = decoder._read([number])
                    with db.connection(url) as conn:
                        store.insert_events(conn, decoded)
                        store.advance_checkpoint(conn, 31337, number, blocks[number])
                    with db.connection(url) as conn:
                        evaluate_batch(conn)
                    seen += 1
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=poll), threading.Thread(target=confirm)]
        for t in threads:
            t.start()
        try:
            for i in range(20):
                _transfer_block(f, day_ts(DAY, 800 + i), salt=i)
                mined.append(f.head())
        finally:
            done.set()
            for t in threads:
                t.join(120)
        assert not errors, errors
        with db.connection(url) as conn:
            evaluate_batch(conn)  # settles what the last poll left
            rows = conn.execute("SELECT id, phase, head_event FROM deliveries").fetchall()
            state = store.get_trigger_state(conn, "fast-transfer") or {}
            unsettled = db.scalar(
                conn, "SELECT count(*) FROM head_events WHERE status = 'unconfirmed'"
            )
        events = {f"31337-{n}-0" for n in mined}
        fast = [r for r in rows if r["id"].startswith("fast-transfer:")]
        by_event: dict[str, list[str]] = {}
        for r in fast:
            by_event.setdefault(r["head_event"].split("@")[0], []).append(r["phase"])
        assert set(by_event) == events
        assert all(
            sorted(p) in (["confirmed", "unconfirmed"], ["confirmed"]) for p in by_event.values()
        ), by_event
        assert state["fired_count"] == len(events)
        assert unsettled == 0
        assert sorted(r["id"] for r in rows if r["id"].startswith("slow-")) == sorted(
            f"slow-transfer:{e}:hook" for e in events
        )
