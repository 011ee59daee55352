-- Claims: which embedding run owns an image right now, per model version.
-- A run's plan claims the images it will embed in the same statement that
-- selects them, so concurrent runs (schedule + manual + backfill + the CLI)
-- never embed the same image twice. A claim is a lease: when a run dies its
-- claims expire and another run takes the images over; a retry of the same
-- run renews them. Claims are deleted once the ledger has the outcome.
CREATE TABLE IF NOT EXISTS embedding_claims (
    image_id      INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    model_version TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    claimed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (image_id, model_version)
);

-- Progress of a run (the Airflow plugin) and releasing a run's claims.
CREATE INDEX IF NOT EXISTS idx_embedding_claims_run ON embedding_claims (run_id);
