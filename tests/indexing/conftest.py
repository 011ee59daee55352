"""Fixtures for the index store: real database rows and real Parquet parts (docs/design.md schema)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

MODEL = "test-model@v1"
DIM = 16


def unit_vectors(seed: int, n: int, dim: int = DIM) -> np.ndarray:
    """Clustered, L2-normalised vectors (not uniform noise), deterministic per seed."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, dim))
    x = centres[rng.integers(0, 4, n)] + 0.4 * rng.normal(size=(n, dim))
    x = x.astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


class Corpus:
    """Events, images, ledger rows and Parquet parts for one model version, as the embeddings part writes them."""

    def __init__(self, db, settings, model_version: str = MODEL, dim: int = DIM) -> None:
        self.db = db
        self.settings = settings
        self.model_version = model_version
        self.dim = dim
        self.vectors: dict[int, np.ndarray] = {}
        self.event_of: dict[int, str] = {}
        self._parts = 0
        self._seed = 0

    @property
    def dataset(self) -> Path:
        return self.settings.embeddings_dir / f"model_version={self.model_version}"

    def event(self) -> str:
        return str(self.db.execute("INSERT INTO events (name) VALUES ('e') RETURNING code").fetchone()[0])

    def images(self, event_code: str, n: int) -> list[int]:
        rows = self.db.execute(
            """INSERT INTO images (event_code, filename, file_path)
               SELECT %s, 'img_' || g || '.jpg', '/uploads/img_' || g || '.jpg' FROM generate_series(1, %s) g
               RETURNING id""", (event_code, n)).fetchall()
        ids = [r[0] for r in rows]
        for i in ids:
            self.event_of[i] = event_code
        return ids

    def embed(self, ids: list[int], vectors: np.ndarray | None = None, *, dim: int | None = None,
              ledger: bool = True) -> Path:
        """Write one part with these images' vectors and upsert their ledger rows ('embedded')."""
        dim = dim or self.dim
        if vectors is None:
            self._seed += 1
            vectors = unit_vectors(1000 + self._seed, len(ids), dim)
        info = self.db.execute(
            "SELECT id, code::text, event_code::text FROM images WHERE id = ANY(%s) ORDER BY id", (ids,)
        ).fetchall()
        by_id = {r[0]: r for r in info}
        now = datetime.now(UTC)
        self._parts += 1
        self.dataset.mkdir(parents=True, exist_ok=True)
        path = self.dataset / f"part-test-{self._parts:05d}.parquet"
        vec_type = pa.list_(pa.float32(), dim)
        table = pa.table({
            "image_id": pa.array(ids, pa.int64()),
            "image_code": pa.array([by_id[i][1] for i in ids], pa.string()),
            "event_code": pa.array([by_id[i][2] for i in ids], pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
            .cast(vec_type),
            "model_version": pa.array([self.model_version] * len(ids), pa.string()),
            "width": pa.array([640] * len(ids), pa.int32()),
            "height": pa.array([480] * len(ids), pa.int32()),
            "embedded_at": pa.array([now] * len(ids), pa.timestamp("us", tz="UTC")),
        })
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
        pq.write_table(table, tmp)
        tmp.rename(path)
        if ledger:
            with self.db.cursor() as cur:
                cur.executemany(
                    """INSERT INTO image_embeddings (image_id, model_version, status, parquet_part, embedded_at)
                       VALUES (%s, %s, 'embedded', %s, %s)
                       ON CONFLICT (image_id, model_version) DO UPDATE SET status = 'embedded', error = NULL,
                         parquet_part = EXCLUDED.parquet_part, embedded_at = EXCLUDED.embedded_at,
                         attempts = image_embeddings.attempts + 1""",
                    [(i, self.model_version, str(path.relative_to(self.settings.resolved_data_dir)), now)
                     for i in ids],
                )
        for i, v in zip(ids, vectors, strict=True):
            self.vectors[i] = v
        return path

    def fail(self, image_id: int) -> None:
        self.db.execute(
            """INSERT INTO image_embeddings (image_id, model_version, status, error) VALUES (%s, %s, 'failed', 'x')
               ON CONFLICT (image_id, model_version) DO UPDATE SET status = 'failed', parquet_part = NULL""",
            (image_id, self.model_version))

    def delete(self, ids: list[int]) -> None:
        self.db.execute("DELETE FROM images WHERE id = ANY(%s)", (ids,))
        for i in ids:
            self.vectors.pop(i, None)
            self.event_of.pop(i, None)

    def expected_ids(self) -> set[int]:
        rows = self.db.execute(
            "SELECT image_id FROM image_embeddings WHERE model_version = %s AND status = 'embedded'",
            (self.model_version,)).fetchall()
        return {r[0] for r in rows}


@pytest.fixture
def corpus(db, settings) -> Corpus:
    return Corpus(db, settings)


@pytest.fixture
def conninfo(pg_database: str) -> str:
    return pg_database


@pytest.fixture
def small_corpus(corpus: Corpus) -> Corpus:
    """Three events (30, 20, 10 images) embedded in two parts."""
    ids = []
    for n in (30, 20, 10):
        ids += corpus.images(corpus.event(), n)
    corpus.embed(ids[:35])
    corpus.embed(ids[35:])
    return corpus
