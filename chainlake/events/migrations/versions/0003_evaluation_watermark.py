"""The evaluation watermark: every event up to this seq has been evaluated against the triggers.

Evaluation runs may start out of order (the run queue launches several at once); each one
evaluates everything past the watermark up to its own batch's end, under this row's lock, so
no event is skipped and none is evaluated twice, whatever the order the runs execute in.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the evaluation watermark, starting where the triggers' cursors got to."""
    op.execute(
        r"""
CREATE TABLE evaluation_watermark (
    singleton  BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    seq        BIGINT NOT NULL DEFAULT 0 CHECK (seq >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Databases evaluated before this revision: their triggers' own cursors say how far they got.
INSERT INTO evaluation_watermark (seq)
SELECT coalesce(min((state_data->>'last_seq')::bigint), 0) FROM trigger_state;
"""
    )


def downgrade() -> None:
    """Drop the evaluation watermark."""
    op.execute("DROP TABLE IF EXISTS evaluation_watermark;")
