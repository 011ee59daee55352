#!/bin/sh
# One-shot set-up of the object store, run by the minio-init service (the minio/mc image) once
# minio is healthy and before any service that reads or writes it starts:
#   1. the buckets of DATA_DIR and BACKUP_DIR (private), and IMAGE_ROOT's when it is an s3:// URL
#      (created if missing; an existing bucket, e.g. the Event Management app's own, is left as it is);
#   2. two access keys, each with its own policy:
#      - the pipeline's (Airflow): read-write on DATA_DIR's and BACKUP_DIR's buckets, read-only on IMAGE_ROOT's;
#      - the search server's: read-only on all three.
#      The root user is only for this script and the console.
# Idempotent: every `docker compose up` runs it again; buckets and objects are kept, the keys' secrets
# and the policies are set to what the compose file says.
# POSIX sh with mc only: the minio/mc image has no grep, sed or jq.
# The secrets come from files (compose secrets: MINIO_ROOT_PASSWORD_FILE, PIPELINE_SECRET_KEY_FILE,
# SEARCH_SECRET_KEY_FILE, each /run/secrets/<name>); the variable itself is read when no file is named.
set -eu

fail() {
    echo "minio-init: $*" >&2
    exit 1
}

# NAME from the file NAME_FILE names (its first line), unless NAME_FILE is unset.
from_file() {
    eval "path=\${$1_FILE:-}"
    [ -n "$path" ] || return 0
    eval "given=\${$1:-}"
    [ -z "$given" ] || fail "both $1 and $1_FILE are set; keep one"
    [ -r "$path" ] || fail "$1_FILE=$path is missing or not readable"
    value=""
    IFS= read -r value <"$path" || [ -n "$value" ] || fail "$1_FILE=$path is empty"
    value=${value%"$(printf '\r')"}
    eval "$1=\$value"
}
from_file MINIO_ROOT_PASSWORD
from_file PIPELINE_SECRET_KEY
from_file SEARCH_SECRET_KEY

: "${MINIO_URL:=http://minio:9000}"
: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set}"
: "${DATA_DIR:?DATA_DIR is not set}"
: "${BACKUP_DIR:?BACKUP_DIR is not set}"
: "${PIPELINE_ACCESS_KEY:?PIPELINE_ACCESS_KEY is not set}"
: "${PIPELINE_SECRET_KEY:?PIPELINE_SECRET_KEY is not set}"
: "${SEARCH_ACCESS_KEY:?SEARCH_ACCESS_KEY is not set}"
: "${SEARCH_SECRET_KEY:?SEARCH_SECRET_KEY is not set}"
IMAGE_ROOT="${IMAGE_ROOT:-}"

