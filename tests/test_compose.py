"""docker-compose.yaml: valid Compose, the official Airflow 3 shape, and nothing it refers to missing.

No Docker engine runs in CI, so the file is checked without one: interpolated
the way Compose does (from docker/compose.env.example with the secrets filled
in), validated against the Compose specification (the compose-pydantic models,
generated from the spec's JSON schema; also the JSON schema itself and
`docker-compose config` when a docker-compose install is on the machine), then
checked service by service. The postgres init script runs against the real
test server; the object store's init script (docker/minio/init-store.sh) runs
against a stand-in `mc` that records what it is asked to do.

The deployment shares no data volume (issue 24): DATA_DIR and BACKUP_DIR are
s3:// prefixes on the minio service, each container keeps its own cache.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import uuid
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / "docker" / "compose.env.example"
SECRETS = {
    "DB_PASS": "db-secret",
    "AIRFLOW_DB_PASS": "airflow-secret",
    "AIRFLOW_FERNET_KEY": "fernet",
    "AIRFLOW_JWT_SECRET": "jwt",
    "AIRFLOW_ADMIN_PASSWORD": "admin",
    "MINIO_ROOT_PASSWORD": "minio-root-secret",
    "STORAGE_SECRET_KEY": "pipeline-secret",
    "SEARCH_STORAGE_SECRET_KEY": "search-secret",
}
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
LONG_RUNNING = [*AIRFLOW_SERVICES, "postgres", "redis", "minio", "search-server"]
# The services that read or write the object store (credentials, their own cache).
STORAGE_SERVICES = [*AIRFLOW_SERVICES, "airflow-init", "airflow-cli", "search-server"]
# Services run as several containers (deploy.replicas or --scale): whatever they mount, their replicas share.
SCALED = ["airflow-worker", "search-server"]
# The one read-write volume several services mount: Airflow's task logs, as in the official compose.
AIRFLOW_LOGS = ("airflow-logs", "/opt/airflow/logs")
MINIO_INIT_SCRIPT = REPO / "docker" / "minio" / "init-store.sh"

_VAR = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>.*))?$", re.S)


class MissingVariable(ValueError):
    """A `${VAR:?message}` variable is unset: Compose refuses to start, with that message."""


def interpolate_str(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}."""

    def sub(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if name := match.group("named"):
            return env.get(name, "")
        braced = _BRACED.match(match.group("braced"))
        if braced is None:
            raise ValueError(f"invalid interpolation {match.group(0)!r}")
        name, op, arg = braced.group("name", "op", "arg")
        value = env.get(name)
        unset = not value if op in (":-", ":?") else value is None
        if op in (":-", "-") and unset:
            return arg
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        return value or ""

    return _VAR.sub(sub, text)


def interpolate(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate_str(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def example_env() -> dict[str, str]:
    env = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def raw_compose() -> dict[str, Any]:
    # safe_load resolves the anchors and `<<` merge keys exactly as Compose does.
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(raw_compose(), {**example_env(), **SECRETS})


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment is written as a mapping"
    return {k: str(v) for k, v in env.items()}


def command_of(service: dict[str, Any]) -> str:
    cmd = service.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def settings_of(env: dict[str, str]) -> Any:
    """core.settings.Settings as the container builds them from its environment alone (not this process's
    variables, not a .env file)."""
    from unittest import mock

    from core.settings import Settings

    values = {k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields}
    with mock.patch.dict(os.environ):
        for key in [k for k in os.environ if k.lower() in Settings.model_fields]:
            del os.environ[key]
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def mounts_of(service: dict[str, Any]) -> list[tuple[str | None, str, bool]]:
    """(source, target, read_only) of each mount; source None for an anonymous volume (one per container)."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):  # the long syntax
            mounts.append((volume.get("source"), volume["target"], bool(volume.get("read_only"))))
            continue
        parts = volume.split(":")
        if len(parts) == 1:
            mounts.append((None, parts[0], False))
        else:
            options = parts[2].split(",") if len(parts) > 2 else []
            mounts.append((parts[0], parts[1], "ro" in options))
    return mounts


# --- the Compose specification ------------------------------------------------------------------

def test_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    from compose_pydantic import ComposeSpecification
    from pydantic import ValidationError

    spec = ComposeSpecification(**{k: v for k, v in compose.items() if not k.startswith("x-")})
    assert set(spec.services) == set(compose["services"])
    broken = json.loads(json.dumps(compose))
    broken["services"]["redis"]["healthcheck"]["tset"] = ["CMD", "true"]
    with pytest.raises(ValidationError):
        ComposeSpecification(**{k: v for k, v in broken.items() if not k.startswith("x-")})


def _compose_json_schema() -> Path | None:
    """compose_spec.json shipped by a docker-compose (v1) install, when the machine has one."""
    import importlib.util

    candidates = [Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "config" / "compose_spec.json" for p in spec.submodule_search_locations]
    return next((p for p in candidates if p.is_file()), None)


def test_matches_the_compose_json_schema(compose: dict[str, Any]) -> None:
    schema_path = _compose_json_schema()
    if schema_path is None:
        pytest.skip("no docker-compose install ships compose_spec.json here (apt-get install docker-compose)")
    import jsonschema

    schema = json.loads(schema_path.read_text())
    # Compose v1's schema predates the top-level `name`; it accepts extension keys.
    jsonschema.validate(compose, schema)


@pytest.mark.parametrize("cli", [["docker-compose"], ["docker", "compose"]], ids=["compose-v1", "compose-v2"])
def test_compose_cli_accepts_the_file(cli: list[str], tmp_path: Path) -> None:
    if shutil.which(cli[0]) is None:
        pytest.skip(f"{cli[0]} is not installed")
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**example_env(), **SECRETS}.items()))
    probe = subprocess.run([*cli, "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"{' '.join(cli)} is not available: {probe.stderr.strip()[:200]}")
    clean_env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith(
        ("DB_", "API_", "MINIO_", "STORAGE_", "SEARCH_STORAGE_", "IMAGE_ROOT", "HOST_"))}
    res = subprocess.run([*cli, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "-q"],
                         capture_output=True, text=True, cwd=REPO, env=clean_env)
    assert res.returncode == 0, res.stderr
    # Without the secrets it refuses, naming the variable.
    env_file.write_text("".join(f"{k}={v}\n" for k, v in example_env().items()))
    res = subprocess.run([*cli, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "-q"],
                         capture_output=True, text=True, cwd=REPO, env=clean_env)
    assert res.returncode != 0 and "DB_PASS" in res.stderr + res.stdout


def test_secrets_are_required_and_every_variable_is_documented() -> None:
    raw = COMPOSE_FILE.read_text()
    used = {m.group(1) for m in re.finditer(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", raw)}
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    assert used - documented == set(), "variables missing from docker/compose.env.example"
    for name in SECRETS:
        env = {**example_env(), **SECRETS}
        env.pop(name)
        with pytest.raises(MissingVariable, match=name):
            interpolate(raw_compose(), env)


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate_str("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $$HOSTNAME $SET", env) == "x d  d $HOSTNAME x"
    with pytest.raises(MissingVariable, match="EMPTY: need it"):
        interpolate_str("${EMPTY:?need it}", env)


# --- the official Airflow 3 shape ---------------------------------------------------------------

def test_services_and_commands(services: dict[str, dict[str, Any]]) -> None:
    expected = {"postgres", "redis", "minio", "minio-init", "migrate", "airflow-init", *AIRFLOW_SERVICES,
                "airflow-cli", "search-server"}
    assert set(services) == expected
    for name, command in AIRFLOW_SERVICES.items():
        assert command_of(services[name]) == command, name
    assert command_of(services["search-server"]) == "python -m serving"
    assert command_of(services["migrate"]) == "python -m core.migrate"
    assert services["airflow-init"]["entrypoint"] == "/bin/bash"
    assert command_of(services["airflow-init"]) == "/opt/imgsim/docker/airflow-init.sh"
    assert services["airflow-init"]["user"] == "0:0"
    assert services["airflow-cli"]["profiles"] == ["debug"]
    assert services["airflow-worker"]["deploy"]["replicas"] >= 2
    assert command_of(services["minio"]) == "server /data --console-address :9001"
    assert services["minio-init"]["entrypoint"] == ["/bin/sh", "/opt/imgsim/init-store.sh"]


def test_airflow_configuration(services: dict[str, dict[str, Any]]) -> None:
    airflow = [*AIRFLOW_SERVICES, "airflow-init", "airflow-cli"]
    for name in airflow:
        svc = services[name]
        env = env_of(svc)
        assert svc["build"] == {"context": ".", "dockerfile": "docker/Dockerfile.airflow"}, name
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@redis:6379/0"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://airflow:airflow-secret@postgres:5432/airflow"
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://airflow:airflow-secret@postgres")
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "jwt" and env["AIRFLOW__CORE__FERNET_KEY"] == "fernet"
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
        # A dead worker's task is retried within about a minute; no visibility-timeout warning.
        assert int(env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]) <= 60
        assert int(env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC"]) < 15
        assert int(env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"]) >= 3600
        assert env["SEARCH_SERVER_URL"] == "http://localhost:8000/"
        assert svc["user"] in ("50000:0", "0:0")
    init_env = env_of(services["airflow-init"])
    assert init_env["_AIRFLOW_DB_MIGRATE"] == "true" and init_env["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert env_of(services["airflow-worker"])["DUMB_INIT_SETSID"] == "0"
    assert services["airflow-apiserver"]["ports"] == ["8080:8080"]


def test_the_image_db_connection_points_at_the_image_database(services: dict[str, dict[str, Any]]) -> None:
    from airflow.models.connection import Connection

    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        env = env_of(services[name])
        conn = Connection.from_json(env["AIRFLOW_CONN_IMAGE_DB"], conn_id="image_db")
        assert (conn.conn_type, conn.host, conn.port, conn.schema, conn.login, conn.password) == (
            "postgres", env["DB_HOST"], int(env["DB_PORT"]), env["DB_NAME"], env["DB_USER"], "db-secret")
    assert env_of(services["postgres"])["POSTGRES_DB"] == "event_management"


def test_container_settings_are_real_settings(services: dict[str, dict[str, Any]]) -> None:
    """Every pipeline variable handed to a container is a field of core.settings.Settings (no typos)."""
    from core.settings import Settings

    fields = set(Settings.model_fields)
    for name in ["migrate", *STORAGE_SERVICES]:
        env = env_of(services[name])
        ours = {k for k in env if not k.startswith(("AIRFLOW", "_AIRFLOW", "DUMB_INIT", "CONNECTION_CHECK"))}
        assert {"db_host", "db_port", "db_name", "db_user", "db_pass", "data_dir", "image_root"} <= {
            k.lower() for k in ours}, name
        assert {k.lower() for k in ours} <= fields, f"{name}: not settings: {sorted(ours)}"
        settings_of(env)  # and they parse (an s3:// DATA_DIR needs s3fs, which requirements.txt has)
    server = env_of(services["search-server"])
    assert (server["API_HOST"], server["API_PORT"]) == ("0.0.0.0", "8000")
    assert services["search-server"]["ports"] == ["8000:8000"]


def test_healthchecks_and_start_order(services: dict[str, dict[str, Any]]) -> None:
    for name in LONG_RUNNING:
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name
        assert check["interval"] and check["retries"] >= 3, name
        assert services[name]["restart"] == "always", name
    assert services["migrate"]["restart"] == "on-failure"  # a first failure must not strand its dependants
    assert services["airflow-init"]["restart"] == "no"
    for name in ["migrate", "airflow-init", "minio-init"]:
        assert "healthcheck" not in services[name]
    # Over TCP: the image's socket-only init server must not pass for the real one.
    assert "pg_isready -h 127.0.0.1" in services["postgres"]["healthcheck"]["test"][1]
    scheduler = services["airflow-scheduler"]["healthcheck"]["test"]
    assert "http://localhost:8974/health" in scheduler
    assert "/api/v2/monitor/health" in " ".join(services["airflow-apiserver"]["healthcheck"]["test"])

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    base = {"postgres": "service_healthy", "redis": "service_healthy", "migrate": "service_completed_successfully",
            "minio-init": "service_completed_successfully"}
    assert conditions("airflow-init") == base
    for name in AIRFLOW_SERVICES:
        expected = {**base, "airflow-init": "service_completed_successfully"}
        if name == "airflow-worker":
            expected["airflow-apiserver"] = "service_healthy"
        assert conditions(name) == expected, name
    assert conditions("migrate") == {"postgres": "service_healthy"}
    assert conditions("search-server") == {"postgres": "service_healthy", "migrate": "service_completed_successfully",
                                           "minio-init": "service_completed_successfully"}
    assert conditions("minio-init") == {"minio": "service_healthy"}
    assert services["minio-init"]["restart"] == "on-failure"  # like migrate: its dependants wait for a success
    assert "healthcheck" not in services["minio-init"]
    minio_check = " ".join(services["minio"]["healthcheck"]["test"])
    assert "mc ready local" in minio_check or "/minio/health/live" in minio_check


# --- no shared data volume: the object store (issue 24) -----------------------------------------

def test_no_volume_is_shared_except_read_only_inputs(compose: dict[str, Any],
                                                       services: dict[str, dict[str, Any]]) -> None:
    """A volume or folder mounted by two services, or by a service that runs as several containers, is
    mounted read-only by all of them; the one exception is Airflow's task logs (the official compose)."""
    users: dict[str, list[tuple[str, str, bool]]] = defaultdict(list)
    for name, svc in services.items():
        for source, target, read_only in mounts_of(svc):
            if source is not None:  # an anonymous volume belongs to its container alone
                users[source].append((name, target, read_only))
    for source, uses in users.items():
        if not source.startswith((".", "/", "$")):
            assert source in compose["volumes"], f"named volume {source} is not declared"
        shared = len({name for name, _, _ in uses}) > 1 or any(name in SCALED for name, _, _ in uses)
        if not shared:
            continue
        if source == AIRFLOW_LOGS[0]:
            assert {target for _, target, _ in uses} == {AIRFLOW_LOGS[1]}
            assert {name for name, _, _ in uses} <= {*AIRFLOW_SERVICES, "airflow-init", "airflow-cli"}
            continue
        writers = sorted(name for name, _, read_only in uses if not read_only)
        assert not writers, f"{source} is shared and mounted read-write by {writers}"
    # The old shared data folder is gone; the stores' own volumes belong to their one service.
    raw = COMPOSE_FILE.read_text()
    assert "x-shared-volumes" not in raw and "HOST_DATA_DIR" not in raw and "HOST_IMAGE_ROOT" not in raw
    for name in STORAGE_SERVICES:
        targets = {target for _, target, _ in mounts_of(services[name])}
        assert not targets & {"/data", "/images"}, name
    assert set(compose["volumes"]) == {"postgres-db-volume", "airflow-logs", "minio-data"}
    assert {tuple(m) for m in users["minio-data"]} == {("minio", "/data", False)}
    assert {tuple(m) for m in users["postgres-db-volume"]} == {("postgres", "/var/lib/postgresql/data", False)}


def test_every_storage_container_has_its_own_cache(services: dict[str, dict[str, Any]]) -> None:
    for name in STORAGE_SERVICES:
        env = env_of(services[name])
        cache = env["STORAGE_CACHE_DIR"]
        assert PurePosixPath(cache).is_absolute(), name
        # An anonymous volume exactly there: every container, every replica, its own.
        assert (None, cache, False) in mounts_of(services[name]), name
        settings = settings_of(env)
        assert settings.remote_data, name
        # Everything written locally lands in that cache (not in the image, not in a shared folder).
        for local in (settings.resolved_data_dir, settings.resolved_backup_dir, settings.resolved_model_cache_dir):
            assert str(local).startswith(cache + "/"), f"{name}: {local}"
    # The images make that folder for their user (group 0, any AIRFLOW_UID), so the new volume inherits it.
    cache = env_of(services["airflow-worker"])["STORAGE_CACHE_DIR"]
    assert cache == env_of(services["search-server"])["STORAGE_CACHE_DIR"]
    for dockerfile in ("Dockerfile.airflow", "Dockerfile.server"):
        text = (REPO / "docker" / dockerfile).read_text()
        assert re.search(rf"install -d -o \S+ -g 0 -m 2775 {re.escape(cache)}\b", text), dockerfile
        assert f"STORAGE_CACHE_DIR={cache}" in text, dockerfile


def test_places365_weights_come_from_a_read_only_mount(services: dict[str, dict[str, Any]]) -> None:
    """With DATA_DIR on the object store, DATA_DIR/weights is an empty cache: MODEL_WEIGHTS names the mount."""
    for name in STORAGE_SERVICES:
        env = env_of(services[name])
        weights = PurePosixPath(env["MODEL_WEIGHTS"])
        assert weights.name == "resnet50_places365.pth.tar"
        assert str(settings_of(env).resolved_model_weights) == str(weights), name
        mount = [(source, target, ro) for source, target, ro in mounts_of(services[name])
                 if weights.is_relative_to(target)]
        assert mount and mount[0][2] and mount[0][0] == "./data/weights", f"{name}: {mount}"
    overridden = interpolate(raw_compose(), {**example_env(), **SECRETS, "HOST_MODEL_WEIGHTS_DIR": "/srv/weights"})
    assert "/srv/weights:/opt/imgsim/weights:ro" in overridden["services"]["search-server"]["volumes"]


def test_data_and_backups_are_buckets_minio_init_creates(services: dict[str, dict[str, Any]],
                                                         tmp_path: Path) -> None:
    from storage.location import parse_location

    init_env = env_of(services["minio-init"])
    made = run_minio_init(init_env, tmp_path)
    assert made.returncode == 0, made.stderr
    created = made.buckets()
    for name in STORAGE_SERVICES:
        env = env_of(services[name])
        for setting in ("DATA_DIR", "BACKUP_DIR", "IMAGE_ROOT"):
            location = parse_location(env[setting], setting)
            assert location.protocol == "s3", f"{name}: {setting}={env[setting]}"
            assert location.root.split("/")[0] in created, f"{name}: {setting}={env[setting]}"
            assert env[setting] == init_env[setting], f"{name}: {setting} differs from minio-init's"
    data = parse_location(init_env["DATA_DIR"], "DATA_DIR").root.split("/")[0]
    backups = parse_location(init_env["BACKUP_DIR"], "BACKUP_DIR").root.split("/")[0]
    assert data != backups, "backups share no bucket with the store they back up"
    assert env_of(services["search-server"])["IMAGE_ROOT"] == "s3://imgsim-images"
    # migrate only applies SQL: it names the locations (settings parse) but holds no key.
    migrate = env_of(services["migrate"])
    assert migrate["DATA_DIR"] == init_env["DATA_DIR"]
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "STORAGE_CONN_ID"} & set(migrate)


def test_the_endpoint_is_the_minio_service(services: dict[str, dict[str, Any]]) -> None:
    minio = services["minio"]
    assert "--address" not in command_of(minio)  # the S3 API on its default :9000
    for name in [*STORAGE_SERVICES, "minio-init"]:
        env = env_of(services[name])
        url = env["MINIO_URL"] if name == "minio-init" else env["AWS_ENDPOINT_URL"]
        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname, parts.port) == ("http", "minio", 9000), f"{name}: {url}"
        assert parts.hostname in services
        if name != "minio-init":
            assert env["AWS_DEFAULT_REGION"] == env_of(minio)["MINIO_SITE_REGION"] == "us-east-1", name
    # Published on the host's loopback only; the containers reach it by name.
    assert minio["ports"] == ["127.0.0.1:9000:9000", "127.0.0.1:9001:9001"]


def test_every_storage_service_waits_for_minio_init(services: dict[str, dict[str, Any]]) -> None:
    keyed = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "STORAGE_CONN_ID"}
    users = {name for name, svc in services.items() if keyed & set(env_of(svc))}
    assert users == set(STORAGE_SERVICES)
    for name in users:
        depends = services[name]["depends_on"]
        assert depends["minio-init"] == {"condition": "service_completed_successfully"}, name


