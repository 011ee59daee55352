#!/bin/sh
# The redis service's entrypoint: Redis with a password (requirepass) from the secret redis_password.
# The configuration goes to redis-server on its standard input (`redis-server -`), so the password
# is neither on a command line (`ps`, `docker top`) nor in a file of the container; the image's own
# entrypoint (docker-entrypoint.sh) still starts it as the redis user.
# Every client authenticates: Airflow's broker URL (AIRFLOW__CELERY__BROKER_URL_CMD) and the
# healthcheck (REDISCLI_AUTH) read the same secret.
# REDIS_MAXMEMORY: Redis refuses writes past it (noeviction: a Celery broker must lose no message)
# rather than being killed at the container's memory limit; keep it below that limit.
set -eu

secret="${SECRETS_DIR:-/run/secrets}/redis_password"
if [ ! -r "$secret" ]; then
    echo "redis: $secret is missing (add redis_password to the service's secrets:)" >&2
    exit 1
fi
password=""
IFS= read -r password <"$secret" || [ -n "$password" ]
password=${password%"$(printf '\r')"}
if [ -z "$password" ]; then
    echo "redis: $secret is empty" >&2
    exit 1
fi
case "$password" in
    *[!A-Za-z0-9._~+/=-]*)
        echo "redis: redis_password may only hold letters, digits and . _ ~ + / = - (docker/make-secrets.sh makes one)" >&2
        exit 1
        ;;
esac

exec "${REDIS_ENTRYPOINT:-docker-entrypoint.sh}" redis-server - <<CONF
requirepass $password
maxmemory ${REDIS_MAXMEMORY:-200mb}
maxmemory-policy noeviction
CONF
