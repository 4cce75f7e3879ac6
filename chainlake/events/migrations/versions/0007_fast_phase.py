"""Two-phase alerts: a trigger with `phase: fast` fires on events read at the chain's head
(0 confirmations) and its deliveries are followed by a confirmed or a retracted message.

- `triggers.phase`: 'confirmed' (every trigger so far: events of confirmed blocks only) or
  'fast'.
- `head_events`: the events of interest decoded from blocks past the confirmed head, keyed by
  event id and block hash (a reorg at the head can put another block, with a log at the same
  index, at the same height). `status` moves once, from 'unconfirmed' to 'confirmed' (the same
  event, same block hash, reached `events` through the confirmed pipeline) or 'retracted' (its
  block left the chain).
- `head_blocks`: the hashes of the unconfirmed blocks the head reader has read, per chain and
  height, so a block replaced at the head is noticed.
- `deliveries.phase` ('unconfirmed' | 'confirmed' | 'retracted'; NULL for a trigger without
  `phase: fast`), `deliveries.head_event` (`{event id}@{block hash}`: an unconfirmed event is
  not a row of `events`, so `event_id` stays NULL until it is confirmed) and
  `deliveries.follows` (the delivery a follow-up waits for: a confirmed or retracted message is
  never sent before the unconfirmed one it follows is settled). `action_results.phase` keeps
  the phase in the audit row of every attempt.

Both new tables are the engine's only (row security as revision 0004 sets it for checkpoints).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PHASES = "'unconfirmed', 'confirmed', 'retracted'"
ENGINE_ONLY = ("head_events", "head_blocks")

UPGRADE = rf"""
ALTER TABLE triggers ADD COLUMN phase TEXT NOT NULL DEFAULT 'confirmed'
    CHECK (phase IN ('confirmed', 'fast'));

CREATE TABLE head_events (
    id           TEXT NOT NULL,  -- {{chain_id}}-{{block_number}}-{{log_index}}, as in events
    block_hash   TEXT NOT NULL,
    seq          BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    chain_id     INTEGER NOT NULL,
    block_number BIGINT NOT NULL,
    -- the event as the decoder made it (the columns of `events`)
    event        JSONB NOT NULL,
    status       TEXT NOT NULL DEFAULT 'unconfirmed'
        CHECK (status IN ('unconfirmed', 'confirmed', 'retracted')),
    seen_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    settled_at   TIMESTAMPTZ,
    PRIMARY KEY (id, block_hash)
);
CREATE INDEX idx_head_events_unconfirmed ON head_events (chain_id, block_number)
    WHERE status = 'unconfirmed';

CREATE TABLE head_blocks (
    chain_id     INTEGER NOT NULL,
    block_number BIGINT NOT NULL,
    block_hash   TEXT NOT NULL,
    seen_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, block_number)
);

ALTER TABLE deliveries ADD COLUMN phase TEXT CHECK (phase IN ({PHASES})),
    ADD COLUMN head_event TEXT,
    ADD COLUMN follows TEXT;
CREATE INDEX idx_deliveries_head_event ON deliveries (head_event) WHERE head_event IS NOT NULL;
ALTER TABLE action_results ADD COLUMN phase TEXT CHECK (phase IN ({PHASES}));
"""


def _engine_only() -> str:
    out = []
    for table in ENGINE_ONLY:
        out += [
            f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;",
            f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY;",
            f"CREATE POLICY {table}_engine ON {table} FOR ALL "
            "USING ((SELECT chainlake_is_engine())) WITH CHECK ((SELECT chainlake_is_engine()));",
            f"REVOKE ALL ON {table} FROM PUBLIC;",
        ]
    return "\n".join(out)


DOWNGRADE = """
ALTER TABLE action_results DROP COLUMN phase;
DROP INDEX IF EXISTS idx_deliveries_head_event;
ALTER TABLE deliveries DROP COLUMN follows, DROP COLUMN head_event, DROP COLUMN phase;
DROP TABLE head_blocks;
DROP TABLE head_events;
ALTER TABLE triggers DROP COLUMN phase;
"""


def upgrade() -> None:
    """Add the trigger phase, the head tables and the phase columns of deliveries."""
    op.execute(UPGRADE)
    op.execute(_engine_only())


def downgrade() -> None:
    """Drop them again (the fast deliveries' phase is lost; their rows stay)."""
    op.execute(DOWNGRADE)
