-- The Event Management System's `images` table, exactly as the original service's
-- README gives it (docs/design.md quotes it verbatim). On an existing EMS database
-- every statement below is a no-op for its columns: we never change them.
CREATE TABLE IF NOT EXISTS images (
  id SERIAL PRIMARY KEY,
  code UUID DEFAULT gen_random_uuid() UNIQUE,
  event_code UUID NOT NULL REFERENCES events(code) ON DELETE CASCADE,
  filename TEXT NOT NULL,
  file_path TEXT NOT NULL,
  file_size BIGINT,
  mime_type TEXT,
  width INTEGER,
  height INTEGER,
  faiss_index INTEGER,
  created_at TIMESTAMP DEFAULT NOW()
);

CREATE INDEX IF NOT EXISTS idx_images_event_code ON images(event_code);
CREATE INDEX IF NOT EXISTS idx_images_faiss_index ON images(faiss_index);

-- Ours (extra indexes are fine on an EMS database; none is UNIQUE, so rows an EMS
-- database already holds, duplicates included, never make a migration fail).
CREATE INDEX IF NOT EXISTS idx_images_created_at ON images (created_at);
-- POST /add_image finds an existing row per (event_code, file_path). md5 keeps the key
-- small: a btree entry of a raw TEXT path over ~2.7 kB would make inserts fail.
CREATE INDEX IF NOT EXISTS idx_images_event_path_md5 ON images (event_code, md5(file_path));
