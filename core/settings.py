"""All configuration in one place, read from the environment and a `.env` file.

The seed's variable names (DB_HOST, DB_NAME, DB_USER, DB_PASS, DB_PORT,
API_PORT) are kept so an existing deployment's environment still works.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.location import Location, LocationError, parse_location

REPO_ROOT = Path(__file__).resolve().parent.parent

# The default model: the seed's Places365 where its weights are present, else the model that ships with its
# package and works offline. One rule for the demo, the server, the DAGs and make stack (Settings._model).
PLACES365 = "places365-resnet50"
OFFLINE_MODEL = "efficientnet-lite0"


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message names the variable to fix."""


class Settings(BaseSettings):
    """Every knob of the pipeline. Field names map to upper-case env variables."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # Database (the Event Management System's PostgreSQL).
    db_host: str = "127.0.0.1"
    db_port: int = Field(5432, ge=1, le=65535)
    db_name: str = "event_management"
    db_user: str = "postgres"
    db_pass: str = ""
    db_connect_timeout: int = Field(5, ge=1, description="seconds before an unreachable database is reported")

    # Files: a local folder or an object-store URL (s3://bucket/prefix; storage/, docs/operations.md).
    data_dir: str = Field("data", description="embeddings, index versions (and weights when local); a folder or "
                          "s3://bucket/prefix")
    image_root: str | None = Field(
        None, description="images.file_path is read relative to it (a folder or s3://bucket/prefix); "
        "default DATA_DIR/images"
    )
    sample_data_dir: Path | None = Field(
        None, description="real photos for tests, demo and benchmarks; default ../shared/data when present"
    )

    # Model.
    embedding_model: str = Field(
        "", description="model spec name[@preprocess][+variant]; empty: places365-resnet50 when its weights "
        "(MODEL_WEIGHTS) are present, else efficientnet-lite0 (ships with its package). Set it on every host "
        "of a deployment over several hosts"
    )
    _model_reason: str = PrivateAttr("")
    model_weights: Path | None = Field(
        None, description="Places365 checkpoint; default DATA_DIR/weights/resnet50_places365.pth.tar"
    )
    embedding_runtime: Literal["onnx", "torch"] = Field(
        "onnx", description="where the model runs; onnx = ONNX Runtime on a file exported from the torch weights "
        "(same vectors, a third of the memory: docs/embeddings.md)"
    )
    model_cache_dir: Path | None = Field(
        None, description="generated model files (the ONNX exports); default DATA_DIR/weights"
    )
    embedding_schedule: str = Field("*/10 * * * *", description="cron (UTC) of the scheduled image_embeddings runs, "
                                    "read by the DAG file; none = manual runs only")
    embed_batch_size: int = Field(32, ge=1, le=1024)
    embed_decode_workers: int = Field(2, ge=1, le=64)
    embed_read_ahead: int = Field(
        8, ge=1, le=256, description="photo reads in flight ahead of the decoders: an object store answers each "
        "GET after tens of milliseconds, which two decoders reading in turn would wait for"
    )
    torch_threads: int = Field(0, ge=0, description="model threads, torch or ONNX Runtime; 0 = all cores")
    relations_processes: int = Field(
        0, ge=0, le=64, description="processes an index build verifies events' duplicate relations on at once; "
        "0 = one per core, 1 = in the build's own process (docs/indexing.md)"
    )

    # Index store.
    index_keep_versions: int = Field(5, ge=1, description="published versions kept as backups")
    index_exact_max_vectors: int = Field(
        200_000, ge=0, description="exact inner-product search up to this many vectors, HNSW above "
        "(bench/index_search.py: exact top-10 p50 ~33 ms per 100K x 1280-d on 2 cores; see docs/indexing.md)"
    )
    index_memory_budget_mb: int = Field(16_384, ge=64, description="IVF-PQ when vectors would not fit")
    index_hnsw_m: int = Field(32, ge=4)
    index_hnsw_ef_search: int | None = Field(
        None, ge=8, description="HNSW efSearch; default the measured choice in indexing/build/choice.py (512)"
    )
    backup_dir: str | None = Field(
        None, description="full, verified copies of published index versions, sharing no file with the store "
        "(another disk, bucket or prefix); default DATA_DIR/index-backups"
    )
    index_recheck_seconds: float = Field(
        600.0, gt=0, description="the server re-hashes the files of the version it serves this often"
    )

    # Object storage (only read when a folder setting is a URL). The standard AWS variables, as boto3 reads them.
    aws_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, Ceph, ...); "
                                         "default AWS's")
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_default_region: str | None = None
    storage_conn_id: str | None = Field(None, description="inside Airflow: an Airflow connection (AWS type) "
                                        "whose login, password and extra endpoint_url/region_name are used")
    storage_cache_dir: Path | None = Field(
        None, description="this process's local copies of a remote DATA_DIR (parts being written, versions "
        "being built or served); default ~/.cache/image-similarity. One per process on a shared host")
    storage_timeout_seconds: float = Field(10.0, gt=0, le=600, description="connect timeout of object-store "
                                           "calls; a store that does not answer costs this per attempt")

    # Search server.
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_key: str | None = Field(None, description="when set, write routes need the X-API-Key header")
    max_upload_mb: float = Field(20.0, gt=0)
    swap_poll_seconds: float = Field(2.0, gt=0)
    # Search server under load and faults (docs/api.md "Limits").
    upload_concurrency: int = Field(2, ge=1, le=64, description="uploads decoded+embedded at once; more: 503")
    check_threads: int = Field(0, ge=0, le=64, description="threads one upload's check uses (duplicate check, "
                               "search by image): its keypoint votes on all but one, beside the verifications; "
                               "0 = one per core, 1 = one after the other")
    relations_concurrency: int = Field(1, ge=1, le=16, description="events whose duplicate relations the server "
                                       "computes at once (only for a version without them); more: 503")
    relations_wait_seconds: float = Field(5.0, ge=0, le=60, description="how long an event route waits for a "
                                          "computation of its relations before 503 with Retry-After")
    upload_decode_mb: float = Field(256.0, gt=0, description="memory one upload's decode may take (bytes, "
                                    "after JPEG draft); a 10,950² 16-bit PNG needs 240 MB")
    db_request_timeout: float = Field(0.25, gt=0, le=30, description="deadline of each database call on the "
                                      "request path (connect, statement, cancel); a hung database costs this once")
    deleted_filter_stale_seconds: float = Field(2.0, gt=0, le=300, description="how long the server's set of "
                                                "deleted images (kept by NOTIFY) may go unconfirmed before searches "
                                                "ask the database again")
    deleted_catch_up_seconds: float = Field(300.0, gt=0, description="period of the full re-read of which served "
                                            "ids still exist (covers deletions no trigger saw)")
    search_server_url: str | None = Field(
        None, description="public URL of the search server for links (Airflow plugin); default http://API_HOST:API_PORT/"
    )

    @field_validator("data_dir", "image_root", "backup_dir", mode="before")
    @classmethod
    def _folder_or_url(cls, value: object) -> object:
        """A Path or a string; parsed here so a bad scheme stops every command at start (LocationError)."""
        if value is None:
            return None
        text = str(value)
        parse_location(text, "folder")  # raises ValueError subclasses: reported with the variable's name
        return text

    @model_validator(mode="after")
    def _model(self) -> Settings:
        """EMBEDDING_MODEL, else the default rule; `model_reason` says which, for logs and the demo."""
        self.embedding_model = self.embedding_model.strip()
        if self.embedding_model:
            self._model_reason = "EMBEDDING_MODEL"
            return self
        weights = self.resolved_model_weights
        if weights.is_file():
            self.embedding_model, self._model_reason = PLACES365, f"Places365 weights found at {weights}"
        else:
            self.embedding_model, self._model_reason = OFFLINE_MODEL, (
                f"EMBEDDING_MODEL unset and no Places365 weights at {weights} (`make weights` downloads them); "
                "efficientnet-lite0 ships with its package")
        return self

    @property
    def model_reason(self) -> str:
        """Why `embedding_model` is what it is: set by EMBEDDING_MODEL, or which default and why."""
        return self._model_reason

    @property
    def data_location(self) -> Location:
        """Where embeddings and index versions live: a local folder or an object-store prefix."""
        return parse_location(self.data_dir, "DATA_DIR")

    @property
    def image_location(self) -> Location:
        """Where images.file_path is read: IMAGE_ROOT, default DATA_DIR/images (a folder or a prefix)."""
        if self.image_root is None:
            return self.data_location.child("images")
        return parse_location(self.image_root, "IMAGE_ROOT")

    @property
    def backup_location(self) -> Location:
        if self.backup_dir is None:
            return self.data_location.child("index-backups")
        return parse_location(self.backup_dir, "BACKUP_DIR")

    @property
    def remote_data(self) -> bool:
        """DATA_DIR is an object store: local work happens in this process's cache (storage/mirror.py)."""
        return not self.data_location.is_local

    @property
    def resolved_storage_cache_dir(self) -> Path:
        path = (self.storage_cache_dir or Path.home() / ".cache" / "image-similarity").expanduser()
        return path if path.is_absolute() else Path.cwd() / path

    @property
    def resolved_data_dir(self) -> Path:
        """The local folder the pipeline works in: DATA_DIR itself, or for an object-store DATA_DIR this
        process's mirror of it in the cache (what was downloaded, what is being written before upload)."""
        location = self.data_location
        if location.is_local:
            return location.path
        return self.resolved_storage_cache_dir / "data" / _slug(location.url)

    @property
    def resolved_image_root(self) -> Path:
        """IMAGE_ROOT as a local folder; only for a local one (an object-store root is read by storage.images)."""
        location = self.image_location
        if not location.is_local:
            raise LocationError(f"IMAGE_ROOT {location.url} is an object store, not a folder")
        return location.path.resolve()

    @property
    def resolved_model_weights(self) -> Path:
        return self.model_weights or self.resolved_data_dir / "weights" / "resnet50_places365.pth.tar"

    @property
    def resolved_model_cache_dir(self) -> Path:
        path = self.model_cache_dir or self.resolved_data_dir / "weights"
        return path if path.is_absolute() else Path.cwd() / path

    @property
    def embeddings_dir(self) -> Path:
        return self.resolved_data_dir / "embeddings"

    @property
    def indexes_dir(self) -> Path:
        return self.resolved_data_dir / "indexes"

    @property
    def resolved_backup_dir(self) -> Path:
        """BACKUP_DIR as a local folder (for an object-store BACKUP_DIR: its mirror in the cache)."""
        location = self.backup_location
        if location.is_local:
            return location.path
        return self.resolved_storage_cache_dir / "backups" / _slug(location.url)

    def conninfo(self, dbname: str | None = None) -> str:
        """libpq connection string for psycopg (values quoted, so any password works)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.db_host,
            port=self.db_port,
            dbname=dbname or self.db_name,
            user=self.db_user,
            password=self.db_pass or None,
            connect_timeout=self.db_connect_timeout,
            application_name="image-similarity",
        )


def _slug(url: str) -> str:
    """A URL as one folder name of the cache (readable, and distinct for distinct URLs)."""
    import hashlib
    import re

    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", url)[-60:].strip("_")
    return f"{readable}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation errors into one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper()
            cause = err.get("ctx", {}).get("error")
            if isinstance(cause, LocationError):  # its own line names the problem; the input may hold a path
                lines.append(f"{name}: {str(cause).split(': ', 1)[-1]}")
                continue
            lines.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
        raise SettingsError("invalid setting " + "; ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing the env."""
    return load_settings()


def or_one_per_core(count: int) -> int:
    """A count setting's value, where 0 means one per core (RELATIONS_PROCESSES, CHECK_THREADS)."""
    return count or (os.cpu_count() or 1)


def sample_data_dir(settings: Settings | None = None) -> Path | None:
    """Where real test photos live: SAMPLE_DATA_DIR, else ../shared/data beside the repo, else None.

    A user's clone has no ../shared; callers then generate images instead.
    """
    configured = (settings or get_settings()).sample_data_dir
    if configured is not None:
        return configured if configured.is_dir() else None
    fallback = REPO_ROOT.parent / "shared" / "data"
    return fallback if fallback.is_dir() else None
