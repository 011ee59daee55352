"""The fsspec filesystem of a Location, with the endpoint and credentials of the settings.

Credentials are looked up the way boto3 and s3fs look them up (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, a profile, an instance role), with
the settings' values (same names, also from `.env`) or the Airflow connection STORAGE_CONN_ID
taking precedence. They are never logged: `describe()` names the endpoint only.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from storage.location import Location

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from core.settings import Settings

USER_AGENT = "image-similarity-pipeline (python-botocore)"
_LOCK = threading.Lock()
_CACHE: dict[tuple[Any, ...], AbstractFileSystem] = {}


@dataclass(frozen=True)
class Credentials:
    """What an S3 client needs beyond the bucket; None leaves the standard AWS lookup to decide."""

    endpoint_url: str | None = None
    key: str | None = None
    secret: str | None = None
    region: str | None = None


def credentials(settings: Settings) -> Credentials:
    """The settings' object-store credentials, or the Airflow connection's when STORAGE_CONN_ID names one."""
    secret = settings.aws_secret_access_key.get_secret_value() if settings.aws_secret_access_key else None
    own = Credentials(settings.aws_endpoint_url, settings.aws_access_key_id, secret, settings.aws_default_region)
    if not settings.storage_conn_id:
        return own
    conn = _airflow_connection(settings.storage_conn_id)
    extra = conn.extra_dejson if conn is not None else {}
    if conn is None:
        return own
    return Credentials(
        endpoint_url=extra.get("endpoint_url") or own.endpoint_url,
        key=conn.login or own.key,
        secret=conn.password or own.secret,
        region=extra.get("region_name") or own.region,
    )


def _airflow_connection(conn_id: str) -> Any:
    """The Airflow connection `conn_id` (inside Airflow), None outside it; a clear error if it is missing."""
    try:
        from airflow.sdk import BaseHook
    except ImportError:
        return None
    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:
        raise RuntimeError(f"STORAGE_CONN_ID: Airflow connection {conn_id!r} not found ({type(exc).__name__})") \
            from None


def filesystem(location: Location, settings: Settings) -> AbstractFileSystem:
    """The filesystem serving `location`, one per process, protocol and credentials (fork-safe)."""
    import fsspec

    if location.is_local:
        return fsspec.filesystem("file")
    creds = credentials(settings)
    key = (os.getpid(), location.protocol, creds, settings.storage_timeout_seconds)
    with _LOCK:
        fs = _CACHE.get(key)
        if fs is None:
            options = _options(location.protocol, creds, settings)
            if location.protocol in ("s3", "s3a"):
                options["session"] = _s3_session()
            fs = fsspec.filesystem(location.protocol, **options, skip_instance_cache=True)
            _CACHE[key] = fs
        return fs


def _s3_session() -> Any:
    """An aiobotocore session whose responses' timestamps are parsed by the standard library: botocore's
    default (dateutil's general parser) was an eighth of a photo GET's client CPU (measured with yappi);
    the hook is botocore's own (`set_parser_defaults`, as the AWS CLI uses it)."""
    from aiobotocore.session import AioSession

    session = AioSession()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_timestamp)
    return session


def _timestamp(value: Any) -> Any:
    """An S3 timestamp as an aware datetime: HTTP dates (headers) and ISO 8601 (listings) directly, anything
    else by botocore's parser."""
    if isinstance(value, str):
        try:
            if value.endswith("GMT"):
                return parsedate_to_datetime(value)
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is not None:
                return parsed
        except (TypeError, ValueError):
            pass
    from botocore.utils import parse_timestamp

    return parse_timestamp(value)


def _options(protocol: str, creds: Credentials, settings: Settings) -> dict[str, Any]:
    if protocol not in ("s3", "s3a"):
        return {}
    timeout = settings.storage_timeout_seconds
    client: dict[str, Any] = {}
    if creds.endpoint_url:
        client["endpoint_url"] = creds.endpoint_url
    if creds.region:
        client["region_name"] = creds.region
    options: dict[str, Any] = {
        "client_kwargs": client,
        # A store that does not answer costs `timeout` per attempt, not botocore's minute; s3fs retries too.
        "config_kwargs": {"connect_timeout": timeout, "read_timeout": max(timeout, 30.0),
                          "retries": {"max_attempts": 2, "mode": "standard"},
                          # Our sha256 of every file is the integrity check; botocore's default CRC of ranged
                          # reads is not implemented alike by every S3-compatible server (rclone, older MinIO).
                          "request_checksum_calculation": "when_required",
                          "response_checksum_validation": "when_required",
                          # A fixed User-Agent (botocore's Config option): names us in the store's logs, and
                          # botocore no longer assembles and sanitises its own per request (an eighth of a
                          # photo GET's client CPU, measured: 1.74 -> 1.59 ms per GET with the timestamps').
                          "user_agent": USER_AGENT},
        "use_listings_cache": False,  # versions and parts appear from other hosts: always list afresh
    }
    if creds.key and creds.secret:
        options.update(key=creds.key, secret=creds.secret)
    return options


def describe(location: Location, settings: Settings) -> str:
    """The location and its endpoint, for logs and errors (no credentials)."""
    if location.is_local:
        return location.url
    endpoint = credentials(settings).endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "default endpoint"
    return f"{location.url} at {endpoint}"


def clear_cache() -> None:
    """Forget the filesystems (tests that change credentials or stop the store)."""
    with _LOCK:
        _CACHE.clear()
