-- One row per built index version of a model. CURRENT on disk names the served
-- version; this table is the history the API, the CLI and the plugin show.
CREATE TABLE IF NOT EXISTS index_versions (
    model_version  TEXT NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    index_type     TEXT NOT NULL,
    vector_count   BIGINT NOT NULL CHECK (vector_count >= 0),
    path           TEXT NOT NULL,
    checksum       TEXT,
    status         TEXT NOT NULL
        CHECK (status IN ('built', 'verified', 'published', 'failed', 'pruned')),
    parent_version INTEGER,
    dag_run_id     TEXT,
    error          TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at   TIMESTAMPTZ,
    PRIMARY KEY (model_version, version)
);

CREATE INDEX IF NOT EXISTS idx_index_versions_status
    ON index_versions (model_version, status);
