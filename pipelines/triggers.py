"""The trigger engine's jobs, schedules and sensors. Wiring only: the ops
below call `chainlake.events` and `chainlake.actions`, where the logic and its tests live.

    events inserted --NOTIFY/cursor--> chain_events_sensor --> evaluate_triggers_job
    events inserted --NOTIFY--> resident_evaluator_job (kept live by resident_evaluator_sensor;
                                chain_events_sensor stands aside while it is); its head
                                thread reads each chain's head for `phase: fast` triggers
    pending deliveries --NOTIFY/cursor--> pending_actions_sensor --> deliver_actions_job
    events_retention_schedule (daily) / event_views_schedule (hourly) --> events_maintenance_job
"""

import datetime as dt
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from assets.events.chain_events import chain_events
from resources.notifiers import NotifiersResource
from resources.postgres import PostgresResource
from sensors.chain_events import chain_events_sensor
from sensors.new_blocks import new_block_sensor
from sensors.pending_actions import pending_actions_sensor
from sensors.resident_evaluator import resident_evaluator_sensor

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )


class EvaluateConfig(dg.Config):
    """Run config of `evaluate_triggers`: the batch of events to evaluate and whether to deliver."""

    after_seq: int = Field(description="The batch the sensor saw: events with seq above this ...")
    up_to_seq: int = Field(
        description="... up to this one (inclusive). The run evaluates every event not yet "
        "evaluated up to here (an earlier batch whose run has not started yet included)."
    )
    catch_up: bool = Field(
        default=True,
        description="Evaluate every event present when the run starts, past up_to_seq too "
        "(the sensor requests no new run while one is waiting to start).",
    )
    deliver_inline: bool = Field(
        default=True,
        description="Deliver the new matches in this run, right after evaluating (one run "
        "launch per event instead of two). They are created leased to this run; what it does "
        "not finish (retries handed back, a crash) goes to pending_actions_sensor.",
    )


def _deliverer(
    context: dg.OpExecutionContext, postgres: PostgresResource, notifiers: NotifiersResource
):  # -> chainlake.actions.deliver.Deliverer, imported lazily with the senders
    from chainlake.actions.deliver import Deliverer
    from chainlake.events.agents import agent_resolver

    resolver = agent_resolver(lambda: postgres.connect(), key=postgres.fernet_key())
    return Deliverer(
        url=postgres.database_url(),
        senders=notifiers.senders(resolver),
        secrets=notifiers.secrets(),
        policy=notifiers.retry_policy(),
        job_id=context.run_id,
        max_inline_wait=notifiers.max_inline_wait_seconds,
        workers=notifiers.workers,
        http_timeout=notifiers.http_timeout_seconds,
    )


@dg.op(
    description="Evaluate every enabled trigger against a batch of events; matches become "
    "deliveries in the same transaction as the trigger state they change, delivered here "
    "unless deliver_inline is off."
)
def evaluate_triggers(
    context: dg.OpExecutionContext,
    config: EvaluateConfig,
    postgres: PostgresResource,
    notifiers: NotifiersResource,
) -> dg.Output[dict]:
    """Evaluate the triggers on the batch's events (or every event not yet evaluated) and, when
    `deliver_inline`, deliver the matches in this run."""
    from chainlake.events.evaluate import evaluate_batch

    owner = context.run_id if config.deliver_inline else None
    with postgres.connection() as conn:
        report = evaluate_batch(
            conn, up_to_seq=None if config.catch_up else config.up_to_seq, claim_for=owner
        )
    span = f"{report.first_seq}..{report.last_seq}" if report.events else "none (already done)"
    context.log.info(
        f"batch {config.after_seq + 1}..{config.up_to_seq}: evaluated events {span}: "
        f"{report.fired} firing(s), {report.deliveries_added} new deliveries"
    )
    summary: dict[str, int] = {
        "events": report.events,
        "fired": report.fired,
        "deliveries_added": report.deliveries_added,
        "failed_evaluations": len(report.failures),
    }
    # an event a trigger could not evaluate was skipped and recorded, not retried here
    failed_lines = [
        f"event {f.event_id} trigger {f.trigger_id}: {f.error}" for f in report.failures
    ]
    for line in failed_lines:
        context.log.error(
            f"evaluation failed, skipped ({line}); see `chainlake triggers failures`, "
            "re-evaluate with `chainlake triggers reevaluate`"
        )
    if owner is not None and report.delivery_ids:
        delivered = _deliverer(context, postgres, notifiers).run(
            ids=list(report.delivery_ids), owner=owner
        )
        for line in delivered.errors:
            context.log.warning(line)
        summary.update(
            succeeded=delivered.succeeded, failed=delivered.failed, requeued=delivered.requeued
        )
    metadata: dict[str, Any] = {**summary, "by_trigger": report.by_trigger}
    if failed_lines:
        metadata["failed_evaluations_detail"] = dg.MetadataValue.md(
            "\n".join(f"- {line}" for line in failed_lines[:50])
        )
    return dg.Output(summary, metadata=metadata)


