-- A merge reads only the ledger rows (re-)embedded since its parent's watermark
-- (indexing/sources.py read_ledger(since=...)): without this index that query
-- scans the whole ledger and the merge costs O(N) again.
CREATE INDEX IF NOT EXISTS idx_image_embeddings_model_embedded_at
    ON image_embeddings (model_version, embedded_at);
