"""All configuration in one place, read from the environment and a `.env` file.

The seed's variable names (DB_HOST, DB_NAME, DB_USER, DB_PASS, DB_PORT,
API_PORT) are kept so an existing deployment's environment still works.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


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

    # Files.
    data_dir: Path = Path("data")
    image_root: Path | None = Field(
        None, description="images.file_path is read relative to it; default DATA_DIR/images"
    )
    sample_data_dir: Path | None = Field(
        None, description="real photos for tests, demo and benchmarks; default ../shared/data when present"
    )

    # Model.
    embedding_model: str = "places365-resnet50"
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
    embed_batch_size: int = Field(32, ge=1, le=1024)
    embed_decode_workers: int = Field(2, ge=1, le=64)
    torch_threads: int = Field(0, ge=0, description="model threads, torch or ONNX Runtime; 0 = all cores")

    # Index store.
    index_keep_versions: int = Field(5, ge=1, description="published versions kept as backups")
    index_exact_max_vectors: int = Field(
        200_000, ge=0, description="exact inner-product search up to this many vectors, HNSW above "
        "(bench/index_search.py: exact top-10 p50 ~33 ms per 100K x 1280-d on 2 cores; see docs/indexing.md)"
    )
    index_memory_budget_mb: int = Field(16_384, ge=64, description="IVF-PQ when vectors would not fit")
    index_hnsw_m: int = Field(32, ge=4)
    index_hnsw_ef_search: int | None = Field(
        None, ge=8, description="HNSW efSearch; default the measured choice in indexing/choice.py (512)"
    )
    backup_dir: Path | None = Field(
        None, description="full, verified copies of published index versions, sharing no file with the store "
        "(put it on another disk); default DATA_DIR/index-backups"
    )
    index_recheck_seconds: float = Field(
        600.0, gt=0, description="the server re-hashes the files of the version it serves this often"
    )

    # Search server.
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_key: str | None = Field(None, description="when set, write routes need the X-API-Key header")
    max_upload_mb: float = Field(20.0, gt=0)
    swap_poll_seconds: float = Field(2.0, gt=0)
    # Search server under load and faults (docs/api.md "Limits").
    upload_concurrency: int = Field(2, ge=1, le=64, description="uploads decoded+embedded at once; more: 503")
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

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir.is_absolute() else (Path.cwd() / self.data_dir)

    @property
    def resolved_image_root(self) -> Path:
        return (self.image_root or self.resolved_data_dir / "images").resolve()

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
        if self.backup_dir is None:
            return self.resolved_data_dir / "index-backups"
        return self.backup_dir if self.backup_dir.is_absolute() else Path.cwd() / self.backup_dir

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


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation errors into one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
        raise SettingsError("invalid setting " + "; ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing the env."""
    return load_settings()


def sample_data_dir(settings: Settings | None = None) -> Path | None:
    """Where real test photos live: SAMPLE_DATA_DIR, else ../shared/data beside the repo, else None.

    A user's clone has no ../shared; callers then generate images instead.
    """
    configured = (settings or get_settings()).sample_data_dir
    if configured is not None:
        return configured if configured.is_dir() else None
    fallback = REPO_ROOT.parent / "shared" / "data"
    return fallback if fallback.is_dir() else None
