"""pending_actions_sensor: due deliveries -> deliver_actions_job runs. New deliveries are
requested once by their seq range; retries handed back to the queue, and deliveries whose
worker died, are requested again when due."""

import json
import time

import dagster as dg

from chainlake.events.feed import due_deliveries, plan_delivery_runs
from resources.postgres import PostgresResource

GRACE_SECONDS = 30.0


@dg.sensor(
    job_name="deliver_actions_job",
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Pending deliveries that are due -> delivery runs.",
)
def pending_actions_sensor(
    context: dg.SensorEvaluationContext, postgres: PostgresResource
) -> dg.SensorResult:
    """Request delivery runs for the due deliveries, waiting briefly for new ones first."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    with postgres.connection(autocommit=True) as conn:
        due = due_deliveries(conn, wait_seconds=postgres.notify_wait_seconds)
    runs, next_cursor = plan_delivery_runs(
        due, cursor, now=time.time(), grace_seconds=GRACE_SECONDS
    )
    requests = [
        dg.RunRequest(
            run_key=r.run_key,
            tags={"chainlake/deliveries": str(len(r.delivery_ids)), "chainlake/reason": r.reason},
        )
        for r in runs
    ]
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(next_cursor, sort_keys=True),
        skip_reason=None if requests else f"{len(due)} due, already requested",
    )
