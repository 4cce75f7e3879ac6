"""`chainlake triggers`: define triggers from YAML, look at them and their deliveries, replay.

chainlake triggers apply config/triggers.yaml     # all of the file, or nothing
chainlake triggers list
chainlake triggers deliveries --status failed
chainlake triggers replay --failed                # or DELIVERY_ID ...; --now delivers here
chainlake triggers run-once                       # evaluate and deliver without Dagster
chainlake triggers failures                       # events a trigger could not evaluate
chainlake triggers reevaluate EVENT_ID            # or --all; --now delivers here
chainlake triggers backtest FILE --from DAY --to DAY   # what FILE would have fired (Delta)
"""

from __future__ import annotations

import os
import sys

import click
import psycopg

from chainlake.events import db as events_db
from chainlake.events import store
from chainlake.uri import redact_text
from cli.commands.options import postgres_url, url_option
from cli.commands.triggers_backtest import backtest


@click.group()
def triggers() -> None:
    """Triggers, their actions and deliveries."""


triggers.add_command(backtest)


@triggers.command()
@click.argument("path", type=click.Path(dir_okay=False), default="config/triggers.yaml")
@url_option
@click.option("--prune", is_flag=True, help="Delete the user's triggers the file no longer lists.")
@click.option("--dry-run", is_flag=True, help="Validate only; change nothing.")
def apply(path: str, url: str | None, prune: bool, dry_run: bool) -> None:
    """Validate PATH and write its triggers to PostgreSQL in one transaction."""
    from chainlake.events.spec import SpecError, apply_spec, default_resolver, load_spec

    try:
        spec = load_spec(path, resolver=default_resolver())
    except SpecError as e:
        for line in e.errors:
            click.echo(line, err=True)
        click.echo(f"{path}: {len(e.errors)} problem(s); nothing applied", err=True)
        sys.exit(1)
    if dry_run:
        click.echo(f"{path}: {len(spec.triggers)} trigger(s) valid (dry run, nothing applied)")
        return
    try:
        with events_db.connection(postgres_url(url)) as conn:
            result = apply_spec(conn, spec, prune=prune)
    except store.TriggerOwnershipError as e:
        raise click.ClickException(f"{path}: {e}; nothing applied") from None
    except psycopg.errors.InsufficientPrivilege as e:
        first = str(e).strip().splitlines()[0]
        raise click.ClickException(f"{path}: {first}; nothing applied") from None
    click.echo(
        f"{path}: applied {len(result.saved)} trigger(s) for user {spec.user!r}"
        + (f"; removed {', '.join(result.removed)}" if result.removed else "")
    )


@triggers.command("list")
@url_option
@click.option("--all", "show_all", is_flag=True, help="Include disabled triggers.")
def list_(url: str | None, show_all: bool) -> None:
    """Triggers with their conditions, actions and delivery counts."""
    with events_db.connection(postgres_url(url)) as conn:
        ts = store.load_triggers(conn, enabled_only=not show_all)
        counts = {
            (r["trigger_id"], r["status"]): r["n"]
            for r in conn.execute(
                "SELECT trigger_id, status, count(*) AS n FROM deliveries GROUP BY 1, 2"
            ).fetchall()
        }
        states = {t.id: store.get_trigger_state(conn, t.id) or {} for t in ts}
    if not ts:
        click.echo("no triggers (apply config/triggers.yaml first)")
        return
    for t in ts:
        fired = states[t.id].get("fired_count", 0)
        d = {s: counts.get((t.id, s), 0) for s in ("succeeded", "pending", "failed")}
        click.echo(
            f"{t.id}  [{t.registry} on chain {t.chain_id}{', phase fast' if t.is_fast else ''}"
            f"{'' if t.enabled else ', disabled'}]  "
            f"fired {fired}, deliveries: {d['succeeded']} ok, {d['pending']} pending, {d['failed']} failed"
        )
        click.echo(f"    {t.name}")
        for c in t.conditions:
            extra = f" {dict(c.config)}" if c.config else ""
            click.echo(f"    if {c.condition_type}: {c.field} {c.operator} {c.value}{extra}")
        for a in t.actions:
            click.echo(f"    -> {a.name} ({a.action_type})")


