#!/bin/bash
# One-shot set-up run by the airflow-init service (as root) before any other
# Airflow container starts:
#   1. warns when the host is too small for the Airflow stack;
#   2. creates the folders the Airflow containers write (Airflow logs; with a
#      local DATA_DIR also its embeddings, indexes and weights) and hands them
#      to AIRFLOW_UID, the user every Airflow container and the search server
#      run as. Only those folders: never a recursive chown over DATA_DIR, which
#      may hold the read-only uploads. With DATA_DIR on an object store
#      (s3://...; the compose default) there is no shared folder: minio-init
#      made the buckets, and each container keeps its own cache;
#   3. checks the secrets the Airflow services read (docker/secret: present, the JWT secret long
#      enough and not the API secret key);
#   4. migrates Airflow's metadata database and creates the admin user, through
#      the official image's entrypoint (_AIRFLOW_DB_MIGRATE, _AIRFLOW_WWW_USER_CREATE,
#      _AIRFLOW_WWW_USER_PASSWORD_CMD).
# The image database's schema is applied by the `migrate` service, not here.
set -euo pipefail

if [[ -z "${AIRFLOW_UID:-}" ]]; then
    echo "WARNING: AIRFLOW_UID is not set; shared files will belong to uid 50000." >&2
    echo "         On Linux put AIRFLOW_UID=\$(id -u) in .env (see docs/operations.md)." >&2
    AIRFLOW_UID=50000
fi

mem_mb=$(( $(getconf _PHYS_PAGES) * $(getconf PAGE_SIZE) / 1048576 ))
cpus=$(nproc)
if (( mem_mb < 4000 )); then
    echo "WARNING: ${mem_mb} MiB of memory available to Docker; Airflow with torch needs at least 4 GiB." >&2
fi
if (( cpus < 2 )); then
    echo "WARNING: ${cpus} CPU available to Docker; at least 2 are recommended." >&2
fi

# The secrets every Airflow container reads through *_CMD (docker/secret): checked here once, so a
# missing or wrong one stops `docker compose up` with one line instead of failing every service.
secret="$(dirname "${BASH_SOURCE[0]}")/secret"
for name in airflow_db_password redis_password airflow_fernet_key airflow_jwt_secret airflow_api_secret_key \
        airflow_admin_password; do
    "${secret}" "${name}" >/dev/null || exit 1
done
jwt=$("${secret}" airflow_jwt_secret)
if (( ${#jwt} < 64 )); then
    echo "ERROR: the secret airflow_jwt_secret is ${#jwt} characters; HS512 needs at least 64" >&2
    echo "       (docker/make-secrets.sh makes one of 96)" >&2
    exit 1
fi
if [[ "${jwt}" == "$("${secret}" airflow_api_secret_key)" ]]; then
    echo "ERROR: airflow_jwt_secret and airflow_api_secret_key hold the same value; they must differ" >&2
    echo "       (the API's tokens and the UI's sessions are signed with different keys)" >&2
    exit 1
fi
unset jwt

data_dir="${DATA_DIR:-/data}"
ours=(/opt/airflow/logs)
if [[ "${data_dir}" != *://* ]]; then
    ours+=("${data_dir}/embeddings" "${data_dir}/indexes" "${data_dir}/weights")
    mkdir -p "${data_dir}"
    chown "${AIRFLOW_UID}:0" "${data_dir}"
    chmod g+rwx "${data_dir}"
fi
mkdir -p "${ours[@]}"
chown -R "${AIRFLOW_UID}:0" "${ours[@]}"
chmod -R g+rwX "${ours[@]}"

echo "Airflow version, metadata database migration and admin user:"
/entrypoint airflow version

weights="${MODEL_WEIGHTS:-${data_dir}/weights/resnet50_places365.pth.tar}"
if [[ "${EMBEDDING_MODEL:-}" == "places365-resnet50" && ! -f "${weights}" ]]; then
    echo "NOTE: EMBEDDING_MODEL=places365-resnet50 but its weights are missing at ${weights};" >&2
    if [[ -n "${MODEL_WEIGHTS:-}" ]]; then
        echo "      put resnet50_places365.pth.tar in HOST_MODEL_WEIGHTS_DIR (see docker-compose.yaml, MODEL_WEIGHTS)" >&2
    else
        echo "      run: docker compose run --rm airflow-cli python -m embeddings weights" >&2
    fi
fi
echo "airflow-init: done"
