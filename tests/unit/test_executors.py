"""The steps' executor switch (CHAINLAKE_EXECUTOR): multiprocess by default, Celery on request,
with a clear error for a missing broker or an unknown value."""

from __future__ import annotations

import pytest

from pipelines.executors import MULTIPROCESS, step_executor


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
