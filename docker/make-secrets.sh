#!/bin/bash
# Makes the secrets docker-compose.yaml mounts (its top-level `secrets:`), one file each, random values:
#
#   docker/make-secrets.sh            # into ./secrets (HOST_SECRETS_DIR or the first argument: elsewhere)
#
# Run it once before the first `docker compose up`; it never overwrites a file that has a value, so it is
# safe to run again (a secret added by a newer compose file is made, the others are kept). To change
# one, put the new value in its file (one line) or delete the file and run this again; what else that
# needs is in docs/operations.md ("Secrets").
# The folder is made mode 0700 (no other user of the host reads it); the files 0644, because compose
# bind-mounts each file as it is into /run/secrets of containers running as other users (postgres,
# redis, airflow, ...). Keep the folder out of git and of the build context (.gitignore, .dockerignore).
# Needs bash and coreutils only (no Python on the host). Values are printed nowhere.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-${HOST_SECRETS_DIR:-${here}/secrets}}"

# name|kind|what it is (kinds: hexN = 2N hex characters from N random bytes, fernet = a Fernet key;
# MinIO's secrets are 40 characters, the most every MinIO release takes)
SECRETS=(
    "db_owner_password|hex32|DB_USER's password: the role that owns the image database and runs the migrations (the bundled postgres: its superuser)"
    "pipeline_db_password|hex32|DB_PIPELINE_USER's (imgsim_pipeline): the Airflow tasks' connection image_db"
    "server_db_password|hex32|DB_SERVER_USER's (imgsim_server): the search server's database role"
    "airflow_db_password|hex32|AIRFLOW_DB_USER's: Airflow's metadata database"
    "redis_password|hex32|Redis requirepass, in Airflow's Celery broker URL"
    "airflow_fernet_key|fernet|Airflow's Fernet key (encrypts connections and variables in its database)"
    "airflow_jwt_secret|hex48|Airflow's [api_auth] jwt_secret: signs the API's and the task workers' tokens"
    "airflow_api_secret_key|hex32|Airflow's [api] secret_key: signs the UI's sessions (not the JWT secret)"
    "airflow_admin_password|hex32|the password of the Airflow UI's admin user (AIRFLOW_ADMIN_USER)"
    "minio_root_password|hex20|MinIO's root user (minio-init and the console only)"
    "pipeline_storage_secret_key|hex20|the pipeline's object-store key (STORAGE_ACCESS_KEY): read-write on data and backups"
    "search_storage_secret_key|hex20|the search server's object-store key (SEARCH_STORAGE_ACCESS_KEY): read-only"
    "api_key|hex32|the search server's API key: write routes (POST /add_image) need it in X-API-Key"
)

if [[ "${1:-}" == "--list" ]]; then
    for entry in "${SECRETS[@]}"; do
        printf '%s\n' "${entry%%|*}"
    done
    exit 0
fi

random_hex() {  # bytes
    od -An -vtx1 -N"$1" /dev/urandom | tr -d ' \n'
}

umask 077
mkdir -p "${dir}"
chmod 700 "${dir}"
made=0
for entry in "${SECRETS[@]}"; do
    IFS='|' read -r name kind what <<<"${entry}"
    file="${dir}/${name}"
    if [[ -s "${file}" ]]; then
        printf '  kept  %-28s %s\n' "${name}" "${what}"
        chmod 644 "${file}"
        continue
    fi
    case "${kind}" in
        hex20) value=$(random_hex 20) ;;
        hex32) value=$(random_hex 32) ;;
        hex48) value=$(random_hex 48) ;;
        fernet) value=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n') ;;
        *) echo "make-secrets: unknown kind ${kind}" >&2; exit 1 ;;
    esac
    printf '%s' "${value}" >"${file}.tmp"
    chmod 644 "${file}.tmp"
    mv "${file}.tmp" "${file}"
    made=$((made + 1))
    printf '  made  %-28s %s\n' "${name}" "${what}"
done
echo "make-secrets: ${made} made, $(( ${#SECRETS[@]} - made )) kept, in ${dir}"
