"""Slack as an action type: `trigger_actions.action_type` and `action_results.action_type`
accept 'slack' beside the other channels.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TYPES_BEFORE = "'telegram', 'rest', 'mcp', 'discord', 'email'"
TYPES_AFTER = TYPES_BEFORE + ", 'slack'"
TABLES = ("trigger_actions", "action_results")


def _check(types: str) -> None:
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT {table}_action_type_check, "
            f"ADD CONSTRAINT {table}_action_type_check CHECK (action_type IN ({types}))"
        )


def upgrade() -> None:
    """Allow 'slack' in both action type columns."""
    _check(TYPES_AFTER)


def downgrade() -> None:
    """Refuse 'slack' again (fails, naming the constraint, while a Slack row exists)."""
    _check(TYPES_BEFORE)
