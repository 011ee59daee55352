-- The seed's `images` table, exactly. We never change its columns; we only add
-- indexes that the pipeline's scans need.
CREATE TABLE IF NOT EXISTS images (
    id          SERIAL PRIMARY KEY,
    code        UUID NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    event_code  UUID NOT NULL REFERENCES events(code) ON DELETE CASCADE,
    filename    VARCHAR(255) NOT NULL,
    file_path   VARCHAR(500) NOT NULL,
    file_size   INTEGER,
    mime_type   VARCHAR(100),
    width       INTEGER,
    height      INTEGER,
    faiss_index INTEGER,
    created_at  TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_images_event_code ON images (event_code);
CREATE INDEX IF NOT EXISTS idx_images_created_at ON images (created_at);
