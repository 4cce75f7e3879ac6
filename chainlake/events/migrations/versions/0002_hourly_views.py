"""Hourly aggregates of events and of action attempts (the 8004 API's views, without TimescaleDB).

Both are materialised views refreshed by the maintenance schedule; the unique indexes let
`REFRESH MATERIALIZED VIEW CONCURRENTLY` run while readers use them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- Bucketed by block time, not insert time: a backfill of last month lands in last month.
CREATE MATERIALIZED VIEW events_hourly AS
SELECT
    date_trunc('hour', to_timestamp(timestamp)) AS hour,
    chain_id,
    registry,
    event_type,
    count(*) FILTER (WHERE retracted_at IS NULL) AS event_count,
    count(*) FILTER (WHERE retracted_at IS NOT NULL) AS retracted_count
FROM events
GROUP BY 1, 2, 3, 4
WITH DATA;
CREATE UNIQUE INDEX events_hourly_key ON events_hourly (hour, chain_id, registry, event_type);

CREATE MATERIALIZED VIEW action_metrics_hourly AS
SELECT
    date_trunc('hour', executed_at) AS hour,
    action_type,
    count(*) AS total_executions,
    count(*) FILTER (WHERE status = 'success') AS success_count,
    count(*) FILTER (WHERE status = 'failed') AS failure_count,
    count(*) FILTER (WHERE status = 'retrying') AS retry_count,
    avg(duration_ms)::double precision AS avg_duration_ms,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_duration_ms
FROM action_results
GROUP BY 1, 2
WITH DATA;
CREATE UNIQUE INDEX action_metrics_hourly_key ON action_metrics_hourly (hour, action_type);
"""

DOWNGRADE = r"""
DROP MATERIALIZED VIEW IF EXISTS action_metrics_hourly;
DROP MATERIALIZED VIEW IF EXISTS events_hourly;
"""


def upgrade() -> None:
    """Create the hourly views."""
    op.execute(UPGRADE)


def downgrade() -> None:
    """Drop the hourly views."""
    op.execute(DOWNGRADE)
