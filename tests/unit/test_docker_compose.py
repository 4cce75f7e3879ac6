"""docker-compose.yml checked without a Docker engine (none runs on these machines): its
services, health checks, dependencies, volumes and images' build files, that every
environment variable the code reads is set for the project's containers, as locally, and that
the compose instance (docker/dagster.yaml: DockerRunLauncher, each run in its own container)
passes Dagster's own validation of the instance and of the launcher's config."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["chainlake", "pipelines", "assets", "resources", "sensors"]
APP_SERVICES = {"minio-init", "devnet-seed", "user-code", "webserver", "daemon"}
STORES = {"postgres", "clickhouse", "minio", "nats", "anvil"}
LONG_RUNNING = STORES | {"user-code", "webserver", "daemon"}
ONE_SHOT = {"minio-init", "devnet-seed"}
DOCKER_SOCKET = "/var/run/docker.sock"
# Read by the code but meaningful only on a developer machine.
# CHAINLAKE_INSTANCE names the databases of a checkout's instance when their URLs are unset; a
# deployment sets DAGSTER_POSTGRES_URL and POSTGRES_URL.
LOCAL_ONLY = re.compile(r"^(DEMO_|TEST_|CHAINLAKE_ANVIL$|CHAINLAKE_INSTANCE$|PYTEST)")
# The PostgreSQL instance `python -m chainlake.instance` links into DAGSTER_HOME (the image
# installs docker/dagster.yaml at the same path).
LOCAL_INSTANCE = ROOT / "config" / "dagster" / "dagster.yaml"
# `dg.EnvVar("X")` (a field value, or `.get_value()` at run time), `dg.EnvVar.int("X")`, os.environ
_ENV_READ = re.compile(
    r"""(?:\benv|EnvVar(?:\.int)?|os\.environ\.get|os\.getenv|os\.environ\[)\(?\s*["']([A-Z][A-Z0-9_]+)["']"""
    # or named once as a constant and read through it: `NATS_URL_VARIABLE = "NATS_URL"`
    r"""|_VARIABLE\s*=\s*["']([A-Z][A-Z0-9_]+)["']"""
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def compose_instance() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker" / "dagster.yaml").read_text())


def env_vars_read_by_the_code() -> set[str]:
    names: set[str] = set()
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            names.update(n for pair in _ENV_READ.findall(path.read_text()) for n in pair if n)
    # the instance configs read their settings with `env:`
    for config in (ROOT / "dagster.yaml", LOCAL_INSTANCE):
        names.update(re.findall(r"env:\s*([A-Z][A-Z0-9_]+)", config.read_text()))
    return {n for n in names if not LOCAL_ONLY.match(n)}


def test_every_service_of_the_deployment_is_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == LONG_RUNNING | ONE_SHOT


def test_long_running_services_have_health_checks(compose: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        check = compose["services"][name].get("healthcheck")
        assert check and check.get("test"), f"{name} has no health check"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    for name in ONE_SHOT:
        assert compose["services"][name]["restart"] == "no", f"{name} must run once"


def test_dependencies_wait_for_health_or_completion(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            expected = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert spec["condition"] == expected, f"{name} -> {dep}"
    assert {"minio-init", "devnet-seed", "postgres", "clickhouse"} <= set(
        services["user-code"]["depends_on"]
    )


def test_app_containers_get_every_variable_the_code_reads(compose: dict[str, Any]) -> None:
    needed = env_vars_read_by_the_code()
    assert {"DELTA_ROOT", "POSTGRES_URL", "CHAINS_CONFIG", "DAGSTER_POSTGRES_URL"} <= needed
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        missing = sorted(needed - set(env))
        assert not missing, f"{name} lacks {missing} (set them in x-app's environment)"


def test_stores_are_servers_in_the_deployment(compose: dict[str, Any]) -> None:
    env = compose["x-app"]["environment"]
    assert env["DELTA_ROOT"].startswith("s3://")
    assert env["S3_ENDPOINT_URL"] == "http://minio:9000"
    assert (
        env["CLICKHOUSE_URL"].startswith("http://") and "@clickhouse:8123/" in env["CLICKHOUSE_URL"]
    )
    # a bare postgresql:// means psycopg 3 under SQLAlchemy 2.1, which breaks Dagster's NOTIFY
    assert env["DAGSTER_POSTGRES_URL"].startswith("postgresql+psycopg2://")
    assert "@postgres:5432/dagster" in env["DAGSTER_POSTGRES_URL"]
    assert "@postgres:5432/chainlake" in env["POSTGRES_URL"]
    init_sql = (ROOT / "docker" / "postgres-init.sql").read_text()
    assert "CREATE DATABASE dagster" in init_sql
    assert compose["services"]["postgres"]["environment"]["POSTGRES_DB"] == "chainlake"
    # live state: JetStream on (KV needs it), the app on that server, the code server after it
    nats = compose["services"]["nats"]
    assert "-js" in nats["command"]
    assert env["NATS_URL"].endswith("@nats:4222}") or env["NATS_URL"].endswith("//nats:4222}")
    assert "nats" in compose["services"]["user-code"]["depends_on"]


def test_webserver_and_daemon_never_see_the_embedded_stores(compose: dict[str, Any]) -> None:
    for name in ("webserver", "daemon"):
        mounts = [v.split(":")[1] for v in compose["services"][name].get("volumes", [])]
        assert not any(m.startswith("/opt/chainlake/data") for m in mounts), name
    user_code = [v.split(":")[1] for v in compose["services"]["user-code"]["volumes"]]
    assert "/opt/chainlake/data" in user_code


def test_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name, svc in compose["services"].items():
        for v in svc.get("volumes", []):
            source = v.split(":")[0]
            if source == DOCKER_SOCKET:
                assert name in ("webserver", "daemon"), f"{name} needs no Docker engine"
            elif not source.startswith("."):
                assert source in declared, f"{name} mounts undeclared volume {source}"
            else:
                assert (ROOT / source).exists(), f"{name} mounts missing file {source}"


def test_code_location_matches_the_user_code_server(compose: dict[str, Any]) -> None:
    workspace = yaml.safe_load((ROOT / "docker" / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    grpc = entry["grpc_server"]
    command = compose["services"]["user-code"]["command"]
    assert grpc["host"] == "user-code"
    assert str(grpc["port"]) == command[command.index("-p") + 1]
    assert command[command.index("-m") + 1] == "pipelines.definitions"
    for name in ("webserver", "daemon"):
        cmd = compose["services"][name]["command"]
        text = cmd if isinstance(cmd, str) else " ".join(cmd)
        assert "-w /opt/dagster/workspace.yaml" in text


def test_dockerfile_targets_and_copied_files_exist(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\w+)$", dockerfile, flags=re.M))
    for svc in compose["services"].values():
        if "build" in svc:
            assert svc["build"]["target"] in targets
            assert (ROOT / svc["build"]["dockerfile"]).exists()
    for line in re.findall(r"^COPY (.+)$", dockerfile, flags=re.M):
        for src in shlex.split(line)[:-1]:
            if not src.startswith("--"):
                assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
    assert (ROOT / "docker" / "anvil.sh").stat().st_mode & 0o111


def test_minio_init_reads_the_bucket_from_delta_root(compose: dict[str, Any]) -> None:
    sys.path.insert(0, str(ROOT / "docker"))
    try:
        import minio_init
    finally:
        sys.path.pop(0)
    assert minio_init.bucket_of(compose["x-app"]["environment"]["DELTA_ROOT"]) == "chainlake"
    with pytest.raises(ValueError, match="s3://"):
        minio_init.bucket_of("data/delta")


@pytest.mark.integration
def test_minio_init_creates_the_bucket_once_on_an_s3_server(tmp_path: Path) -> None:
    """The same script against moto's S3 server (MinIO itself needs Docker)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DELTA_ROOT": "s3://chainlake/delta",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }
    try:
        outputs = []
        for _ in range(2):
            out = subprocess.run(
                [sys.executable, str(ROOT / "docker" / "minio_init.py")],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert out.returncode == 0, out.stderr
            outputs.append(out.stdout.strip())
            time.sleep(0.1)
        assert outputs == [
            "minio-init: bucket chainlake created",
            "minio-init: bucket chainlake already exists",
        ]
    finally:
        server.terminate()
        server.wait(10)


# -- the compose instance: DockerRunLauncher --------------------------------------------------


def test_compose_instance_passes_dagsters_validation(compose_instance: dict[str, Any]) -> None:
    """The whole file through Dagster's instance schema (what `dagster-daemon run` does on
    start), then the launcher and the coordinator built from their config as the instance
    builds them (`ConfigurableClassData.rehydrate`: the class's `config_type()` and
    `from_config_value`; neither connects to anything)."""
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._serdes.config_class import ConfigurableClassData
    from dagster_docker import DockerRunLauncher

    validated, custom_class = dagster_instance_config(str(ROOT / "docker"), "dagster.yaml")
    assert custom_class is None
    launcher_cfg = validated["run_launcher"]
    assert (launcher_cfg["module"], launcher_cfg["class"]) == (
        "dagster_docker",
        "DockerRunLauncher",
    )
    launcher = ConfigurableClassData(
        launcher_cfg["module"], launcher_cfg["class"], yaml.safe_dump(launcher_cfg["config"])
    ).rehydrate(DockerRunLauncher)
    assert launcher.networks == ["chainlake"]
    assert launcher.env_vars == compose_instance["run_launcher"]["config"]["env_vars"]
    coordinator_cfg = validated["run_coordinator"]
    coordinator = ConfigurableClassData(
        coordinator_cfg["module"],
        coordinator_cfg["class"],
        yaml.safe_dump(coordinator_cfg["config"]),
    ).rehydrate(QueuedRunCoordinator)
    assert type(coordinator).__name__ == "ChainQueuedRunCoordinator"
    assert validated["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}}


def test_compose_instance_keeps_the_local_queue_limits_and_retries(
    compose_instance: dict[str, Any],
) -> None:
    """Only the launcher differs from the local PostgreSQL instance: one run per chain, pools,
    retries and the instance's storage are the same in both deployments."""
    local = yaml.safe_load(LOCAL_INSTANCE.read_text())
    assert "run_launcher" not in local
    for key in ("storage", "run_coordinator", "concurrency", "run_retries", "run_monitoring"):
        assert compose_instance[key] == local[key], key


def test_run_containers_get_the_image_network_volumes_and_variables(
    compose: dict[str, Any], compose_instance: dict[str, Any]
) -> None:
    config = compose_instance["run_launcher"]["config"]
    services = compose["services"]
    # The run image is the code location's: the user-code server reports it with each job.
    assert (
        services["user-code"]["environment"]["DAGSTER_CURRENT_IMAGE"] == compose["x-app"]["image"]
    )
    assert config["network"] == compose["networks"]["default"]["name"]
    # Variables forwarded by name take their values from the daemon (x-app): all set there,
    # and every one the code reads is forwarded.
    forwarded = set(config["env_vars"])
    x_app = set(compose["x-app"]["environment"])
    assert not forwarded - x_app, f"not set for the daemon: {sorted(forwarded - x_app)}"
    missing = sorted(env_vars_read_by_the_code() - forwarded)
    assert not missing, f"run containers lack {missing} (docker/dagster.yaml env_vars)"
    # Volumes by their fixed compose names, mounted where the user-code server has them.
    named = {
        spec["name"]: key for key, spec in compose["volumes"].items() if spec and "name" in spec
    }
    user_code_mounts = {v.split(":")[0]: v.split(":")[1] for v in services["user-code"]["volumes"]}
    for volume in config["container_kwargs"]["volumes"]:
        source, target = volume.split(":")[:2]
        assert source in named, f"{source} is not a compose volume with a fixed name"
        assert user_code_mounts.get(named[source]) == target, volume
    # The launcher (daemon) and the terminate button (webserver) talk to the Docker engine.
    for name in ("webserver", "daemon"):
        assert any(v.startswith(f"{DOCKER_SOCKET}:") for v in services[name]["volumes"]), name


def test_image_installs_the_compose_instance_and_installs_node_tools_like_make() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    # where `python -m chainlake.instance` (the daemon's command) links from, and linked already
    installed = "config/dagster/dagster.yaml"
    assert installed == LOCAL_INSTANCE.relative_to(ROOT).as_posix()
    assert re.search(rf"^COPY docker/dagster\.yaml \./{installed}$", dockerfile, flags=re.M)
    assert f"ln -s /opt/chainlake/{installed} /opt/dagster/home/dagster.yaml" in dockerfile
    # `npm ci` refuses package-lock.json here (see the Makefile); the image does as make does.
    assert not re.search(r"^RUN npm ci", dockerfile, flags=re.M)
    assert "npm install --no-audit --no-fund --no-save" in dockerfile
    assert "npm install --no-audit --no-fund --no-save" in (ROOT / "Makefile").read_text()