def test_object_store_credentials_and_airflow_connection(services: dict[str, dict[str, Any]],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models.connection import Connection

    init_env = env_of(services["minio-init"])
    assert (init_env["MINIO_ROOT_USER"], init_env["MINIO_ROOT_PASSWORD"]) == ("imgsim-root", "minio-root-secret")
    assert env_of(services["minio"])["MINIO_ROOT_PASSWORD"] == "minio-root-secret"
    pipeline = (init_env["PIPELINE_ACCESS_KEY"], init_env["PIPELINE_SECRET_KEY"])
    search = (init_env["SEARCH_ACCESS_KEY"], init_env["SEARCH_SECRET_KEY"])
    assert pipeline == ("imgsim-pipeline", "pipeline-secret") and search == ("imgsim-search", "search-secret")
    for name in [*AIRFLOW_SERVICES, "airflow-init", "airflow-cli"]:
        env = env_of(services[name])
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == pipeline, name
        conn_vars = [k for k in env if k.startswith("AIRFLOW_CONN_") and k != "AIRFLOW_CONN_IMAGE_DB"]
        assert conn_vars == ["AIRFLOW_CONN_OBJECT_STORE"], name
        # Airflow's JSON form; the variable's suffix, lower-cased, is the conn id STORAGE_CONN_ID names.
        raw = json.loads(env["AIRFLOW_CONN_OBJECT_STORE"])
        assert raw["conn_type"] == "aws" and isinstance(raw["extra"], dict)
        conn_id = "AIRFLOW_CONN_OBJECT_STORE".removeprefix("AIRFLOW_CONN_").lower()
        assert env["STORAGE_CONN_ID"] == conn_id == "object_store", name
        conn = Connection.from_json(env["AIRFLOW_CONN_OBJECT_STORE"], conn_id=conn_id)
        assert (conn.conn_type, conn.login, conn.password) == ("aws", *pipeline), name
        assert conn.extra_dejson == {"endpoint_url": env["AWS_ENDPOINT_URL"],
                                     "region_name": env["AWS_DEFAULT_REGION"]}, name
    # The search server reads with its own, read-only key, and has no Airflow connection.
    server = env_of(services["search-server"])
    assert (server["AWS_ACCESS_KEY_ID"], server["AWS_SECRET_ACCESS_KEY"]) == search
    assert "STORAGE_CONN_ID" not in server
    # What storage/ makes of it: in a worker the connection's values, in the server its own variables.
    from storage.filesystems import Credentials, credentials

    worker = env_of(services["airflow-worker"])
    monkeypatch.setenv("AIRFLOW_CONN_OBJECT_STORE", worker["AIRFLOW_CONN_OBJECT_STORE"])
    endpoint = "http://minio:9000"
    assert credentials(settings_of(worker)) == Credentials(endpoint, *pipeline, "us-east-1")
    assert credentials(settings_of(server)) == Credentials(endpoint, *search, "us-east-1")


def test_minio_and_minio_init_services(services: dict[str, dict[str, Any]]) -> None:
    minio, init = services["minio"], services["minio-init"]
    assert re.fullmatch(r"minio/minio:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", minio["image"])
    assert re.fullmatch(r"minio/mc:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", init["image"])
    assert minio["volumes"] == ["minio-data:/data"]
    assert init["volumes"] == ["./docker/minio/init-store.sh:/opt/imgsim/init-store.sh:ro"]
    assert minio["restart"] == "always"
    for name in ("minio", "minio-init"):
        assert "build" not in services[name] and "user" not in services[name], name


def test_the_search_server_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    """`--scale search-server=N` needs a host port per replica: API_PORT may be a range; nothing pins one container."""
    assert services["search-server"]["ports"] == ["8000:8000"]
    scaled = interpolate(raw_compose(), {**example_env(), **SECRETS, "API_PORT": "8000-8003"})["services"]
    assert scaled["search-server"]["ports"] == ["8000-8003:8000"]
    for name in SCALED:
        assert "container_name" not in services[name], name
        assert "hostname" not in services[name], name


# --- docker/minio/init-store.sh, against a stand-in mc -------------------------------------------

_FAKE_MC = r"""#!/bin/sh
# Records each call (arguments separated by \037) and the policies it is given.
printf '%s\037' "$@" >>"$FAKE_MC_DIR/calls"
printf '\n' >>"$FAKE_MC_DIR/calls"
[ "$1" = "${FAKE_MC_FAIL:-}" ] && { echo "mc: <ERROR> $1 failed" >&2; exit 1; }
case "$1 $2 $3" in
    "admin policy create") cp "$6" "$FAKE_MC_DIR/$5.json" ;;
    "admin policy attach")
        if [ -n "${FAKE_MC_ATTACH_ERROR:-}" ]; then echo "$FAKE_MC_ATTACH_ERROR" >&2; exit 1; fi ;;
esac
exit 0
"""


class MinioInitRun:
    def __init__(self, proc: subprocess.CompletedProcess[str], folder: Path) -> None:
        self.returncode, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        calls = (folder / "calls").read_text() if (folder / "calls").exists() else ""
        self.calls = [line.split("\x1f")[:-1] for line in calls.splitlines()]
        self.policies = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}

    def buckets(self) -> set[str]:
        return {c[2].removeprefix("local/") for c in self.calls if c[:2] == ["mb", "--ignore-existing"]}


