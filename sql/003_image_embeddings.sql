-- The ledger: one row per (image, model version). "Pending" images are those
-- with no row for the model version, so a late-committed row is never missed.
CREATE TABLE IF NOT EXISTS image_embeddings (
    image_id      INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    model_version TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('embedded', 'failed')),
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    parquet_part  TEXT,
    embedded_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (image_id, model_version),
    CHECK (status = 'failed' OR parquet_part IS NOT NULL)
);

-- Counts per model and status (stats, the Airflow plugin, index verification).
CREATE INDEX IF NOT EXISTS idx_image_embeddings_model_status
    ON image_embeddings (model_version, status);
