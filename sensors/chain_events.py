"""chain_events_sensor: every event past the cursor (a seq of `events`), in batches, each one
an evaluate_triggers_job run with a deterministic run key. NOTIFY only wakes the tick early.

While an evaluation run is still waiting to start (queued, or its process coming up), no new
one is requested: it evaluates every event present when it starts, so under load one run takes
what several would have, instead of a queue of runs each paying the start-up.

While a resident evaluator is live (see chainlake.events.resident) it evaluates every event as
it commits, and this sensor only follows the evaluation watermark with its cursor.
"""

import dagster as dg

from chainlake.events.feed import Batch, evaluated_up_to, next_event_batches
from chainlake.events.resident import live_evaluator
from resources.postgres import PostgresResource

BATCH_SIZE = 5000
MAX_BATCHES_PER_TICK = 4
JOB = "evaluate_triggers_job"
NOT_YET_STARTED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
]


def evaluate_run_request(batch: Batch) -> dg.RunRequest:
    """The run request that evaluates the triggers on one batch of events."""
    return dg.RunRequest(
        run_key=batch.run_key,
        run_config={
            "ops": {
                "evaluate_triggers": {
                    "config": {"after_seq": batch.after_seq, "up_to_seq": batch.up_to_seq}
                }
            }
        },
        tags={"chainlake/events": f"{batch.after_seq + 1}-{batch.up_to_seq}"},
    )


@dg.sensor(
    job_name=JOB,
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="New rows of the events table -> trigger evaluation runs.",
)
def chain_events_sensor(
    context: dg.SensorEvaluationContext, postgres: PostgresResource
) -> dg.SensorResult:
    """Request an evaluation run per batch of new events, unless runs are waiting to start or the
    resident evaluator is live; the cursor is the last event sequence number handed out.
    """
    after = int(context.cursor or 0)
    waiting = context.instance.get_runs_count(dg.RunsFilter(job_name=JOB, statuses=NOT_YET_STARTED))
    if waiting:
        return dg.SensorResult(
            skip_reason=f"{waiting} evaluation run(s) yet to start; they take every new event",
            cursor=str(after),
        )
    with postgres.connection(autocommit=True) as conn:
        live = live_evaluator(conn)
        if live:
            mark = max(after, evaluated_up_to(conn))
            return dg.SensorResult(
                skip_reason=f"resident evaluator (run {live}) is live; evaluated up to seq {mark}",
                cursor=str(mark),
            )
        batches = next_event_batches(
            conn,
            after,
            batch_size=BATCH_SIZE,
            max_batches=MAX_BATCHES_PER_TICK,
            wait_seconds=postgres.notify_wait_seconds,
        )
    if not batches:
        return dg.SensorResult(skip_reason=f"no events past seq {after}", cursor=str(after))
    return dg.SensorResult(
        run_requests=[evaluate_run_request(b) for b in batches], cursor=str(batches[-1].up_to_seq)
    )
