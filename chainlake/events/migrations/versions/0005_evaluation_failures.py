"""Evaluation failures: an event a trigger could not be evaluated on, with the error.

Before this revision an exception while evaluating one event (an unexpected value in its data,
a bug in a condition) rolled back the whole batch, so the evaluation watermark never moved past
that event and no later event of any trigger was evaluated again. From here such an event is
recorded here, per trigger, and evaluation goes on with the others; `chainlake triggers
failures` lists the rows and `chainlake triggers reevaluate EVENT_ID` evaluates the event
again (after a fix), which resolves the row.

Row security follows revision 0004: the engine reads and writes every row; a user reads the
failures of their own triggers and changes none.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OWN_TRIGGER = (
    "EXISTS (SELECT 1 FROM triggers t WHERE t.id = trigger_id "
    "AND t.user_id = (SELECT chainlake_user_id()))"
)

UPGRADE = rf"""
CREATE TABLE evaluation_failures (
    -- follows the event when a reorg renames it, goes with it when retention deletes it
    event_id    TEXT NOT NULL REFERENCES events (id) ON UPDATE CASCADE ON DELETE CASCADE,
    trigger_id  TEXT NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    error       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    failed_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- set when a re-evaluation went through; the row stays as a record
    resolved_at TIMESTAMPTZ,
    PRIMARY KEY (event_id, trigger_id)
);
CREATE INDEX evaluation_failures_open ON evaluation_failures (seq) WHERE resolved_at IS NULL;

ALTER TABLE evaluation_failures ENABLE ROW LEVEL SECURITY;
ALTER TABLE evaluation_failures FORCE ROW LEVEL SECURITY;
CREATE POLICY evaluation_failures_engine ON evaluation_failures FOR ALL
    USING ((SELECT chainlake_is_engine())) WITH CHECK ((SELECT chainlake_is_engine()));
CREATE POLICY evaluation_failures_owner ON evaluation_failures FOR SELECT USING ({OWN_TRIGGER});
REVOKE ALL ON evaluation_failures FROM PUBLIC;
GRANT SELECT ON evaluation_failures TO PUBLIC;
"""  # noqa: S608 - only OWN_TRIGGER, a constant above, is interpolated


def upgrade() -> None:
    """Create the evaluation failures table with its row security."""
    op.execute(UPGRADE)


def downgrade() -> None:
    """Drop the evaluation failures table."""
    op.execute("DROP TABLE IF EXISTS evaluation_failures;")
