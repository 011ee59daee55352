#!/bin/bash
# Runs once, when the postgres container initialises an empty data volume
# (/docker-entrypoint-initdb.d). The image database (POSTGRES_DB = DB_NAME) is
# created by the postgres image itself; this adds Airflow's metadata database
# and its own role, so Airflow never writes into the image database.
# Idempotent: re-running it against an initialised server changes nothing.
set -euo pipefail

: "${AIRFLOW_DB_USER:?AIRFLOW_DB_USER is not set}"
: "${AIRFLOW_DB_PASS:?AIRFLOW_DB_PASS is not set}"
: "${AIRFLOW_DB_NAME:?AIRFLOW_DB_NAME is not set}"

psql -v ON_ERROR_STOP=1 \
    --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v airflow_user="$AIRFLOW_DB_USER" -v airflow_pass="$AIRFLOW_DB_PASS" -v airflow_db="$AIRFLOW_DB_NAME" \
    <<'EOSQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'airflow_user', :'airflow_pass')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'airflow_user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'airflow_db', :'airflow_user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'airflow_db') \gexec
EOSQL
echo "init-databases: Airflow metadata database '${AIRFLOW_DB_NAME}' (owner '${AIRFLOW_DB_USER}') ready"
