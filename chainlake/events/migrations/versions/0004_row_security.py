"""Row-level security keyed on the database role, not on a setting a session can change.

Revision 0001's policies compared `user_id` with `current_setting('app.current_user_id')`,
which any session may set to any value, and covered the trigger tables only. From here:

- A user is a PostgreSQL login role, named by `users.db_role` (unique). `chainlake_user_id()`
  maps `current_user` to that user's id (NULL for a role no active user row names); nothing
  a session can SET changes `current_user` to another user's role.
- The engine is the role that owns the tables (whoever runs `chainlake db migrate`) and every
  role that is a member of it (`chainlake_is_engine()`); a superuser bypasses row security
  anyway. Row security is FORCEd on every table below, so even the owner goes through the
  policies: the engine's are explicit `*_engine` policies, not an implicit exemption.
- A user sees and changes only the rows of their own triggers (with their conditions, actions
  and state), alerts and agent MCP tokens; sees and may cancel or replay (status and schedule
  columns only) the deliveries of their triggers; reads the audit rows (`action_results`) of
  their triggers and cannot change them; reads `events` (shared chain data) and cannot write
  it; sees their own `users` row only and cannot change it. `checkpoints`,
  `evaluation_watermark` and the hourly materialised views are the engine's only.
- The privileges go to PUBLIC and the policies decide the rows: a role that no `users` row
  names sees no row of any table (the policies all need a user id or the engine), and a user's
  role holds no grant of its own, so dropping it needs no REVOKE.

Both helper functions have SQL-standard bodies (`RETURN ...`), parsed when they are created:
the tables they read are bound then, so a session's `search_path` or a temporary table named
`users` cannot stand in for them.

`agent_mcp_tokens` gains `user_id` (NULL: the operator's token for the agent, used by every
trigger that has no token of its own for it); a token is unique per (agent, user).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Tables whose rows belong to a user, through their own user_id or their trigger's.
OWNER_TABLES = (
    "triggers",
    "trigger_conditions",
    "trigger_actions",
    "trigger_state",
    "alerts",
    "deliveries",
    "action_results",
    "agent_mcp_tokens",
)
ENGINE_TABLES = ("checkpoints", "evaluation_watermark")
ALL_TABLES = ("users", "events", *OWNER_TABLES, *ENGINE_TABLES)
OLD_POLICIES = {
    "triggers": "triggers_user_isolation",
    "trigger_conditions": "trigger_conditions_user_isolation",
    "trigger_actions": "trigger_actions_user_isolation",
    "trigger_state": "trigger_state_user_isolation",
    "alerts": "alerts_user_isolation",
}
# A row whose trigger belongs to the session's user.
OWN_TRIGGER = (
    "EXISTS (SELECT 1 FROM triggers t WHERE t.id = trigger_id "
    "AND t.user_id = (SELECT chainlake_user_id()))"
)
OWN_ROW = "user_id = (SELECT chainlake_user_id())"

UPGRADE = r"""
ALTER TABLE users ADD COLUMN db_role TEXT UNIQUE;

-- True for the tables' owner and the roles that are members of it: the engine.
CREATE FUNCTION chainlake_is_engine() RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN pg_has_role(
        current_user,
        (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'users'::regclass),
        'MEMBER'
    );

-- The id of the active user whose login role this session runs as, else NULL.
CREATE FUNCTION chainlake_user_id() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (SELECT u.id FROM users u WHERE u.db_role = current_user::text AND u.is_active);

ALTER TABLE agent_mcp_tokens ADD COLUMN user_id TEXT REFERENCES users (id) ON DELETE CASCADE;
ALTER TABLE agent_mcp_tokens ALTER COLUMN user_id SET DEFAULT chainlake_user_id();
ALTER TABLE agent_mcp_tokens DROP CONSTRAINT agent_mcp_tokens_pkey;
ALTER TABLE agent_mcp_tokens ADD CONSTRAINT agent_mcp_tokens_agent_user
    UNIQUE NULLS NOT DISTINCT (agent_id, user_id);
