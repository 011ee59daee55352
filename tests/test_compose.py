"""docker-compose.yaml: valid Compose, the official Airflow 3 shape, and nothing it refers to missing.

No Docker engine runs in CI, so the file is checked without one: interpolated
the way Compose does (from docker/compose.env.example with the secrets filled
in), validated against the Compose specification (the compose-pydantic models,
generated from the spec's JSON schema; also the JSON schema itself and
`docker-compose config` when a docker-compose install is on the machine), then
checked service by service. The postgres init script runs against the real
test server.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

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
}
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
LONG_RUNNING = [*AIRFLOW_SERVICES, "postgres", "redis", "search-server"]

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
    clean_env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith(("DB_", "API_"))}
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
    expected = {"postgres", "redis", "migrate", "airflow-init", *AIRFLOW_SERVICES, "airflow-cli", "search-server"}
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
    for name in ["migrate", "search-server", *AIRFLOW_SERVICES]:
        env = env_of(services[name])
        ours = {k for k in env if not k.startswith(("AIRFLOW", "_AIRFLOW", "DUMB_INIT", "CONNECTION_CHECK"))}
        assert {"db_host", "db_port", "db_name", "db_user", "db_pass", "data_dir", "image_root"} <= {
            k.lower() for k in ours}, name
        assert {k.lower() for k in ours} <= fields, f"{name}: not settings: {sorted(ours)}"
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
    for name in ["migrate", "airflow-init"]:
        assert "healthcheck" not in services[name]
    # Over TCP: the image's socket-only init server must not pass for the real one.
    assert "pg_isready -h 127.0.0.1" in services["postgres"]["healthcheck"]["test"][1]
    scheduler = services["airflow-scheduler"]["healthcheck"]["test"]
    assert "http://localhost:8974/health" in scheduler
    assert "/api/v2/monitor/health" in " ".join(services["airflow-apiserver"]["healthcheck"]["test"])

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    base = {"postgres": "service_healthy", "redis": "service_healthy", "migrate": "service_completed_successfully"}
    assert conditions("airflow-init") == base
    for name in AIRFLOW_SERVICES:
        expected = {**base, "airflow-init": "service_completed_successfully"}
        if name == "airflow-worker":
            expected["airflow-apiserver"] = "service_healthy"
        assert conditions(name) == expected, name
    assert conditions("migrate") == {"postgres": "service_healthy"}
    assert conditions("search-server") == {"postgres": "service_healthy", "migrate": "service_completed_successfully"}


def test_shared_volumes(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        volumes = services[name]["volumes"]
        assert "./data:/data" in volumes, name
        assert "./data/images:/images:ro" in volumes, name
        assert "airflow-logs:/opt/airflow/logs" in volumes, name
        env = env_of(services[name])
        assert (env["DATA_DIR"], env["IMAGE_ROOT"]) == ("/data", "/images")
    # The search server never writes: both mounts read-only.
    assert services["search-server"]["volumes"] == ["./data:/data:ro", "./data/images:/images:ro"]
    assert "postgres-db-volume:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert set(compose["volumes"]) == {"postgres-db-volume", "airflow-logs"}
    overridden = interpolate(raw_compose(), {**example_env(), **SECRETS, "HOST_DATA_DIR": "/srv/imgsim"})
    assert "/srv/imgsim:/data:ro" in overridden["services"]["search-server"]["volumes"]


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
    env = {"AIRFLOW__API_AUTH__JWT_SECRET": "x" * 43, "AIRFLOW_UID": "50000", "DATA_DIR": "/nonexistent"}
    res = subprocess.run(["bash", str(REPO / "docker" / "airflow-init.sh")], env=env, capture_output=True, text=True)
    assert res.returncode == 1 and "needs at least 64" in res.stderr