@triggers.command()
@url_option
@click.option(
    "--status", type=click.Choice(["pending", "in_progress", "succeeded", "failed", "cancelled"])
)
@click.option("--trigger", "trigger_id", default=None, help="Only this trigger's deliveries.")
@click.option("--limit", default=50, show_default=True)
def deliveries(url: str | None, status: str | None, trigger_id: str | None, limit: int) -> None:
    """Most recent deliveries, newest first."""
    with events_db.connection(postgres_url(url)) as conn:
        rows = store.list_deliveries(conn, status=status, trigger_id=trigger_id, limit=limit)
    if not rows:
        click.echo("no deliveries")
    for r in rows:
        when = r["delivered_at"] or r["created_at"]
        # stored redacted; redacted again for rows written before the redaction existed
        shown = redact_text(r["last_error"] or "")
        err = f"  ({shown})" if shown and r["status"] != "succeeded" else ""
        # a fast trigger's delivery names its phase: unconfirmed, confirmed or retracted
        phase = f"{r['phase']:<11} " if r.get("phase") else ""
        click.echo(
            f"{when:%Y-%m-%d %H:%M:%S}  {r['status']:<10} {r['action_type']:<8} {phase}"
            f"attempts {r['attempts']}/{r['max_attempts']}  {r['id']}{err}"
        )


def _deliver_here(url: str, ids: list[str] | None) -> None:
    from chainlake.actions.base import Secrets
    from chainlake.actions.deliver import Deliverer, default_senders
    from chainlake.actions.mcp import McpToolCall
    from chainlake.events.agents import agent_resolver

    resolver = agent_resolver(
        lambda: events_db.connect(url), key=os.environ.get("CHAINLAKE_SECRET_KEY")
    )
    report = Deliverer(
        url=url,
        senders=default_senders(mcp=McpToolCall(resolver)),
        secrets=Secrets(getenv=os.environ.get),
        job_id="cli",
    ).run(ids=ids)
    click.echo(
        f"delivered: {report.succeeded} ok, {report.failed} failed, {report.requeued} back in the "
        f"queue ({report.attempts} attempts)"
    )
    for e in report.errors:
        click.echo(f"  {e}", err=True)


@triggers.command()
@click.argument("delivery_ids", nargs=-1)
@url_option
@click.option("--failed", "all_failed", is_flag=True, help="Every failed delivery.")
@click.option("--trigger", "trigger_id", default=None, help="Only this trigger's deliveries.")
@click.option("--now", is_flag=True, help="Deliver here instead of leaving it to the daemon.")
def replay(
    delivery_ids: tuple[str, ...],
    url: str | None,
    all_failed: bool,
    trigger_id: str | None,
    now: bool,
) -> None:
    """Make failed (or named) deliveries pending again; the pending-actions sensor delivers them,
    or this command with --now. Earlier attempts stay in action_results."""
    if not delivery_ids and not all_failed:
        raise click.UsageError("name delivery ids, or pass --failed")
    target = postgres_url(url)
    with events_db.connection(target) as conn:
        ids = store.replay_deliveries(
            conn,
            ids=list(delivery_ids) or None,
            statuses=("failed", "cancelled", "succeeded") if delivery_ids else ("failed",),
            trigger_id=trigger_id,
        )
    click.echo(f"{len(ids)} deliver{'y' if len(ids) == 1 else 'ies'} pending again")
    missing = set(delivery_ids) - set(ids)
    for m in sorted(missing):
        click.echo(f"  {m}: not found (or still pending)", err=True)
    if now and ids:
        _deliver_here(target, ids)