class ResidentConfig(dg.Config):
    """Run config of `serve_triggers`: how long the resident evaluator lives and how it waits."""

    max_seconds: int = Field(
        default=3600, description="Lifetime of this run; resident_evaluator_sensor starts the next."
    )
    idle_wait_seconds: float = Field(
        default=1.0, description="Longest wait on NOTIFY before looking at the table anyway."
    )
    head_interval_seconds: float = Field(
        default=0.25,
        description="How often each chain's head is polled for the triggers with `phase: fast` "
        "(0: not at all; fast triggers then fire at confirmation only).",
    )


@dg.op(
    description="Evaluate triggers as events commit (LISTEN new_event), for max_seconds; "
    "deliveries are made by threads of this run while evaluation goes on."
)
def serve_triggers(
    context: dg.OpExecutionContext,
    config: ResidentConfig,
    postgres: PostgresResource,
    notifiers: NotifiersResource,
) -> dg.Output[dict]:
    """Run the resident evaluator until `max_seconds` pass; returns its report."""
    from chainlake.events.head import default_readers
    from chainlake.events.resident import serve

    heads = []
    if config.head_interval_seconds > 0:
        try:
            heads = default_readers()
        except Exception as e:  # a broken chains.yaml must not stop the confirmed triggers
            context.log.error(f"no head reader for fast triggers: {type(e).__name__}: {e}")
    report = serve(
        postgres.migrated_url(),
        owner=context.run_id,
        deliverer=_deliverer(context, postgres, notifiers),
        max_seconds=config.max_seconds,
        idle_wait_seconds=config.idle_wait_seconds,
        log=context.log.info,
        heads=heads,
        head_interval=config.head_interval_seconds,
    )
    summary = report.summary() if report else {"events": 0, "skipped": 1}
    return dg.Output(dict(summary), metadata=dict(summary))


class DeliverConfig(dg.Config):
    """Run config of `deliver_actions`: which deliveries to make and which to replay first."""

    delivery_ids: list[str] = Field(
        default_factory=list, description="Only these deliveries (default: everything due)."
    )
    replay_ids: list[str] = Field(
        default_factory=list,
        description="Failed or cancelled deliveries to make pending again before delivering.",
    )
    replay_failed: bool = Field(
        default=False, description="Make every failed delivery pending again before delivering."
    )


@dg.op(
    description="Deliver pending actions with retries and backoff; one action_results row per attempt."
)
def deliver_actions(
    context: dg.OpExecutionContext,
    config: DeliverConfig,
    postgres: PostgresResource,
    notifiers: NotifiersResource,
) -> dg.Output[dict]:
    """Replay the requested deliveries, then deliver what is due (or the given ids)."""
    from chainlake.events import store

    replayed: list[str] = []
    if config.replay_ids or config.replay_failed:
        with postgres.connection() as conn:
            replayed = store.replay_deliveries(
                conn,
                ids=config.replay_ids or None,
                statuses=("failed", "cancelled") if config.replay_ids else ("failed",),
            )
        context.log.info(f"replaying {len(replayed)} deliveries")
    deliverer = _deliverer(context, postgres, notifiers)
    ids = list(config.delivery_ids) + (replayed if config.replay_ids else [])
    report = deliverer.run(ids=ids or None)
    summary = {
        "claimed": report.claimed,
        "succeeded": report.succeeded,
        "failed": report.failed,
        "requeued": report.requeued,
        "attempts": report.attempts,
        "replayed": len(replayed),
    }
    for line in report.errors:
        context.log.warning(line)
    return dg.Output(summary, metadata=summary)


