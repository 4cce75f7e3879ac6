"""The steps' executor switch (CHAINLAKE_EXECUTOR): multiprocess by default (a range run's steps in
its own process), Celery on request, with a clear error for a missing broker or an unknown value."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from pipelines.executors import MULTIPROCESS, RANGE_START_TAG, step_executor


def test_multiprocess_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAINLAKE_EXECUTOR", raising=False)
    assert step_executor() is MULTIPROCESS
    monkeypatch.setenv("CHAINLAKE_EXECUTOR", "multiprocess")
    assert step_executor() is MULTIPROCESS


def test_celery_reads_the_broker_when_a_run_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINLAKE_EXECUTOR", "Celery")
    monkeypatch.setenv("DAGSTER_CELERY_BROKER_URL", "pyamqp://guest:guest@127.0.0.1:5672//")
    executor = step_executor()
    assert executor.name == "celery"
    # the URL is a variable reference, resolved with the run's config: not frozen at load
    monkeypatch.setenv("DAGSTER_CELERY_BROKER_URL", "pyamqp://u:p@rabbitmq:5672/chainlake")
    resolved = executor.config_schema.resolve_config({})  # type: ignore[attr-defined]
    assert resolved.success
    assert resolved.value["config"]["broker"] == "pyamqp://u:p@rabbitmq:5672/chainlake"
    assert resolved.value["config"]["backend"] == "rpc://"


def test_celery_without_a_broker_or_an_unknown_executor_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAINLAKE_EXECUTOR", "celery")
    monkeypatch.delenv("DAGSTER_CELERY_BROKER_URL", raising=False)
    with pytest.raises(ValueError, match="DAGSTER_CELERY_BROKER_URL"):
        step_executor()
    monkeypatch.setenv("CHAINLAKE_EXECUTOR", "dask")
    with pytest.raises(ValueError, match="expected 'multiprocess' or 'celery'"):
        step_executor()


# The job the executor runs: a file of its own, so the forked step processes can load it too.
_STEPS_JOB = """
import dagster as dg

from pipelines.executors import MULTIPROCESS

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01")


@dg.asset(partitions_def=DAYS)
def numbered(context) -> None:
    context.log.info(f"days {context.partition_keys}")


@dg.asset(partitions_def=DAYS, deps=[numbered])
def numbered_again(context) -> None:
    context.log.info(f"days {context.partition_keys}")


def steps_job():
    defs = dg.Definitions(
        assets=[numbered, numbered_again],
        jobs=[dg.define_asset_job("steps", selection="*")],
        executor=MULTIPROCESS,
    )
    return defs.resolve_job_def("steps")
"""


def test_a_range_runs_its_steps_in_its_own_process_and_a_day_forks_them(tmp_path: Path) -> None:
    """The default executor: a run of one partition forks a process per step (STEP_WORKER_STARTED);
    a run of a range (what a backfill's multi-day run is) and a run of one step run every step in
    the run's process."""
    from dagster._core.definitions.reconstruct import ReconstructableJob

    module = tmp_path / "steps_job.py"
    module.write_text(_STEPS_JOB)
    job = ReconstructableJob.for_file(str(module), "steps_job")
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        day = dg.execute_job(job, instance=instance, tags={"dagster/partition": "2026-01-02"})
        ranged = dg.execute_job(
            job,
            instance=instance,
            tags={RANGE_START_TAG: "2026-01-02", "dagster/asset_partition_range_end": "2026-01-04"},
        )
        assert day.success and ranged.success

        def workers(run_id: str) -> int:
            return len(
                instance.get_records_for_run(
                    run_id, of_type=dg.DagsterEventType.STEP_WORKER_STARTED
                ).records
            )

        assert workers(day.run_id) == 2
        # a run of a single step has nothing to run beside it: no forkserver, no fork
        alone = dg.execute_job(
            job,
            instance=instance,
            tags={"dagster/partition": "2026-01-02"},
            asset_selection=[dg.AssetKey("numbered_again")],
        )
        assert alone.success and workers(alone.run_id) == 0
        assert any(
            "Executing steps in process" in e.user_message for e in instance.all_logs(alone.run_id)
        )
        assert workers(ranged.run_id) == 0
        logs = [e.user_message for e in instance.all_logs(ranged.run_id)]
        assert any("Executing steps in process" in m for m in logs), logs
        assert any("2026-01-04" in m for m in logs), "the range's days reached the bodies"
