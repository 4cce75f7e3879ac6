"""The executor of every job of the code location, chosen by `CHAINLAKE_EXECUTOR`. Wiring only.

| `CHAINLAKE_EXECUTOR` | steps run |
|---|---|
| unset or `multiprocess` | in processes forked from the run's own process (one machine); a run of a range of partitions (a backfill's multi-day run) runs its steps in its own process |
| `celery` | as Celery tasks on the workers listening on `DAGSTER_CELERY_BROKER_URL` (many machines) |

Like the store switches of `pipelines.resources`, the choice is made when the code location
loads, because it decides the shape of the jobs' executor config; the broker URL itself is read
when a run starts. Pools (`rpc`, `duckdb`, `clickhouse`) and the per-chain run limit hold under
both: the run's own process claims a pool slot before it hands a step to any worker.
"""

from __future__ import annotations

import dagster as dg

CELERY_BROKER_VARIABLE = "DAGSTER_CELERY_BROKER_URL"

# Steps run in processes of their own (a step's memory and a native crash stay its own), forked
# from a server that has imported this code location once per run: a step starts in a fraction
# of a second instead of paying the interpreter and the imports (Dagster, Polars, Delta Lake,
# DuckDB, chdb, eth-abi) again, which dominated short chain-day runs in backfills.
# (Named explicitly: Dagster preloads the job's own module only when the job was loaded from a
# module, not through a workspace.)
RANGE_START_TAG = "dagster/asset_partition_range_start"


class _RangesInProcess(dg.Executor):
    """Steps of a run over a range of partitions, and the step of a run of a single step, run
    in the run's own process; the steps of any other run run in processes of their own
    (`multiprocess`).

    A backfill's runs each carry days of one chain (`assets/policies.py`) and run side by side,
    several per chain: the parallelism is between runs, and a process per step only adds its
    start-up (a forkserver importing the code location, then per step a forked process, an
    orphan watcher and the step's own instance and resources) to every run. Measured on the
    30-day × 2-chain backfill test, those processes took about a third of the test's CPU time.
    The open day's runs (one partition) keep a process per step: their core steps run in parallel.
    A run of one step (a backfill's balances days, an asset materialised alone from the UI) has
    nothing to run beside it: a forkserver would import the code location a second time for it.
    """

    def __init__(self, multiprocess: dg.Executor, in_process: dg.Executor) -> None:
        self._multiprocess = multiprocess
        self._in_process = in_process

    @property
    def retries(self):
        return self._multiprocess.retries

    @property
    def step_dependency_config(self):
        return self._multiprocess.step_dependency_config

    def execute(self, plan_context, execution_plan):
        ranged = RANGE_START_TAG in plan_context.dagster_run.tags
        single = len(execution_plan.step_keys_to_execute) == 1
        chosen = self._in_process if ranged or single else self._multiprocess
        yield from chosen.execute(plan_context, execution_plan)


@dg.executor(
    name="multiprocess_ranges_in_process",
    config_schema=dg.multiprocess_executor.config_schema.as_field(),
    requirements=dg.multiple_process_executor_requirements(),
)
def _ranges_in_process(init_context: dg.InitExecutorContext) -> dg.Executor:
    config = init_context.executor_config
    in_process_config = {
        "retries": config["retries"],
        "marker_to_close": None,
        "step_dependency_config": config.get("step_dependency_config"),
    }
    in_process = dg.in_process_executor.executor_creation_fn(  # type: ignore[misc]
        dg.InitExecutorContext(
            job=init_context.job,
            executor_def=dg.in_process_executor,
            executor_config=in_process_config,
            instance=init_context.instance,
        )
    )
    multiprocess = dg.multiprocess_executor.executor_creation_fn(init_context)  # type: ignore[misc]
    return _RangesInProcess(multiprocess, in_process)


MULTIPROCESS = _ranges_in_process.configured(
    {"start_method": {"forkserver": {"preload_modules": ["pipelines.definitions"]}}},
    name="forkserver_multiprocess",
)


def celery() -> dg.ExecutorDefinition:
    """Dagster's Celery executor on the broker of `DAGSTER_CELERY_BROKER_URL`.

    Each step becomes a task on the `dagster` queue; any worker started with
    `dagster-celery worker start -A dagster_celery.app` on that broker, with the same code and
    environment (stores as servers: Delta on S3, ClickHouse server, the Dagster instance in
    PostgreSQL), may run it. Results come back over the broker (`rpc://`).

    Returns:
        The executor, its broker read from the variable when each run starts.

    Raises:
        ValueError: `DAGSTER_CELERY_BROKER_URL` is not set (said now, not at the first run).
    """
    from dagster_celery import celery_executor

    if not dg.EnvVar("DAGSTER_CELERY_BROKER_URL").get_value():
        raise ValueError(
            f"CHAINLAKE_EXECUTOR=celery needs {CELERY_BROKER_VARIABLE} "
            "(e.g. pyamqp://user:password@rabbitmq:5672/vhost), the broker the workers listen on"
        )
    return celery_executor.configured(
        {"broker": {"env": CELERY_BROKER_VARIABLE}, "backend": "rpc://"},
        name="celery",
    )


def step_executor() -> dg.ExecutorDefinition:
    """The executor `CHAINLAKE_EXECUTOR` names, read once as the code location loads.

    Returns:
        The forkserver multiprocess executor (unset or `multiprocess`), or the Celery executor
        (`celery`).

    Raises:
        ValueError: any other value, or `celery` without a broker URL.
    """
    kind = (dg.EnvVar("CHAINLAKE_EXECUTOR").get_value() or "multiprocess").strip().lower()
    if kind == "multiprocess":
        return MULTIPROCESS
    if kind == "celery":
        return celery()
    raise ValueError(f"CHAINLAKE_EXECUTOR={kind!r}: expected 'multiprocess' or 'celery'")


EXECUTOR = step_executor()
