"""Events, triggers, actions and their audit trail (as the 8004 API's PostgreSQL schema has them), with registries generalised.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS trigger AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE users (
    id            TEXT PRIMARY KEY DEFAULT gen_random_uuid()::text,
    username      TEXT UNIQUE NOT NULL,
    email         TEXT UNIQUE NOT NULL,
    -- '!' (no valid hash) for users created from config files: they cannot log in.
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_login_at TIMESTAMPTZ,
    is_active     BOOLEAN NOT NULL DEFAULT true
);
CREATE TRIGGER update_users_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

-- The seed fixed `registry` to the three 8004 registries with a CHECK; a reference table
-- lets ERC-20 transfers, analytics alerts (and later sources) sit beside them.
CREATE TABLE registries (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL
);
INSERT INTO registries (name, description) VALUES
    ('identity',   'ERC-8004 identity registry: agent registration, URI and metadata'),
    ('reputation', 'ERC-8004 reputation registry: feedback with score, tags and file'),
    ('validation', 'ERC-8004 validation registry: validation requests and responses'),
    ('erc20',      'ERC-20 Transfer events touching tracked wallets'),
    ('analytics',  'alerts fired by expressions over analytics tables (balances, risk)');

CREATE TABLE triggers (
    id               TEXT PRIMARY KEY DEFAULT gen_random_uuid()::text,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    description      TEXT,
    chain_id         INTEGER NOT NULL,
    registry         TEXT NOT NULL REFERENCES registries (name),
    enabled          BOOLEAN NOT NULL DEFAULT true,
    is_stateful      BOOLEAN NOT NULL DEFAULT false,
    -- A condition that holds on every block fires at most once per cooldown (chain time).
    cooldown_seconds INTEGER NOT NULL DEFAULT 0 CHECK (cooldown_seconds >= 0),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, name)
);
CREATE INDEX idx_triggers_user_id ON triggers (user_id);
CREATE INDEX idx_triggers_chain_registry_enabled ON triggers (chain_id, registry, enabled)
    WHERE enabled;
CREATE TRIGGER update_triggers_updated_at BEFORE UPDATE ON triggers
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

CREATE TABLE trigger_conditions (
    id             SERIAL PRIMARY KEY,
    trigger_id     TEXT NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    condition_type TEXT NOT NULL,
    field          TEXT NOT NULL,
    operator       TEXT NOT NULL,
    value          TEXT NOT NULL,
    config         JSONB,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_trigger_conditions_trigger_id ON trigger_conditions (trigger_id);

CREATE TABLE trigger_actions (
    id          SERIAL PRIMARY KEY,
    trigger_id  TEXT NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    -- Stable within a trigger: part of the idempotency key, so re-applying a file keeps it.
    name        TEXT NOT NULL,
    action_type TEXT NOT NULL
        CHECK (action_type IN ('telegram', 'rest', 'mcp', 'discord', 'email')),
    priority    INTEGER NOT NULL DEFAULT 1,
    config      JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (trigger_id, name)
);
CREATE INDEX idx_trigger_actions_trigger_id ON trigger_actions (trigger_id);

CREATE TABLE trigger_state (
    trigger_id   TEXT PRIMARY KEY REFERENCES triggers (id) ON DELETE CASCADE,
    state_data   JSONB NOT NULL,
    last_updated TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE events (
    id                TEXT PRIMARY KEY,  -- {chain_id}-{block_number}-{log_index}
    -- Insert order: the event sensor's cursor. Inserts are serialised (see
    -- events_serialise_inserts) so a committed seq is never overtaken by a smaller one.
    seq               BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    chain_id          INTEGER NOT NULL,
    block_number      BIGINT,
    block_hash        TEXT,
    transaction_hash  TEXT,
    log_index         INTEGER,
    registry          TEXT NOT NULL REFERENCES registries (name),
    event_type        TEXT NOT NULL,
    agent_id          BIGINT,
    timestamp         BIGINT NOT NULL,  -- block time, Unix seconds
    -- identity registry
    owner             TEXT,
    token_uri         TEXT,
    metadata_key      TEXT,
    metadata_value    TEXT,
    -- reputation registry
    client_address    TEXT,
    feedback_index    BIGINT,
    score             INTEGER,
    tag1              TEXT,
    tag2              TEXT,
    file_uri          TEXT,
    file_hash         TEXT,
    -- validation registry
    validator_address TEXT,
    request_hash      TEXT,
    response          INTEGER,
    response_uri      TEXT,
    response_hash     TEXT,
    tag               TEXT,
    -- erc20 transfers (amount in base units, exact)
    token_address     TEXT,
    from_address      TEXT,
    to_address        TEXT,
    amount            NUMERIC(78, 0),
    -- analytics alerts
    alert_id          TEXT,
    -- anything else the decoder or the alert carried
    data              JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- reorgs: a retracted event keeps its row (renamed to {id}@{block_hash}) and a
    -- retraction event (event_type 'retracted', retracts = that row) is inserted
    retracted_at      TIMESTAMPTZ,
    retracts          TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT events_onchain_fields CHECK (
        registry = 'analytics'
        OR (block_number IS NOT NULL AND block_hash IS NOT NULL
            AND transaction_hash IS NOT NULL AND log_index IS NOT NULL)
    )
);
CREATE INDEX idx_events_chain_id_created_at ON events (chain_id, created_at DESC);
CREATE INDEX idx_events_agent_id ON events (agent_id) WHERE agent_id IS NOT NULL;
CREATE INDEX idx_events_registry_type ON events (registry, event_type);
CREATE INDEX idx_events_client_address ON events (client_address)
    WHERE client_address IS NOT NULL;
CREATE INDEX idx_events_validator_address ON events (validator_address)
    WHERE validator_address IS NOT NULL;
CREATE INDEX idx_events_block_number ON events (chain_id, block_number);
CREATE INDEX idx_events_created_at ON events (created_at);

-- NOTIFY is a wake-up hint for the event sensor; the table stays the truth.
CREATE OR REPLACE FUNCTION notify_new_event() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('new_event', NEW.id);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER events_notify_trigger AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION notify_new_event();

-- One inserting transaction at a time, held to commit: identity values are then handed out in
-- commit order, and a reader that has seen seq N has seen every seq below N.
CREATE OR REPLACE FUNCTION events_serialise_inserts() RETURNS trigger AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('chainlake.events.insert'));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER events_serialise_inserts BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_serialise_inserts();

-- Events are immutable; the one change allowed is the retraction of a reorged event.
CREATE OR REPLACE FUNCTION events_immutable() RETURNS trigger AS $$
BEGIN
    IF OLD.retracted_at IS NULL AND NEW.retracted_at IS NOT NULL
       AND (to_jsonb(NEW) - 'id' - 'retracted_at') = (to_jsonb(OLD) - 'id' - 'retracted_at')
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'events are immutable (event %): only a retraction may change a row', OLD.id
        USING ERRCODE = 'check_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER events_immutable BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_immutable();

CREATE TABLE checkpoints (
    chain_id          INTEGER PRIMARY KEY,
    last_block_number BIGINT NOT NULL,
    last_block_hash   TEXT NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A delivery is one (trigger, event, action) match; its id is the idempotency key sent to the
-- receiver, and the primary key makes a second evaluation of the same event a no-op.
CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    trigger_id      TEXT REFERENCES triggers (id) ON DELETE CASCADE,
    event_id        TEXT REFERENCES events (id) ON DELETE CASCADE ON UPDATE CASCADE,
    action_id       INTEGER REFERENCES trigger_actions (id) ON DELETE SET NULL,
    action_type     TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'in_progress', 'succeeded', 'failed', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL CHECK (max_attempts >= 1),
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    locked_until    TIMESTAMPTZ,
    locked_by       TEXT,
    -- the fields a template may name, frozen when the trigger matched
    context         JSONB NOT NULL,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ
);
CREATE INDEX idx_deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX idx_deliveries_status ON deliveries (status);
CREATE INDEX idx_deliveries_event_id ON deliveries (event_id);
CREATE INDEX idx_deliveries_trigger_id ON deliveries (trigger_id);
CREATE TRIGGER update_deliveries_updated_at BEFORE UPDATE ON deliveries
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

CREATE OR REPLACE FUNCTION notify_new_delivery() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('new_delivery', NEW.id);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER deliveries_notify_trigger AFTER INSERT ON deliveries
    FOR EACH ROW EXECUTE FUNCTION notify_new_delivery();

-- One row per attempt.
CREATE TABLE action_results (
    id            TEXT PRIMARY KEY DEFAULT gen_random_uuid()::text,
    job_id        TEXT NOT NULL,  -- the Dagster run id (or 'cli' for a replay from the shell)
    delivery_id   TEXT REFERENCES deliveries (id) ON DELETE SET NULL,
    trigger_id    TEXT REFERENCES triggers (id) ON DELETE SET NULL,
    event_id      TEXT REFERENCES events (id) ON DELETE SET NULL ON UPDATE CASCADE,
    action_type   TEXT NOT NULL
        CHECK (action_type IN ('telegram', 'rest', 'mcp', 'discord', 'email')),
    status        TEXT NOT NULL CHECK (status IN ('success', 'failed', 'retrying')),
    executed_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    duration_ms   INTEGER,
    error_message TEXT,
    response_data JSONB,
    retry_count   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_action_results_trigger_id ON action_results (trigger_id);
CREATE INDEX idx_action_results_event_id ON action_results (event_id);
CREATE INDEX idx_action_results_delivery_id ON action_results (delivery_id);
CREATE INDEX idx_action_results_status ON action_results (status);
CREATE INDEX idx_action_results_executed_at ON action_results (executed_at DESC);
CREATE INDEX idx_action_results_action_type ON action_results (action_type);

-- MCP bearer tokens of agents, encrypted by the application (Fernet, key from the
-- environment); the database never sees the plaintext.
CREATE TABLE agent_mcp_tokens (
    agent_id        BIGINT PRIMARY KEY,
    token_encrypted BYTEA NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TRIGGER update_agent_mcp_tokens_updated_at BEFORE UPDATE ON agent_mcp_tokens
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

-- Seed 000's alerts: an expression over an analytics dataset, checked by the safe grammar
-- before it is saved; a firing becomes an event in the 'analytics' registry.
CREATE TABLE alerts (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    description       TEXT,
    dataset           TEXT NOT NULL,
    chain_id          INTEGER NOT NULL,
    expression        TEXT NOT NULL,
    parameters        JSONB NOT NULL DEFAULT '{}'::jsonb,
    is_active         BOOLEAN NOT NULL DEFAULT true,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_triggered_at TIMESTAMPTZ,
    trigger_count     INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER update_alerts_updated_at BEFORE UPDATE ON alerts
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

-- Row-level security: a session that sets app.current_user_id sees its own triggers only.
-- The engine connects as the tables' owner and is not subject to it.
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
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS alerts;
DROP TABLE IF EXISTS agent_mcp_tokens;
DROP TABLE IF EXISTS action_results;
DROP TABLE IF EXISTS deliveries;
DROP FUNCTION IF EXISTS notify_new_delivery();
DROP TABLE IF EXISTS checkpoints;
DROP TABLE IF EXISTS events;
DROP FUNCTION IF EXISTS events_immutable();
DROP FUNCTION IF EXISTS events_serialise_inserts();
DROP FUNCTION IF EXISTS notify_new_event();
DROP TABLE IF EXISTS trigger_state;
DROP TABLE IF EXISTS trigger_actions;
DROP TABLE IF EXISTS trigger_conditions;
DROP TABLE IF EXISTS triggers;
DROP TABLE IF EXISTS registries;
DROP TABLE IF EXISTS users;
DROP FUNCTION IF EXISTS update_updated_at_column();
"""


def upgrade() -> None:
    """Create the events schema."""
    op.execute(UPGRADE)


def downgrade() -> None:
    """Drop the events schema."""
    op.execute(DOWNGRADE)