"""


def _policies() -> str:
    out: list[str] = []
    for table, policy in OLD_POLICIES.items():
        out.append(f"DROP POLICY IF EXISTS {policy} ON {table};")
    for table in ALL_TABLES:
        out.append(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;")
        out.append(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY;")
        out.append(
            f"CREATE POLICY {table}_engine ON {table} FOR ALL "
            "USING ((SELECT chainlake_is_engine())) WITH CHECK ((SELECT chainlake_is_engine()));"
        )
        out.append(f"REVOKE ALL ON {table} FROM PUBLIC;")
    owner_check = {
        "triggers": OWN_ROW,
        "alerts": OWN_ROW,
        "agent_mcp_tokens": OWN_ROW,
    }
    for table in OWNER_TABLES:
        check = owner_check.get(table, OWN_TRIGGER)
        out.append(
            f"CREATE POLICY {table}_owner ON {table} FOR ALL USING ({check}) WITH CHECK ({check});"
        )
    out += [
        "CREATE POLICY users_self ON users FOR SELECT USING (db_role = current_user::text);",
        "CREATE POLICY events_read ON events FOR SELECT "
        "USING ((SELECT chainlake_user_id()) IS NOT NULL);",
        "GRANT SELECT ON users, events, registries, action_results TO PUBLIC;",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON triggers, trigger_conditions, trigger_actions, "
        "trigger_state, alerts, agent_mcp_tokens TO PUBLIC;",
        "GRANT SELECT ON deliveries TO PUBLIC;",
        # cancel and replay: the status and the schedule, never what or where to deliver
        "GRANT UPDATE (status, attempts, next_attempt_at, locked_until, locked_by, last_error) "
        "ON deliveries TO PUBLIC;",
        "GRANT USAGE ON SEQUENCE trigger_conditions_id_seq, trigger_actions_id_seq TO PUBLIC;",
        "REVOKE ALL ON events_hourly, action_metrics_hourly FROM PUBLIC;",
    ]
    return "\n".join(out)


DOWNGRADE = r"""
ALTER TABLE agent_mcp_tokens DROP CONSTRAINT agent_mcp_tokens_agent_user;
DELETE FROM agent_mcp_tokens WHERE user_id IS NOT NULL;
ALTER TABLE agent_mcp_tokens DROP COLUMN user_id;
ALTER TABLE agent_mcp_tokens ADD PRIMARY KEY (agent_id);

ALTER TABLE triggers ENABLE ROW LEVEL SECURITY;
CREATE POLICY triggers_user_isolation ON triggers FOR ALL
    USING (user_id = current_setting('app.current_user_id', true));
ALTER TABLE trigger_conditions ENABLE ROW LEVEL SECURITY;
CREATE POLICY trigger_conditions_user_isolation ON trigger_conditions FOR ALL
    USING (EXISTS (SELECT 1 FROM triggers t WHERE t.id = trigger_id));
ALTER TABLE trigger_actions ENABLE ROW LEVEL SECURITY;
CREATE POLICY trigger_actions_user_isolation ON trigger_actions FOR ALL
    USING (EXISTS (SELECT 1 FROM triggers t WHERE t.id = trigger_id));
ALTER TABLE trigger_state ENABLE ROW LEVEL SECURITY;
CREATE POLICY trigger_state_user_isolation ON trigger_state FOR ALL
    USING (EXISTS (SELECT 1 FROM triggers t WHERE t.id = trigger_id));
ALTER TABLE alerts ENABLE ROW LEVEL SECURITY;
CREATE POLICY alerts_user_isolation ON alerts FOR ALL
    USING (user_id = current_setting('app.current_user_id', true));

DROP FUNCTION chainlake_user_id();
DROP FUNCTION chainlake_is_engine();
ALTER TABLE users DROP COLUMN db_role;
"""


def _undo_policies() -> str:
    out: list[str] = [
        "REVOKE ALL ON SEQUENCE trigger_conditions_id_seq, trigger_actions_id_seq FROM PUBLIC;",
        "REVOKE ALL ON registries FROM PUBLIC;",
        "DROP POLICY IF EXISTS users_self ON users;",
        "DROP POLICY IF EXISTS events_read ON events;",
    ]
    for table in OWNER_TABLES:
        out.append(f"DROP POLICY IF EXISTS {table}_owner ON {table};")
    for table in ALL_TABLES:
        out.append(f"DROP POLICY IF EXISTS {table}_engine ON {table};")
        out.append(f"REVOKE ALL ON {table} FROM PUBLIC;")
        out.append(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;")
        out.append(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;")
    return "\n".join(out)


def upgrade() -> None:
    """Add the role-keyed functions and columns, then the policies of every table."""
    op.execute(UPGRADE)
    op.execute(_policies())


def downgrade() -> None:
    """Drop this revision's policies, then go back to the setting-keyed policies of 0001."""
    op.execute(_undo_policies())
    op.execute(DOWNGRADE)
