-- Claims that die with their owner (embeddings/planning.py).
-- A claim keeps other runs away only while its run is alive:
--   * a process of the run is working: it holds the run's session advisory lock
--     (hashtextextended('embedding_run:' || run_id, 0)), which PostgreSQL ends the
--     moment that process or its connection dies;
--   * or the claim waits for a task not started yet (taken_at IS NULL), the run is
--     made of several processes (Airflow tasks, not the CLI: one_process false) and
--     it was seen within the hand-off grace (its plan, or a task's start or end).
-- The lease (expires_at) stays the upper bound.
CREATE TABLE IF NOT EXISTS embedding_runs (
    run_id    TEXT PRIMARY KEY,
    last_seen TIMESTAMPTZ NOT NULL DEFAULT now(),
    one_process BOOLEAN NOT NULL DEFAULT false
);

-- Set when an embed task of the run takes the claim (planning.take); NULL while only planned.
ALTER TABLE embedding_claims ADD COLUMN IF NOT EXISTS taken_at TIMESTAMPTZ;
