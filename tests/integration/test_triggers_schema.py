"""The events schema on a real PostgreSQL: migrations up and down, NOTIFY, immutability,
seq order under concurrent writers, retractions, row-level security, views, retention,
encrypted MCP tokens."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from click.testing import CliRunner
from triggers_helpers import CHAIN, SERVER, database, feedback, transfer

from chainlake.events import db, retract_blocks, store
from chainlake.events.agents import get_agent_mcp_token, new_key, set_agent_mcp_token
from chainlake.events.conditions import Action, Condition, Trigger
from cli.main import main

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with database() as u:
        yield u


@pytest.fixture
def conn(url: str) -> Iterator[psycopg.Connection]:
    c = db.connect(url)
    try:
        yield c
    finally:
        c.rollback()
        c.close()


def test_migrate_and_downgrade_through_the_cli() -> None:
    url = f"{SERVER}chainlake_test_cli_{uuid.uuid4().hex[:8]}"
    runner = CliRunner()
    try:
        r = runner.invoke(main, ["db", "migrate", "--url", url])
        assert r.exit_code == 0, r.output
        assert "created and migrated" in r.output and db.current_revision(url) == db.HEAD_REVISION
        r = runner.invoke(main, ["db", "downgrade", "--url", url, "--yes"])
        assert r.exit_code == 0, r.output
        assert db.current_revision(url) == f"{int(db.HEAD_REVISION) - 1:04d}"
        r = runner.invoke(main, ["db", "downgrade", "--url", url, "--revision", "base", "--yes"])
        assert r.exit_code == 0 and db.current_revision(url) is None
        with db.connection(url) as c:
            assert c.execute("SELECT to_regclass('events') AS t").fetchone()["t"] is None
        assert runner.invoke(main, ["db", "migrate", "--url", url]).exit_code == 0
        assert (
            runner.invoke(main, ["db", "current", "--url", url]).output.strip() == db.HEAD_REVISION
        )
    finally:
        db.drop_database(url)


def test_insert_is_idempotent_and_notifies(url: str) -> None:
    listener = db.connect(url, autocommit=True)
    listener.execute("LISTEN new_event")
    with db.connection(url) as c:
        added = store.insert_events(
            c, [feedback(100), feedback(100, log_index=1), transfer(101, 5)]
        )
    assert added == ["31337-100-0", "31337-100-1", "31337-101-0"]
    got = [n.payload for n in listener.notifies(timeout=2, stop_after=3)]
    assert got == added
    with db.connection(url) as c:
        assert store.insert_events(c, [feedback(100), feedback(102)]) == ["31337-102-0"]
        ev = store.get_event(c, "31337-101-0")
    assert ev["amount"] == 5 and ev["registry"] == "erc20" and ev["to_address"].startswith("0x7099")
    listener.close()


def test_events_are_immutable(url: str) -> None:
    with db.connection(url) as c:
        store.insert_events(c, [feedback(110)])
    with pytest.raises(psycopg.errors.CheckViolation, match="immutable"):
        with db.connection(url) as c:
            c.execute("UPDATE events SET score = 99 WHERE id = '31337-110-0'")


def test_seq_is_commit_ordered_under_concurrent_writers(url: str) -> None:
    """A reader that has seen seq N has seen every seq below N: a slow writer holding an early
    seq is never overtaken (the sensor's cursor relies on it)."""
    slow = db.connect(url)
    store.insert_events(slow, [feedback(120)])  # holds the insert lock, uncommitted
    done = threading.Event()

    def fast() -> None:
        with db.connection(url) as c:
            store.insert_events(c, [feedback(121)])
        done.set()

    t = threading.Thread(target=fast)
    t.start()
    time.sleep(0.3)
    assert not done.is_set(), "a second writer got past the first one's uncommitted insert"
    slow.commit()
    t.join(5)
    assert done.is_set()
    with db.connection(url) as c:
        rows = c.execute(
            "SELECT id, seq FROM events WHERE id IN ('31337-120-0', '31337-121-0') ORDER BY seq"
        ).fetchall()
    assert [r["id"] for r in rows] == ["31337-120-0", "31337-121-0"]
    slow.close()


def test_retract_blocks(url: str) -> None:
    with db.connection(url) as c:
        store.insert_events(c, [transfer(130, 7), transfer(130, 8, log_index=1), transfer(131, 9)])
        c.execute(
            "INSERT INTO users (id, username, email, password_hash) VALUES ('u', 'u', 'u@x', '!') ON CONFLICT DO NOTHING"
        )
        store.save_trigger(c, Trigger("tr", "t", CHAIN, "erc20", (Condition("amount_threshold", "amount", "gte", "0"),),
                                      (Action(0, "hook", "rest", {"url": "http://127.0.0.1:9"}),), user_id="u"))  # fmt: skip
        action_id = c.execute("SELECT id FROM trigger_actions WHERE trigger_id = 'tr'").fetchone()[
            "id"
        ]
        store.enqueue_deliveries(c, [{"id": "tr:31337-130-0:hook", "trigger_id": "tr", "event_id": "31337-130-0",
                                      "action_id": action_id, "action_type": "rest", "max_attempts": 3, "context": {}}])  # fmt: skip
    with db.connection(url) as c:
        ids = retract_blocks(c, CHAIN, [130, 999])
    h = f"0x{130:064x}"
    assert ids == [f"31337-130-0@{h}/retracted", f"31337-130-1@{h}/retracted"]
    with db.connection(url) as c:
        old = store.get_event(c, f"31337-130-0@{h}")
        assert old["retracted_at"] is not None and old["amount"] == 7
        r = store.get_event(c, ids[0])
        assert (r["event_type"], r["retracts"], r["registry"], r["amount"]) == (
            "retracted",
            f"31337-130-0@{h}",
            "erc20",
            7,
        )
        d = c.execute(
            "SELECT status, event_id FROM deliveries WHERE id = 'tr:31337-130-0:hook'"
        ).fetchone()
        assert d == {"status": "cancelled", "event_id": f"31337-130-0@{h}"}
        # the new canonical block's event takes the id; retracting again changes nothing
        assert store.insert_events(c, [{**transfer(130, 70), "block_hash": "0x" + "ee" * 32}]) == [
            "31337-130-0"
        ]
    with db.connection(url) as c:
        assert retract_blocks(c, CHAIN, [131]) == [f"31337-131-0@{f'0x{131:064x}'}/retracted"]
        assert retract_blocks(c, CHAIN, [131]) == []


def test_row_level_security_isolates_users(url: str) -> None:
    """Rows follow the login role (users.db_role), not a setting the session chooses; the
    hostile cases are in tests/hostile/test_access.py."""
    from chainlake.events.access import add_user

    role = f"chainlake_app_{uuid.uuid4().hex[:8]}"
    with db.connection(url) as c:
        a = add_user(c, role)
        b = store.ensure_user(c, "bob")
        for uid, tid in ((a, "alice-t"), (b, "bob-t")):
            store.save_trigger(c, Trigger(tid, tid, CHAIN, "reputation", (Condition("score_threshold", "score", "lt", "5"),),
                                          (Action(0, "hook", "rest", {"url": "u"}),), user_id=uid))  # fmt: skip
    try:
        app = psycopg.connect(db.libpq_url(url).replace("postgres@", f"{role}@"))
        with app:
            assert [r[0] for r in app.execute("SELECT id FROM triggers ORDER BY id")] == ["alice-t"]
            assert {r[0] for r in app.execute("SELECT trigger_id FROM trigger_actions")} == {
                "alice-t"
            }
            assert app.execute("DELETE FROM triggers WHERE id = 'bob-t'").rowcount == 0
            # the old policies' setting names nobody any more
            app.execute("SELECT set_config('app.current_user_id', %s, false)", (b,))
            assert [r[0] for r in app.execute("SELECT id FROM triggers ORDER BY id")] == ["alice-t"]
        app.close()
    finally:
        with db.connection(url) as c:
            c.execute("DELETE FROM users WHERE db_role = %s", (role,))
            c.execute(f'DROP ROLE "{role}"')


def test_views_retention_and_tokens(url: str) -> None:
    with db.connection(url) as c:
        store.insert_events(c, [feedback(140), feedback(141)])
        for ms in (10, 20, 30, 40, 1000):
            c.execute(
                "INSERT INTO action_results (job_id, action_type, status, duration_ms) VALUES ('j', 'rest', 'success', %s)",
                (ms,),
            )
        c.execute("INSERT INTO action_results (job_id, action_type, status, duration_ms, executed_at) "
                  "VALUES ('j', 'rest', 'failed', 5, now() - interval '91 days')")  # fmt: skip
        c.execute("UPDATE events SET retracted_at = now() WHERE false")  # the guard allows no-ops
    with db.connection(url, autocommit=True) as c:
        store.refresh_views(c)
        m = c.execute(
            "SELECT * FROM action_metrics_hourly WHERE hour = date_trunc('hour', now())"
        ).fetchone()
        assert m["success_count"] == 5 and 800 < m["p95_duration_ms"] <= 1000
        hourly = c.execute(
            "SELECT sum(event_count) AS n FROM events_hourly WHERE registry = 'reputation'"
        ).fetchone()
        assert hourly["n"] >= 2
    with db.connection(url) as c:
        # events read at the head: a settled one goes with the events' retention, an
        # unconfirmed one stays until it is settled
        for eid, status, age in (
            ("31337-1-0", "confirmed", 400),
            ("31337-2-0", "unconfirmed", 400),
        ):
            c.execute(
                "INSERT INTO head_events (id, block_hash, chain_id, block_number, event, status, "
                "seen_at, settled_at) VALUES (%s, '0x01', 31337, 1, '{}', %s, "
                "now() - make_interval(days => %s), CASE WHEN %s = 'unconfirmed' THEN NULL "
                "ELSE now() - make_interval(days => %s) END)",
                (eid, status, age, status, age),
            )
        deleted = store.apply_retention(c, now=dt.datetime.now(dt.UTC))
        assert deleted == {"events": 0, "action_results": 1, "head_events": 1}
        assert [r["id"] for r in c.execute("SELECT id FROM head_events")] == ["31337-2-0"]
        later = store.apply_retention(c, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=366))
        assert later["events"] >= 2
        key = new_key()
        set_agent_mcp_token(c, 7, "s3cret-token", key=key)
        raw = c.execute(
            "SELECT token_encrypted FROM agent_mcp_tokens WHERE agent_id = 7"
        ).fetchone()["token_encrypted"]
        assert b"s3cret" not in bytes(raw)
        assert get_agent_mcp_token(c, 7, key=key) == "s3cret-token"
        with pytest.raises(ValueError, match="does not decrypt"):
            get_agent_mcp_token(c, 7, key=new_key())
    r = CliRunner().invoke(
        main, ["triggers", "set-agent-token", "8", "--url", url, "--token", "t8"],
        env={"CHAINLAKE_SECRET_KEY": key},
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    with db.connection(url) as c:
        assert get_agent_mcp_token(c, 8, key=key) == "t8"


def test_the_events_table_matches_its_single_definition(url: str) -> None:
    """The migrated `events` table has exactly the columns of chainlake.events.columns, in its
    order, with its types and nullability: the migration's DDL against the one definition the
    insert and the Pandera model come from, not a copy of either."""
    from chainlake.events.columns import (
        DECODED_REGISTRIES,
        EVENT_COLUMNS,
        EVENTS_TABLE,
        ONCHAIN_REQUIRED,
    )

    with db.connection(url) as c:
        rows = c.execute(
            "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS sql, "
            "NOT a.attnotnull AS nullable FROM pg_attribute a "
            "WHERE a.attrelid = 'events'::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum"
        ).fetchall()
        registries = {r["name"] for r in c.execute("SELECT name FROM registries").fetchall()}
        onchain_check = c.execute(
            "SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint "
            "WHERE conname = 'events_onchain_fields'"
        ).fetchone()["d"]
    table = [(r["name"], r["sql"], r["nullable"]) for r in rows]
    assert table == [(col.name, col.sql, col.nullable) for col in EVENTS_TABLE]
    # what an insert writes is the table minus what the database fills
    assert list(EVENT_COLUMNS) == [
        r["name"] for r in rows if r["name"] not in ("seq", "retracted_at", "created_at")
    ]
    # every registry the decoder can write is a row of the reference table (a foreign key)
    assert set(DECODED_REGISTRIES) <= registries
    # the columns an on-chain event must carry are those the CHECK requires
    assert sorted(ONCHAIN_REQUIRED) == sorted(re.findall(r"\((\w+) IS NOT NULL\)", onchain_check))


def test_decoded_frame_matches_the_events_table(url: str) -> None:
    """The Pandera model of events/chain_events is checked against the DDL, not a copy of it."""
    from assets.events.chain_events import ChainEventsModel
    from chainlake.schema import polars_schema

    with db.connection(url) as c:
        cols = {
            r["column_name"]: r["data_type"]
            for r in c.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'events'"
            )
        }
    model = polars_schema(ChainEventsModel)
    assert set(model) <= set(cols)
    kinds = {"String": {"text", "numeric", "jsonb"}, "Int64": {"integer", "bigint"}}
    for name, dtype in model.items():
        assert cols[name] in kinds[str(dtype)], (name, dtype, cols[name])
    assert set(cols) - set(model) == {"seq", "alert_id", "retracted_at", "retracts", "created_at"}
