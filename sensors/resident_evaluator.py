"""resident_evaluator_sensor: keeps one resident evaluator run going (see
chainlake.events.resident). While it is live, chain_events_sensor launches no batch runs;
when it ends (its lifetime is up, it was terminated, its process died) this sensor launches
the next, and batch runs cover the gap."""

import time

import dagster as dg

from chainlake.events.resident import live_evaluator
from resources.postgres import PostgresResource

JOB = "resident_evaluator_job"
# Seconds after which a started run that still holds no lock is taken for dead.
START_GRACE = 180.0
ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.sensor(
    job_name=JOB,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps one resident trigger evaluator run live (off when "
    "CHAINLAKE_RESIDENT_EVALUATOR_SECONDS is 0).",
)
def resident_evaluator_sensor(
    context: dg.SensorEvaluationContext, postgres: PostgresResource
) -> dg.SensorResult:
    """Request a resident evaluator run when none is live, queued or starting (off when its lifetime
    is 0)."""
    lifetime = postgres.resident_lifetime_seconds()
    if lifetime <= 0:
        return dg.SensorResult(skip_reason="off: resident_evaluator_seconds is 0")
    with postgres.connection(autocommit=True) as conn:
        live = live_evaluator(conn)
    if live:
        return dg.SensorResult(skip_reason=f"run {live} is live")
    now = time.time()
    for run in context.instance.get_run_records(dg.RunsFilter(job_name=JOB, statuses=ACTIVE)):
        status = run.dagster_run.status
        started = run.start_time or run.create_timestamp.timestamp()
        # a run still waiting in the queue will start; a started run gets a grace period to
        # take the lock, after which it is taken for dead (run monitoring marks it later)
        if status != dg.DagsterRunStatus.STARTED or now - started < START_GRACE:
            return dg.SensorResult(skip_reason=f"run {run.dagster_run.run_id} is {status.value}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"resident-evaluator-{int(now)}",
                run_config={"ops": {"serve_triggers": {"config": {"max_seconds": lifetime}}}},
            )
        ]
    )