def run_minio_init(env: dict[str, str], tmp_path: Path, **extra: str) -> MinioInitRun:
    """docker/minio/init-store.sh under POSIX sh (dash here) with the stand-in mc first on PATH."""
    folder = tmp_path / f"mc-{uuid.uuid4().hex[:6]}"
    (folder / "bin").mkdir(parents=True)
    fake = folder / "bin" / "mc"
    fake.write_text(_FAKE_MC)
    fake.chmod(0o755)
    run_env = {"PATH": f"{folder / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}", "TMPDIR": str(folder),
               "FAKE_MC_DIR": str(folder), "MINIO_INIT_TRIES": "1", **env, **extra}
    proc = subprocess.run(["sh", str(MINIO_INIT_SCRIPT)], env=run_env, capture_output=True, text=True, timeout=60)
    return MinioInitRun(proc, folder)


def allowed(policy: dict[str, Any], action: str, resource: str) -> bool:
    """Whether an IAM-style policy (Allow statements only, as ours) grants `action` on `resource`."""
    assert policy["Version"] == "2012-10-17"
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow"
        if any(fnmatch.fnmatchcase(action, a) for a in st["Action"]) and \
                any(fnmatch.fnmatchcase(resource, r) for r in st["Resource"]):
            return True
    return False