# The bucket of an s3:// setting, printed; nothing for a folder (only IMAGE_ROOT may be one).
bucket_of() {
    case "$2" in
        s3://*)
            rest=${2#s3://}
            bucket=${rest%%/*}
            case "$bucket" in
                "" | *[!a-z0-9.-]*) fail "$1=$2: the bucket name must be lower-case letters, digits, '.' and '-'" ;;
            esac
            printf '%s\n' "$bucket"
            ;;
        *://*) fail "$1=$2: only s3:// URLs are served by this store" ;;
        *) ;;
    esac
}

data_bucket=$(bucket_of DATA_DIR "$DATA_DIR")
backup_bucket=$(bucket_of BACKUP_DIR "$BACKUP_DIR")
image_bucket=$(bucket_of IMAGE_ROOT "$IMAGE_ROOT")
[ -n "$data_bucket" ] || fail "DATA_DIR=$DATA_DIR is not an s3:// URL"
[ -n "$backup_bucket" ] || fail "BACKUP_DIR=$BACKUP_DIR is not an s3:// URL"
[ "$PIPELINE_ACCESS_KEY" != "$MINIO_ROOT_USER" ] && [ "$SEARCH_ACCESS_KEY" != "$MINIO_ROOT_USER" ] \
    || fail "the pipeline's and the search server's access keys must differ from MINIO_ROOT_USER"
[ "$PIPELINE_ACCESS_KEY" != "$SEARCH_ACCESS_KEY" ] || fail "STORAGE_ACCESS_KEY and SEARCH_STORAGE_ACCESS_KEY must differ"

# minio is healthy before this starts (depends_on); the retries cover a restart in between.
tries=0
until mc alias set local "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -lt "${MINIO_INIT_TRIES:-30}" ] || fail "$MINIO_URL does not answer (or refuses MINIO_ROOT_USER)"
    sleep 2
done

for bucket in "$data_bucket" "$backup_bucket"; do
    mc mb --ignore-existing "local/$bucket"
    mc anonymous set none "local/$bucket" >/dev/null  # the pipeline's own buckets are never public
done
if [ -n "$image_bucket" ]; then
    mc mb --ignore-existing "local/$image_bucket"
fi

# Policies (AWS IAM JSON). Buckets: listing and location; objects: what each key needs.
arns() {  # bucket names -> "arn:aws:s3:::a","arn:aws:s3:::b" (suffix $1 appended to each)
    suffix=$1
    shift
    out=""
    for b in "$@"; do
        out="${out:+$out,}\"arn:aws:s3:::$b$suffix\""
    done
    printf '%s' "$out"
}
statement() {  # actions resources
    printf '{"Effect": "Allow", "Action": [%s], "Resource": [%s]}' "$1" "$2"
}
list='"s3:ListBucket", "s3:GetBucketLocation"'
read_objects='"s3:GetObject"'
write_buckets='"s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"'
write_objects='"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"'

set -- "$data_bucket" "$backup_bucket"
pipeline="$(statement "$write_buckets" "$(arns "" "$@")"), $(statement "$write_objects" "$(arns "/*" "$@")")"
[ -n "$image_bucket" ] && set -- "$@" "$image_bucket"
search="$(statement "$list" "$(arns "" "$@")"), $(statement "$read_objects" "$(arns "/*" "$@")")"
if [ -n "$image_bucket" ]; then
    pipeline="$pipeline, $(statement "$list" "$(arns "" "$image_bucket")")"
    pipeline="$pipeline, $(statement "$read_objects" "$(arns "/*" "$image_bucket")")"
fi

policy_dir=$(mktemp -d)
trap 'rm -rf "$policy_dir"' EXIT
printf '{"Version": "2012-10-17", "Statement": [%s]}\n' "$pipeline" >"$policy_dir/imgsim-pipeline.json"
printf '{"Version": "2012-10-17", "Statement": [%s]}\n' "$search" >"$policy_dir/imgsim-search.json"

# The policy attached to a user; a re-run finds it attached already, which is what we want.
attach() {
    if ! out=$(mc admin policy attach local "$1" --user "$2" 2>&1); then
        case "$out" in
            *"already in effect"* | *"already attached"*) ;;
            *) printf '%s\n' "$out" >&2; fail "attaching policy $1 to $2 failed" ;;
        esac
    fi
}

for role in pipeline search; do
    if [ "$role" = pipeline ]; then
        key=$PIPELINE_ACCESS_KEY secret=$PIPELINE_SECRET_KEY
    else
        key=$SEARCH_ACCESS_KEY secret=$SEARCH_SECRET_KEY
    fi
    mc admin policy create local "imgsim-$role" "$policy_dir/imgsim-$role.json" >/dev/null
    mc admin user add local "$key" "$secret" >/dev/null
    attach "imgsim-$role" "$key"
done

echo "minio-init: buckets $data_bucket (DATA_DIR), $backup_bucket (BACKUP_DIR)${image_bucket:+, $image_bucket (IMAGE_ROOT)};" \
    "keys $PIPELINE_ACCESS_KEY (pipeline, read-write) and $SEARCH_ACCESS_KEY (search server, read-only)"