class MaintenanceConfig(dg.Config):
    """Run config of `events_maintenance`: retention and its horizons."""

    retention: bool = Field(default=True, description="Delete expired events and action results.")
    as_of: str | None = Field(
        default=None,
        description="ISO timestamp retention is measured from (the schedule passes its tick "
        "time); default: now.",
    )
    events_days: int = Field(default=365, description="Keep events this many days.")
    action_results_days: int = Field(default=90, description="Keep action results this many days.")


@dg.op(
    description="Retention (events 365 days, action results 90 days) and refresh of the "
    "hourly views events_hourly and action_metrics_hourly."
)
def events_maintenance(
    context: dg.OpExecutionContext, config: MaintenanceConfig, postgres: PostgresResource
) -> dg.Output[dict]:
    """Apply retention (if asked), then refresh the hourly views."""
    from chainlake.events import store

    deleted = {"events": 0, "action_results": 0, "head_events": 0}
    if config.retention:
        now = dt.datetime.fromisoformat(config.as_of) if config.as_of else dt.datetime.now(dt.UTC)
        with postgres.connection() as conn:
            deleted = store.apply_retention(
                conn,
                now=now,
                events_days=config.events_days,
                action_results_days=config.action_results_days,
            )
        context.log.info(f"retention as of {now.isoformat()}: deleted {deleted}")
    with postgres.connection(autocommit=True) as conn:
        store.refresh_views(conn)
    return dg.Output(deleted, metadata={f"deleted_{k}": v for k, v in deleted.items()})


@dg.job(
    description="Evaluate triggers for a batch of events (launched by chain_events_sensor).",
    tags={"chainlake/engine": "triggers"},
    # one op per job: a step subprocess would only add an interpreter start to every run
    executor_def=dg.in_process_executor,
)
def evaluate_triggers_job() -> None:
    """Evaluate one batch of events (the job chain_events_sensor launches)."""
    evaluate_triggers()


@dg.job(
    description="The resident trigger evaluator: one long-lived run that evaluates events as "
    "they commit and delivers their actions (kept live by resident_evaluator_sensor).",
    # its own sensor starts the next one; a retry would only race it
    tags={"chainlake/engine": "triggers", "dagster/max_retries": "0"},
    executor_def=dg.in_process_executor,
)
def resident_evaluator_job() -> None:
    """Run the resident evaluator."""
    serve_triggers()


@dg.job(
    description="Deliver pending actions (launched by pending_actions_sensor; launch it "
    "from the UI with replay_ids or replay_failed to replay failed deliveries).",
    tags={"chainlake/engine": "triggers"},
    # one op per job: a step subprocess would only add an interpreter start to every run
    executor_def=dg.in_process_executor,
)
def deliver_actions_job() -> None:
    """Deliver pending actions."""
    deliver_actions()


@dg.job(
    description="Events retention and hourly views.",
    tags={"chainlake/engine": "triggers"},
    executor_def=dg.in_process_executor,
)
def events_maintenance_job() -> None:
    """Events retention and refresh of the hourly views."""
    events_maintenance()


def _maintenance_run(context: dg.ScheduleEvaluationContext, *, retention: bool) -> dg.RunRequest:
    tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    return dg.RunRequest(
        run_key=None,
        run_config={
            "ops": {
                "events_maintenance": {
                    "config": {"retention": retention, "as_of": tick.isoformat()}
                }
            }
        },
    )


@dg.schedule(
    job=events_maintenance_job,
    cron_schedule="15 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def events_retention_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Daily: delete events older than 365 days and action results older than 90."""
    return _maintenance_run(context, retention=True)


@dg.schedule(
    job=events_maintenance_job,
    cron_schedule="5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def event_views_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Hourly: refresh events_hourly and action_metrics_hourly."""
    return _maintenance_run(context, retention=False)


new_blocks_job = dg.define_asset_job(
    "new_blocks_job",
    selection=dg.AssetSelection.groups("raw", "core") | dg.AssetSelection.assets(chain_events),
    description="Bring today's partition of a chain up to its confirmed head, and decode its "
    "new events of interest (launched by new_block_sensor).",
)

TRIGGER_JOBS: "list[dg.JobDefinition | UnresolvedAssetJobDefinition]" = [
    evaluate_triggers_job,
    resident_evaluator_job,
    deliver_actions_job,
    events_maintenance_job,
    new_blocks_job,
]
TRIGGER_SENSORS = [
    new_block_sensor,
    chain_events_sensor,
    resident_evaluator_sensor,
    pending_actions_sensor,
]
TRIGGER_SCHEDULES = [events_retention_schedule, event_views_schedule]
