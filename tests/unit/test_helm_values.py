"""deploy/helm/values.yaml (Dagster's official Helm chart) checked without a cluster: the
instance the chart would render from it, built here the way the chart's templates build it
(`helpers/instance/_run-launcher.tpl`, `_run-coordinator.tpl`, `_concurrency.tpl`,
`_postgresql.tpl`, `configmap-instance.yaml`), goes through Dagster's own validation: the
instance schema, K8sRunLauncher's config type, the run coordinator's class and the container
context the user deployment hands to its runs. The run queue is the one dagster.yaml has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_docker_compose import env_vars_read_by_the_code

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "deploy" / "helm" / "values.yaml"
RELEASE_NAMESPACE = "chainlake"
# Names the chart sets itself: DAGSTER_HOME on every pod; the instance's database comes from
# the `postgresql` values (password DAGSTER_PG_PASSWORD), not DAGSTER_POSTGRES_URL.
CHART_PROVIDED = {"DAGSTER_HOME", "DAGSTER_POSTGRES_URL"}


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def launcher_config(values: dict[str, Any]) -> dict[str, Any]:
    """`run_launcher.config` as `dagsterYaml.runLauncher.k8s` renders it from
    `runLauncher.config.k8sRunLauncher`."""
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    config: dict[str, Any] = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "job_namespace": k8s.get("jobNamespace") or RELEASE_NAMESPACE,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": "chainlake-dagster",  # the chart's own service account
        "dagster_home": {"env": "DAGSTER_HOME"},
        "instance_config_map": {"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"},
        "postgres_password_secret": {"env": "DAGSTER_K8S_PG_PASSWORD_SECRET"},
        "env_config_maps": [
            {"env": "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP"},
            *(m["name"] for m in k8s.get("envConfigMaps", []) if "name" in m),
        ],
    }
    if k8s.get("kubeconfigFile"):
        config["kubeconfig_file"] = k8s["kubeconfigFile"]
    if "image" in k8s:
        config["job_image"] = f"{k8s['image']['repository']}:{k8s['image']['tag']}"
    if k8s.get("envSecrets"):
        config["env_secrets"] = [s["name"] for s in k8s["envSecrets"] if "name" in s]
    for key in ("envVars", "volumeMounts", "volumes", "labels", "resources", "schedulerName"):
        if k8s.get(key):
            config[_snake(key)] = k8s[key]
    if "failPodOnRunFailure" in k8s:
        config["fail_pod_on_run_failure"] = k8s["failPodOnRunFailure"]
    if k8s.get("runK8sConfig"):
        config["run_k8s_config"] = {_snake(k): v for k, v in k8s["runK8sConfig"].items()}
    return config


def instance_config(values: dict[str, Any]) -> dict[str, Any]:
    """The `dagster.yaml` of the chart's instance ConfigMap, for the parts these values set."""
    pg = values["postgresql"]
    postgres = {
        "postgres_db": {
            "username": pg["postgresqlUsername"],
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": pg["postgresqlHost"],
            "db_name": pg["postgresqlDatabase"],
            "port": pg["service"]["port"],
            "params": pg.get("postgresqlParams") or {},
        }
    }
    daemon = values["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "CustomRunCoordinator"
    custom = coordinator["config"]["customRunCoordinator"]
    concurrency = values["concurrency"]
    assert concurrency["enabled"]
    pools = concurrency["pools"]
    runs = concurrency["runs"]
    monitoring = daemon["runMonitoring"]
    retries = daemon["runRetries"]
    return {
        "run_storage": {
            "module": "dagster_postgres.run_storage",
            "class": "PostgresRunStorage",
            "config": postgres,
        },
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            "config": postgres,
        },
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": postgres,
        },
        "scheduler": {"module": "dagster._core.scheduler", "class": "DagsterDaemonScheduler"},
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": launcher_config(values),
        },
        "run_coordinator": {
            "module": custom["module"],
            "class": custom["class"],
            "config": custom["config"],
        },
        "concurrency": {
            "pools": {"default_limit": pools["defaultLimit"], "granularity": pools["granularity"]},
            "runs": {
                "max_concurrent_runs": runs["maxConcurrentRuns"],
                "tag_concurrency_limits": runs["tagConcurrencyLimits"],
            },
        },
        "run_monitoring": {
            "enabled": monitoring["enabled"],
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            "poll_interval_seconds": monitoring["pollIntervalSeconds"],
        },
        "run_retries": {
            "enabled": retries["enabled"],
            "max_retries": retries["maxRetries"],
            "retry_on_asset_or_op_failure": retries["retryOnAssetOrOpFailure"],
        },
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }


def user_deployment(values: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return deployment


def test_launcher_config_passes_k8s_run_launchers_config_type(values: dict[str, Any]) -> None:
    from dagster._config import validate_config
    from dagster_k8s import K8sRunLauncher

    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    result = validate_config(K8sRunLauncher.config_type(), launcher_config(values))
    assert result.success, [e.message for e in result.errors or []]
    # the check has teeth: a misspelt field is refused by the same schema
    wrong = {**launcher_config(values), "image_pul_policy": "Always"}
    assert not validate_config(K8sRunLauncher.config_type(), wrong).success


def test_rendered_instance_passes_dagsters_instance_validation(
    values: dict[str, Any], tmp_path: Path
) -> None:
    """The whole instance through `dagster_instance_config` (what every Dagster process of the
    release does on start), then the run coordinator built from its config by Dagster."""
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._serdes.config_class import ConfigurableClassData

    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance_config(values)))
    validated, _ = dagster_instance_config(str(tmp_path))
    assert validated["run_launcher"]["class"] == "K8sRunLauncher"
    coordinator = validated["run_coordinator"]
    built = ConfigurableClassData(
        coordinator["module"], coordinator["class"], yaml.safe_dump(coordinator["config"])
    ).rehydrate(QueuedRunCoordinator)
    assert type(built).__name__ == "ChainQueuedRunCoordinator"


def test_run_queue_is_the_one_of_dagster_yaml(values: dict[str, Any]) -> None:
    """One run per chain at a time, four in all, op pools of one slot by default, the same
    coordinator and retries: the cluster runs backfills as `make dev` does."""
    local = yaml.safe_load((ROOT / "config" / "dagster" / "dagster.yaml").read_text())
    rendered = instance_config(values)
    assert rendered["concurrency"] == local["concurrency"]
    assert rendered["run_coordinator"] == local["run_coordinator"]
    assert rendered["run_retries"] == local["run_retries"]
    assert rendered["run_monitoring"] == local["run_monitoring"]
    limits = rendered["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": "chainlake/chain", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in (
        limits
    )


def test_code_location_deployment_serves_the_project(values: dict[str, Any]) -> None:
    deployment = user_deployment(values)
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("-m") + 1] == "pipelines.definitions"
    assert args[args.index("-a") + 1] == "defs"
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]
    # The webserver and the daemon load chainlake.run_coordinator: the project's image too.
    image = deployment["image"]
    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert values[component]["image"] == image, component
    assert values["postgresql"]["enabled"] is False  # external PostgreSQL
    assert values["global"]["postgresqlSecretName"]


def test_code_and_runs_get_every_variable_the_code_reads_with_server_stores(
    values: dict[str, Any],
) -> None:
    deployment = user_deployment(values)
    env = {e["name"]: e for e in deployment["env"]}
    missing = sorted(env_vars_read_by_the_code() - CHART_PROVIDED - set(env))
    assert not missing, f"the user deployment (and its runs) lack {missing}"
    assert env["DELTA_ROOT"]["value"].startswith("s3://")
    assert env["S3_ENDPOINT_URL"]["value"].startswith("http")
    # passwords come from a Secret, never inline
    for name in ("CLICKHOUSE_URL", "POSTGRES_URL", "AWS_SECRET_ACCESS_KEY", "CHAINLAKE_SECRET_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "chainlake-secrets", name
    volumes = {v["name"] for v in deployment["volumes"]}
    assert {m["name"] for m in deployment["volumeMounts"]} <= volumes
    mounts = {m["mountPath"] for m in deployment["volumeMounts"]}
    assert str(Path(env["CHAINS_CONFIG"]["value"]).parent) in mounts
    assert str(Path(env["DUCKDB_PATH"]["value"]).parent) in mounts


def test_runs_inherit_the_deployments_container_context(values: dict[str, Any]) -> None:
    """What `includeConfigInLaunchedRuns` passes to K8sRunLauncher, parsed by dagster-k8s: each
    run's Job gets the deployment's variables (secrets by reference) and volumes."""
    from dagster_k8s.container_context import K8sContainerContext

    deployment = user_deployment(values)
    context = K8sContainerContext.create_from_config(
        {
            "k8s": {
                "image_pull_policy": deployment["image"]["pullPolicy"],
                "env": deployment["env"],
                "volume_mounts": deployment["volumeMounts"],
                "volumes": deployment["volumes"],
                "resources": deployment["resources"],
                "namespace": RELEASE_NAMESPACE,
            }
        }
    )
    container = context.run_k8s_config.container_config
    env = {e["name"]: e for e in container["env"]}
    assert {"DELTA_ROOT", "CLICKHOUSE_URL", "POSTGRES_URL"} <= set(env)
    assert env["POSTGRES_URL"]["value_from"]["secret_key_ref"]["name"] == "chainlake-secrets"
    assert {m["name"] for m in container["volume_mounts"]} == {
        "chainlake-config",
        "chainlake-serving",
    }
    volumes = context.run_k8s_config.pod_spec_config["volumes"]
    assert {v["name"] for v in volumes} == {"chainlake-config", "chainlake-serving"}
