-- The Event Management System owns `events`; create a minimal one only where
-- none exists (stand-alone and demo use). images.event_code references code.
CREATE TABLE IF NOT EXISTS events (
    id          SERIAL PRIMARY KEY,
    code        UUID NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    name        VARCHAR(255) NOT NULL DEFAULT '',
    created_at  TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
