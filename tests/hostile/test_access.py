"""A user's own database session against another user's rows (revision 0004's row security).

The database is set up as in production, not as a superuser (which bypasses row security): a
non-superuser engine role owns it, runs the migrations, adds the users (`chainlake users
add`), evaluates and delivers. Alice and Bob, each a login role, then connect as themselves:
whatever Alice sets, selects or updates, she never reads or changes a row of Bob's, cannot
write the shared events or the engine's tables, and cannot take over Bob's trigger id.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner
from psycopg import sql

from chainlake.actions.base import RetryPolicy, Secrets
from chainlake.actions.deliver import Deliverer, default_senders
from chainlake.events import db, store
from chainlake.events.agents import get_agent_mcp_token, new_key, set_agent_mcp_token
from chainlake.events.evaluate import evaluate_batch
from chainlake.events.spec import Resolver, apply_spec, parse_spec
from cli.main import main
from tests.integration.triggers_helpers import CHAIN, WALLET, feedback, receiver

pytestmark = pytest.mark.integration

SERVER = "postgresql://{role}@127.0.0.1:5432/{db}"
RESOLVER = Resolver({"devnet": CHAIN}, lambda name, cid: [WALLET])
# Every user-owned table, with how a row is tied to its owner's trigger or user.
OWNED = {
    "triggers": "id",
    "trigger_conditions": "trigger_id",
    "trigger_actions": "trigger_id",
    "trigger_state": "trigger_id",
    "deliveries": "trigger_id",
    "action_results": "trigger_id",
}


@dataclass
class Setup:
    engine: str  # the engine's URL
    alice: str  # Alice's URL (her own login role)
    bob: str
    nobody: str  # a login role no user maps
    ids: dict[str, str]  # username -> users.id
    roles: dict[str, str]  # username -> role name
    hook: str


def _admin() -> psycopg.Connection:
    return psycopg.connect(SERVER.format(role="postgres", db="postgres"), autocommit=True)


def _spec(user: str, trigger_id: str, hook: str) -> dict:
    return {
        "user": user,
        "triggers": [
            {
                "id": trigger_id, "chain": "devnet", "registry": "reputation",
                "conditions": [{"type": "score_threshold", "operator": "lt", "value": 30}],
                "actions": [{"name": "hook", "type": "rest", "url": hook, "max_attempts": 1}],
            }
        ],
    }  # fmt: skip


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    tag = uuid.uuid4().hex[:10]
    engine_role, dbname = f"cl_engine_{tag}", f"chainlake_test_access_{tag}"
    roles = {"alice": f"cl_alice_{tag}", "bob": f"cl_bob_{tag}"}
    nobody = f"cl_nobody_{tag}"
    with _admin() as a:
        a.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(engine_role)))
        a.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(nobody)))
        a.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(dbname), sql.Identifier(engine_role)
            )
        )
    engine = SERVER.format(role=engine_role, db=dbname)
    allow = pytest.MonkeyPatch()
    # the receivers of this module are on this machine: the operator allows it
    allow.setenv("CHAINLAKE_ACTION_ALLOW_HOSTS", "127.0.0.1,::1")
    try:
        db.migrate(engine, create=False)
        runner = CliRunner()
        for r in roles.values():
            out = runner.invoke(main, ["users", "add", r, "--no-password", "--url", engine])
            assert out.exit_code == 0, out.output
        with db.connection(engine) as c:
            ids = {
                name: one(c, "SELECT id FROM users WHERE db_role = %s", (r,))["id"]
                for name, r in roles.items()
            }
        with receiver(default=(500, {}, {"error": "down"})) as rec:
            # the engine, a non-superuser under FORCEd row security, applies, evaluates, delivers
            with db.connection(engine) as c:
                for name, r in roles.items():
                    apply_spec(c, parse_spec(_spec(r, f"{name}-t", rec.url), resolver=RESOLVER))
                store.insert_events(c, [feedback(5, score=3)])
                assert evaluate_batch(c).deliveries_added == 2
                store.set_checkpoint(c, CHAIN, 5, "0x05")
            report = Deliverer(
                url=engine,
                senders=default_senders(),
                secrets=Secrets(getenv=os.environ.get),
                policy=RetryPolicy(base_delay=0.01),
                job_id="test",
                workers=1,
            ).run()
            assert (report.claimed, report.failed) == (2, 1 + 1), report
            yield Setup(
                engine=engine,
                alice=SERVER.format(role=roles["alice"], db=dbname),
                bob=SERVER.format(role=roles["bob"], db=dbname),
                nobody=SERVER.format(role=nobody, db=dbname),
                ids=ids,
                roles=roles,
                hook=rec.url,
            )
    finally:
        allow.undo()
        with _admin() as a:
            a.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )
            for r in (*roles.values(), nobody, engine_role):
                a.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(r)))


@pytest.fixture
def alice(setup: Setup) -> Iterator[db.Conn]:
    conn = db.connect(setup.alice, autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def one(conn: db.Conn, query: str, params: Any = None) -> dict[str, Any]:
    """The first row of `query`, which must return one."""
    row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return row


def owned_rows(conn: db.Conn) -> dict[str, set[str]]:
    """The trigger each visible row of every user-owned table belongs to."""
    return {
        table: {r["t"] for r in conn.execute(
            sql.SQL("SELECT {} AS t FROM {}").format(sql.Identifier(col), sql.Identifier(table))
        ).fetchall()}
        for table, col in OWNED.items()
    }  # fmt: skip


def test_the_engine_sees_everything(setup: Setup) -> None:
    with db.connection(setup.engine) as c:
        assert owned_rows(c) == {t: {"alice-t", "bob-t"} for t in OWNED}
    # the hourly views are refreshed by their owner, through the same policies
    with db.connection(setup.engine, autocommit=True) as c:
        store.refresh_views(c)
        assert one(c, "SELECT sum(event_count) AS n FROM events_hourly")["n"] == 1
        assert one(c, "SELECT sum(total_executions) AS n FROM action_metrics_hourly")["n"] == 2


def test_users_add_refuses_in_one_line(setup: Setup) -> None:
    runner = CliRunner()
    cases = [
        (["Bad-Name"], setup.engine, "not a valid user name"),
        ([setup.roles["bob"]], setup.engine, "already exists"),
        (["pg_sneaky"], setup.engine, "not a valid user name"),
        # a user cannot add users: the role has no CREATEROLE, nor any right on `users`
        ([f"{setup.roles['alice']}_x"], setup.alice, "permission denied"),
    ]
    for args, url, expected in cases:
        r = runner.invoke(main, ["users", "add", *args, "--no-password", "--url", url])
        lines = r.output.strip().splitlines()
        assert r.exit_code == 1 and len(lines) == 1 and expected in lines[0], r.output


def test_a_user_reads_only_their_own_rows_whatever_they_set(setup: Setup, alice: db.Conn) -> None:
    mine = {t: {"alice-t"} for t in OWNED}
    assert owned_rows(alice) == mine
    # the old policies' setting, and every other way to claim Bob's id, change nothing
    alice.execute(sql.SQL("SET app.current_user_id = {}").format(sql.Literal(setup.ids["bob"])))
    assert owned_rows(alice) == mine
    alice.execute("SELECT set_config('app.current_user_id', %s, false)", (setup.ids["bob"],))
    assert owned_rows(alice) == mine
    # a temporary `users` (searched first) does not stand in for the real one
    alice.execute("CREATE TEMP TABLE users (id text, db_role text, is_active boolean)")
    alice.execute(
        "INSERT INTO users VALUES (%s, %s, true)", (setup.ids["bob"], setup.roles["alice"])
    )
    assert owned_rows(alice) == mine
    alice.execute("DROP TABLE pg_temp.users")
    # users: her own row only, so Bob's id cannot even be looked up
    assert [r["id"] for r in alice.execute("SELECT id FROM users").fetchall()] == [
        setup.ids["alice"]
    ]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        alice.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(setup.roles["bob"])))


def test_a_user_cannot_change_anothers_rows(setup: Setup, alice: db.Conn) -> None:
    bob_delivery = "bob-t:31337-5-0:hook"
    for stmt in (
        "UPDATE deliveries SET status = 'cancelled' WHERE id = %s",
        "UPDATE deliveries SET status = 'pending', attempts = 0 WHERE id = %s",
    ):
        assert alice.execute(stmt, (bob_delivery,)).rowcount == 0
    for stmt in (
        "UPDATE triggers SET enabled = false WHERE id = 'bob-t'",
        "UPDATE triggers SET user_id = %s WHERE id = 'bob-t'",
        "DELETE FROM triggers WHERE id = 'bob-t'",
        "UPDATE trigger_actions SET config = '{\"url\": \"http://evil\"}' WHERE trigger_id = 'bob-t'",
        "DELETE FROM trigger_conditions WHERE trigger_id = 'bob-t'",
        "DELETE FROM trigger_state WHERE trigger_id = 'bob-t'",
        "DELETE FROM agent_mcp_tokens",
    ):
        params = (setup.ids["alice"],) if "%s" in stmt else None
        assert alice.execute(stmt, params).rowcount == 0, stmt
    # rows for Bob, or on Bob's trigger, are refused outright
    for stmt, params in (
        ("INSERT INTO triggers (id, user_id, name, chain_id, registry) "
         "VALUES ('planted', %s, 'p', 31337, 'erc20')", (setup.ids["bob"],)),
        ("INSERT INTO trigger_actions (trigger_id, name, action_type, config) "
         "VALUES ('bob-t', 'x', 'rest', '{}')", None),
        ("INSERT INTO agent_mcp_tokens (agent_id, token_encrypted, user_id) "
         "VALUES (9, 'x', %s)", (setup.ids["bob"],)),
        ("UPDATE triggers SET user_id = %s WHERE id = 'alice-t'", (setup.ids["bob"],)),
    ):  # fmt: skip
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            alice.execute(stmt, params)
    with db.connection(setup.engine) as c:
        d = one(c, "SELECT status FROM deliveries WHERE id = %s", (bob_delivery,))
        t = one(c, "SELECT enabled, user_id FROM triggers WHERE id = 'bob-t'")
        conds = one(c, "SELECT count(*) AS n FROM trigger_conditions WHERE trigger_id = 'bob-t'")
        assert d["status"] == "failed" and t == {"enabled": True, "user_id": setup.ids["bob"]}
        assert conds["n"] == 1


def test_what_no_user_may_write(setup: Setup, alice: db.Conn) -> None:
    for stmt in (
        "INSERT INTO events (id, chain_id, registry, event_type, timestamp) "
        "VALUES ('x', 31337, 'analytics', 'AlertFired', 1)",
        "UPDATE events SET retracted_at = now()",
        "DELETE FROM events",
        "SELECT * FROM checkpoints",
        "UPDATE checkpoints SET last_block_number = 0",
        "INSERT INTO checkpoints VALUES (1, 1, 'x')",
        "SELECT * FROM evaluation_watermark",
        "UPDATE evaluation_watermark SET seq = 0",
        "SELECT * FROM events_hourly",
        "SELECT * FROM action_metrics_hourly",
        # the audit is the engine's; a delivery's target is not hers to repoint
        "UPDATE action_results SET error_message = 'x'",
        "DELETE FROM action_results",
        "UPDATE deliveries SET action_id = 1 WHERE id = 'alice-t:31337-5-0:hook'",
        "UPDATE deliveries SET context = '{}' WHERE id = 'alice-t:31337-5-0:hook'",
        # her identity is the engine's to change
        "UPDATE users SET db_role = 'postgres'",
        "INSERT INTO users (username, email, password_hash) VALUES ('z', 'z@z', '!')",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            alice.execute(stmt)
    # the shared chain data is readable
    assert one(alice, "SELECT count(*) AS n FROM events")["n"] == 1


def test_a_user_changes_their_own_rows(setup: Setup, alice: db.Conn) -> None:
    own = "alice-t:31337-5-0:hook"
    assert (
        alice.execute("UPDATE deliveries SET status = 'cancelled' WHERE id = %s", (own,)).rowcount
        == 1
    )
    assert store.replay_deliveries(alice, ids=[own], statuses=("cancelled",)) == [own]
    assert (
        alice.execute("UPDATE triggers SET description = 'mine' WHERE id = 'alice-t'").rowcount == 1
    )
    results = alice.execute("SELECT status FROM action_results WHERE delivery_id = %s", (own,))
    assert [r["status"] for r in results.fetchall()] == ["failed"]
    # her own agent token: hers alone; the engine's (operator's) token is not hers to read
    key = new_key()
    set_agent_mcp_token(alice, 7, "alice-token", key=key)
    with db.connection(setup.engine) as c:
        set_agent_mcp_token(c, 7, "operator-token", key=key)
        set_agent_mcp_token(c, 8, "operator-token-8", key=key)
    assert get_agent_mcp_token(alice, 7, key=key, user_id=setup.ids["alice"]) == "alice-token"
    rows = alice.execute("SELECT agent_id, user_id FROM agent_mcp_tokens").fetchall()
    assert rows == [{"agent_id": 7, "user_id": setup.ids["alice"]}]
    with db.connect(setup.bob, autocommit=True) as bob:
        assert one(bob, "SELECT count(*) AS n FROM agent_mcp_tokens")["n"] == 0
        assert get_agent_mcp_token(bob, 7, key=key) is None
    with db.connection(setup.engine) as c:
        # the engine uses the trigger owner's own token, else the operator's
        assert get_agent_mcp_token(c, 7, key=key, user_id=setup.ids["alice"]) == "alice-token"
        assert get_agent_mcp_token(c, 7, key=key, user_id=setup.ids["bob"]) == "operator-token"
        assert get_agent_mcp_token(c, 8, key=key, user_id=setup.ids["alice"]) == "operator-token-8"


def test_a_role_no_user_maps_sees_nothing(setup: Setup) -> None:
    with db.connect(setup.nobody, autocommit=True) as c:
        assert owned_rows(c) == {t: set() for t in OWNED}
        assert one(c, "SELECT count(*) AS n FROM events")["n"] == 0
        assert one(c, "SELECT count(*) AS n FROM users")["n"] == 0


def test_a_trigger_id_cannot_be_taken_over(setup: Setup, tmp_path: Path) -> None:
    """Applying a file that names Bob's trigger id, from the engine (`triggers apply` for
    another user) or from Alice's own session, is refused in one line; Bob's trigger stays."""
    hostile = _spec(setup.roles["alice"], "bob-t", "http://127.0.0.1:9/stolen")
    hostile["triggers"].insert(0, _spec("x", "alice-new", setup.hook)["triggers"][0])
    path = tmp_path / "takeover.yaml"
    path.write_text(yaml.safe_dump(hostile))
    env = {
        "CHAINS_CONFIG": str(Path(__file__).resolve().parents[2] / "config" / "chains.yaml"),
        "CHAINLAKE_ACTION_ALLOW_HOSTS": "127.0.0.1,::1",
    }
    for url in (setup.engine, setup.alice):
        r = CliRunner().invoke(main, ["triggers", "apply", str(path), "--url", url], env=env)
        assert r.exit_code == 1, r.output
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and "'bob-t'" in lines[0] and "another user" in lines[0], r.output
    with db.connection(setup.engine) as c:
        t = one(c, "SELECT user_id FROM triggers WHERE id = 'bob-t'")
        action = one(c, "SELECT config FROM trigger_actions WHERE trigger_id = 'bob-t'")
        assert t["user_id"] == setup.ids["bob"] and action["config"]["url"] == setup.hook
        # all or nothing: the file's other trigger was not applied either
        assert c.execute("SELECT 1 FROM triggers WHERE id = 'alice-new'").fetchone() is None
    # and her own file, from her own session, applies
    path.write_text(yaml.safe_dump(_spec(setup.roles["alice"], "alice-2", setup.hook)))
    r = CliRunner().invoke(main, ["triggers", "apply", str(path), "--url", setup.alice], env=env)
    assert r.exit_code == 0, r.output
    with db.connection(setup.engine) as c:
        row = one(c, "SELECT user_id FROM triggers WHERE id = 'alice-2'")
        assert row["user_id"] == setup.ids["alice"]