WRITE = ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")


def test_minio_init_creates_buckets_and_least_privilege_keys(services: dict[str, dict[str, Any]],
                                                              tmp_path: Path) -> None:
    env = env_of(services["minio-init"])
    run = run_minio_init(env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.calls[0] == ["alias", "set", "local", "http://minio:9000", "imgsim-root", "minio-root-secret"]
    assert run.buckets() == {"imgsim-data", "imgsim-backups", "imgsim-images"}
    # The pipeline's own buckets are private; a reused images bucket (the app's) is left as it is.
    assert ["anonymous", "set", "none", "local/imgsim-data"] in run.calls
    assert not any(c[:1] == ["anonymous"] and c[-1] == "local/imgsim-images" for c in run.calls)
    assert ["admin", "user", "add", "local", "imgsim-pipeline", "pipeline-secret"] in run.calls
    assert ["admin", "user", "add", "local", "imgsim-search", "search-secret"] in run.calls
    assert ["admin", "policy", "attach", "local", "imgsim-pipeline", "--user", "imgsim-pipeline"] in run.calls
    assert ["admin", "policy", "attach", "local", "imgsim-search", "--user", "imgsim-search"] in run.calls
    pipeline, search = run.policies["imgsim-pipeline"], run.policies["imgsim-search"]
    for bucket in ("imgsim-data", "imgsim-backups"):
        for action in ("s3:GetObject", *WRITE, "s3:ListMultipartUploadParts"):
            assert allowed(pipeline, action, f"arn:aws:s3:::{bucket}/pipeline/part-0.parquet"), (bucket, action)
        assert allowed(pipeline, "s3:ListBucket", f"arn:aws:s3:::{bucket}")
        assert allowed(search, "s3:GetObject", f"arn:aws:s3:::{bucket}/x")
        assert allowed(search, "s3:ListBucket", f"arn:aws:s3:::{bucket}")
    for policy in (pipeline, search):
        assert allowed(policy, "s3:GetObject", "arn:aws:s3:::imgsim-images/events/1.jpg")
        assert allowed(policy, "s3:ListBucket", "arn:aws:s3:::imgsim-images")
        assert not any(allowed(policy, a, "arn:aws:s3:::imgsim-images/events/1.jpg") for a in WRITE)
        assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::another-bucket/x")
        assert not allowed(policy, "s3:CreateBucket", "arn:aws:s3:::imgsim-data")
        assert not allowed(policy, "admin:CreateUser", "arn:aws:s3:::*")
    for bucket in ("imgsim-data", "imgsim-backups"):
        assert not any(allowed(search, a, f"arn:aws:s3:::{bucket}/x") for a in WRITE), bucket
    # Run again (every `docker compose up`): the policies are attached already, which is fine.
    again = run_minio_init(env, tmp_path, FAKE_MC_ATTACH_ERROR="mc: <ERROR> Unable to make user/group policy "
                           "association. The specified policy change is already in effect.")
    assert again.returncode == 0, again.stderr
    failed = run_minio_init(env, tmp_path, FAKE_MC_ATTACH_ERROR="mc: <ERROR> Access Denied.")
    assert failed.returncode != 0 and "Access Denied" in failed.stderr


@pytest.mark.parametrize(("image_root", "bucket"), [
    ("s3://ems-uploads/events", "ems-uploads"),  # the Event Management app's own bucket: read-only for both keys
    ("/images", None),  # a read-only folder mount instead: no bucket, no grant
])
def test_minio_init_follows_image_root(services: dict[str, dict[str, Any]], tmp_path: Path, image_root: str,
                                       bucket: str | None) -> None:
    env = interpolate(raw_compose(), {**example_env(), **SECRETS, "IMAGE_ROOT": image_root})["services"]
    assert env_of(env["search-server"])["IMAGE_ROOT"] == image_root
    run = run_minio_init(env_of(env["minio-init"]), tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.buckets() == {"imgsim-data", "imgsim-backups"} | ({bucket} if bucket else set())
    for policy in run.policies.values():
        assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::imgsim-images/x")
        if bucket:
            assert allowed(policy, "s3:GetObject", f"arn:aws:s3:::{bucket}/events/1.jpg")
            assert not allowed(policy, "s3:PutObject", f"arn:aws:s3:::{bucket}/events/1.jpg")


@pytest.mark.parametrize(("override", "message"), [
    ({"DATA_DIR": "/data"}, "DATA_DIR=/data is not an s3:// URL"),
    ({"BACKUP_DIR": "gs://imgsim-backups"}, "only s3:// URLs"),
    ({"DATA_DIR": "s3://Imgsim_Data/x"}, "bucket name"),
    ({"PIPELINE_ACCESS_KEY": "imgsim-root"}, "must differ from MINIO_ROOT_USER"),
    ({"PIPELINE_SECRET_KEY": ""}, "PIPELINE_SECRET_KEY is not set"),
    ({"FAKE_MC_FAIL": "alias"}, "does not answer"),
    ({"FAKE_MC_FAIL": "mb"}, "mb failed"),
])
def test_minio_init_refuses_what_it_cannot_set_up(services: dict[str, dict[str, Any]], tmp_path: Path,
                                                   override: dict[str, str], message: str) -> None:
    run = run_minio_init({**env_of(services["minio-init"]), **override}, tmp_path)
    assert run.returncode != 0 and message in run.stderr, run.stderr

# --- the files it refers to ---------------------------------------------------------------------

def _dockerfile_copies(dockerfile: Path) -> list[tuple[str, str]]:
    copies = []
    for line in dockerfile.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "COPY":
            args = [p for p in parts[1:] if not p.startswith("--")]
            copies += [(src, args[-1]) for src in args[:-1]]
    return copies


def test_every_referenced_file_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if "build" in svc:
            context = REPO / svc["build"]["context"]
            assert (context / svc["build"]["dockerfile"]).is_file(), name
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./docker/"):
                path = REPO / source
                assert path.is_file(), f"{name}: {source}"
                assert os.access(path, os.X_OK), f"{name}: {source} is not executable"
    for dockerfile in (REPO / "docker").glob("Dockerfile.*"):
        copies = _dockerfile_copies(dockerfile)
        assert copies, dockerfile
        for src, _ in copies:
            assert (REPO / src).exists(), f"{dockerfile.name}: COPY {src} does not exist"
    airflow_copies = dict(_dockerfile_copies(REPO / "docker" / "Dockerfile.airflow"))
    assert airflow_copies["docker/airflow-init.sh"] == command_of(services["airflow-init"])
    assert os.access(REPO / "docker" / "airflow-init.sh", os.X_OK)
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith(("#", "!"))]
    for dockerfile in (REPO / "docker").glob("Dockerfile.*"):
        for src, _ in _dockerfile_copies(dockerfile):
            hits = [pattern for pattern in ignored if fnmatch.fnmatch(src, pattern) or src.startswith(pattern + "/")]
            assert not hits, f"{dockerfile.name}: COPY {src} is excluded by .dockerignore {hits}"


def test_dockerfiles_match_the_pinned_versions() -> None:
    reqs = dict(line.split("==", 1) for line in (REPO / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    airflow_df = (REPO / "docker" / "Dockerfile.airflow").read_text()
    assert f"ARG AIRFLOW_IMAGE=apache/airflow:{reqs['apache-airflow']}" in airflow_df
    assert "--index-url" in airflow_df and "torch|torchvision" in airflow_df
    server_df = (REPO / "docker" / "Dockerfile.server").read_text()
    assert "FROM python:3.11-slim" in server_df
    assert 'CMD ["python", "-m", "serving"]' in server_df
    assert "USER ${APP_UID}:0" in server_df, "the server must not run as root"


# --- the postgres init script, against the real server --------------------------------------------

def test_postgres_init_script_creates_airflow_database(pg_database: str, tmp_path: Path) -> None:
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    params = psycopg.conninfo.conninfo_to_dict(pg_database)
    suffix = uuid.uuid4().hex[:10]
    role, dbname = f"imgsim_af_role_{suffix}", f"imgsim_af_db_{suffix}"
    env = {
        **os.environ,
        "PGHOST": str(params["host"]), "PGPORT": str(params.get("port", 5432)),
        "POSTGRES_USER": str(params.get("user", "postgres")), "POSTGRES_DB": str(params["dbname"]),
        "AIRFLOW_DB_USER": role, "AIRFLOW_DB_PASS": "it's a secret", "AIRFLOW_DB_NAME": dbname,
    }
    if params.get("password"):
        env["PGPASSWORD"] = str(params["password"])
    script = REPO / "docker" / "postgres" / "init-databases.sh"
    admin = psycopg.conninfo.make_conninfo(pg_database, dbname="postgres")
    try:
        for _ in range(2):  # idempotent
            res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
            assert res.returncode == 0, res.stderr
        with psycopg.connect(admin) as conn:
            owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            assert owner == (role,)
            assert conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)).fetchone() == (True,)
        missing = {k: v for k, v in env.items() if k != "AIRFLOW_DB_PASS"}
        res = subprocess.run(["bash", str(script)], env=missing, capture_output=True, text=True)
        assert res.returncode != 0 and "AIRFLOW_DB_PASS" in res.stderr
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_airflow_init_leaves_the_uploads_alone_and_wants_a_long_jwt_secret() -> None:
    script = (REPO / "docker" / "airflow-init.sh").read_text()
    assert 'chown -R "${AIRFLOW_UID}:0" "${ours[@]}"' in script
    assert not re.search(r"chown -R[^\n]*\$\{data_dir\}\"?\s*$", script, re.M), "no recursive chown over DATA_DIR"
    # An object-store DATA_DIR (the compose default) has no folder to make: no `s3:` folder appears.
    assert '[[ "${data_dir}" != *://* ]]' in script
    env = {"AIRFLOW__API_AUTH__JWT_SECRET": "x" * 43, "AIRFLOW_UID": "50000", "DATA_DIR": "/nonexistent"}
    res = subprocess.run(["bash", str(REPO / "docker" / "airflow-init.sh")], env=env, capture_output=True, text=True)
    assert res.returncode == 1 and "needs at least 64" in res.stderr
