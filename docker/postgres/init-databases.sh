#!/bin/bash
# Runs once, when the postgres container initialises an empty data volume
# (/docker-entrypoint-initdb.d). The image database (POSTGRES_DB = DB_NAME) is
# created by the postgres image itself; this adds Airflow's metadata database
# and its own role, so Airflow never writes into the image database.
# Idempotent: re-running it against an initialised server changes nothing.
# The password comes from a file, AIRFLOW_DB_PASS_FILE (the compose secret airflow_db_password), like
# the image's own POSTGRES_PASSWORD_FILE; AIRFLOW_DB_PASS is read when no file is named.
# The image database's login roles for the pipeline and the search server are not made here: the
# `migrate` service makes them after the migrations (docker/postgres/roles.py), since their grants
# name tables that do not exist yet on a first start.
set -euo pipefail

: "${AIRFLOW_DB_USER:?AIRFLOW_DB_USER is not set}"
: "${AIRFLOW_DB_NAME:?AIRFLOW_DB_NAME is not set}"
if [[ -n "${AIRFLOW_DB_PASS_FILE:-}" ]]; then
    if [[ -n "${AIRFLOW_DB_PASS:-}" ]]; then
        echo "init-databases: both AIRFLOW_DB_PASS and AIRFLOW_DB_PASS_FILE are set; keep one" >&2
        exit 1
    fi
    if [[ ! -r "${AIRFLOW_DB_PASS_FILE}" ]]; then
        echo "init-databases: AIRFLOW_DB_PASS_FILE=${AIRFLOW_DB_PASS_FILE} is missing or not readable" >&2
        exit 1
    fi
    AIRFLOW_DB_PASS=$(<"${AIRFLOW_DB_PASS_FILE}")
    AIRFLOW_DB_PASS=${AIRFLOW_DB_PASS%$'\r'}
fi
: "${AIRFLOW_DB_PASS:?AIRFLOW_DB_PASS is not set (nor AIRFLOW_DB_PASS_FILE)}"

# The password reaches psql through its environment (\getenv), not its command line.
export AIRFLOW_DB_PASS
psql -v ON_ERROR_STOP=1 \
    --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v airflow_user="$AIRFLOW_DB_USER" -v airflow_db="$AIRFLOW_DB_NAME" \
    <<'EOSQL'
\getenv airflow_pass AIRFLOW_DB_PASS
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'airflow_user', :'airflow_pass')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'airflow_user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'airflow_db', :'airflow_user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'airflow_db') \gexec
EOSQL
echo "init-databases: Airflow metadata database '${AIRFLOW_DB_NAME}' (owner '${AIRFLOW_DB_USER}') ready"