@triggers.command("run-once")
@url_option
def run_once(url: str | None) -> None:
    """Evaluate every event not yet seen by the triggers and deliver what is due, in this
    process (what the sensors and jobs do, for a shell without the Dagster daemon)."""
    from chainlake.events.evaluate import evaluate_batch

    target = postgres_url(url)
    with events_db.connection(target) as conn:
        report = evaluate_batch(conn)
    click.echo(
        f"evaluated {report.events} events: {report.fired} firing(s), {report.deliveries_added} new deliveries"
    )
    for f in report.failures:
        click.echo(
            f"  evaluation failed: event {f.event_id} trigger {f.trigger_id}: {f.error} "
            "(see `chainlake triggers failures`)",
            err=True,
        )
    _deliver_here(target, None)


@triggers.command("set-agent-token")
@click.argument("agent_id", type=int)
@url_option
@click.option(
    "--token",
    prompt=True,
    hide_input=True,
    help="The agent's MCP bearer token (prompted if omitted).",
)
def set_agent_token(agent_id: int, url: str | None, token: str) -> None:
    """Store an agent's MCP bearer token, encrypted with CHAINLAKE_SECRET_KEY."""
    from chainlake.events.agents import set_agent_mcp_token

    key = os.environ.get("CHAINLAKE_SECRET_KEY")
    if not key:
        raise click.UsageError(
            "CHAINLAKE_SECRET_KEY is not set (a Fernet key: python -c "
            "'from chainlake.events.agents import new_key; print(new_key())')"
        )
    with events_db.connection(postgres_url(url)) as conn:
        set_agent_mcp_token(conn, agent_id, token, key=key)
    click.echo(f"token of agent {agent_id} stored (encrypted)")


@triggers.command()
@url_option
@click.option("--all", "show_all", is_flag=True, help="Include failures already re-evaluated.")
@click.option("--limit", default=50, show_default=True)
def failures(url: str | None, show_all: bool, limit: int) -> None:
    """Events a trigger could not be evaluated on, newest first, with the error. Evaluation
    went on without them; `chainlake triggers reevaluate` evaluates them again after a fix."""
    from chainlake.events.failures import list_failures

    with events_db.connection(postgres_url(url)) as conn:
        rows = list_failures(conn, include_resolved=show_all, limit=limit)
    if not rows:
        click.echo("no failed evaluations")
    for r in rows:
        state = f"resolved {r['resolved_at']:%Y-%m-%d %H:%M:%S}" if r["resolved_at"] else "failed"
        click.echo(
            f"{r['failed_at']:%Y-%m-%d %H:%M:%S}  {state:<8} event {r['event_id']} (seq {r['seq']})"
            f"  trigger {r['trigger_id']}  attempts {r['attempts']}: {r['error']}"
        )


@triggers.command()
@click.argument("event_ids", nargs=-1)
@url_option
@click.option("--all", "all_open", is_flag=True, help="Every event whose evaluation failed.")
@click.option("--now", is_flag=True, help="Deliver the new matches here.")
def reevaluate(event_ids: tuple[str, ...], url: str | None, all_open: bool, now: bool) -> None:
    """Evaluate again the events whose evaluation failed (after fixing the trigger or the
    code), against the triggers that failed on them. What still fails stays listed."""
    from chainlake.events.evaluate import reevaluate_events

    if not event_ids and not all_open:
        raise click.UsageError("name event ids, or pass --all")
    target = postgres_url(url)
    with events_db.connection(target) as conn:
        report = reevaluate_events(conn, list(event_ids) or None)
    click.echo(
        f"re-evaluated {report.events} event(s): {report.fired} firing(s), "
        f"{report.deliveries_added} new deliveries, {len(report.failures)} still failing"
    )
    for f in report.failures:
        click.echo(f"  event {f.event_id} trigger {f.trigger_id}: {f.error}", err=True)
    if event_ids and report.events < len(set(event_ids)):
        click.echo("  (events without an open failure were left alone)", err=True)
    if now and report.delivery_ids:
        _deliver_here(target, list(report.delivery_ids))
    if report.failures:
        sys.exit(1)
