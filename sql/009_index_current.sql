-- Which version of each model's index is published: the pointer publishers agree on.
-- `indexing.pipeline._activate` locks this row (SELECT ... FOR UPDATE) while it flips CURRENT,
-- so two publishers (on any hosts) are serialised, and a publish never moves it backwards
-- (only a rollback may). With an object-store DATA_DIR, the CURRENT object readers use is
-- written under the same lock. Recorded, so a fallback honours the last publish or rollback.
CREATE TABLE IF NOT EXISTS index_current (
    model_version TEXT PRIMARY KEY,
    version       INTEGER NOT NULL CHECK (version >= 1),
    reason        TEXT NOT NULL DEFAULT 'publish' CHECK (reason IN ('publish', 'rollback')),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
