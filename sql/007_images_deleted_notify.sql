-- The search server learns of deleted images without a query per search: every
-- DELETE on `images` NOTIFYs the channel `images_deleted` with the ids (comma
-- separated, 500 per notification: a payload must stay under 8,000 bytes), and a
-- TRUNCATE notifies '*' (the server then re-reads which of its ids still exist).
-- Safe on an existing EMS database: it adds a function and triggers of ours and
-- never touches a column; re-running it changes nothing (the function is replaced).
CREATE OR REPLACE FUNCTION imgsim_notify_images_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    chunk text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('images_deleted', '*');
        RETURN NULL;
    END IF;
    FOR chunk IN
        SELECT string_agg(id::text, ',') FROM (
            SELECT id, (row_number() OVER () - 1) / 500 AS part FROM gone
        ) numbered GROUP BY part
    LOOP
        PERFORM pg_notify('images_deleted', chunk);
    END LOOP;
    RETURN NULL;
END
$$;

-- Created only when missing (no DROP: that needs the table's owner; CREATE TRIGGER
-- needs only the TRIGGER privilege on `images`).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'images'::regclass
                   AND tgname = 'imgsim_images_deleted') THEN
        CREATE TRIGGER imgsim_images_deleted AFTER DELETE ON images
            REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION imgsim_notify_images_deleted();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'images'::regclass
                   AND tgname = 'imgsim_images_truncated') THEN
        CREATE TRIGGER imgsim_images_truncated AFTER TRUNCATE ON images
            FOR EACH STATEMENT EXECUTE FUNCTION imgsim_notify_images_deleted();
    END IF;
END
$$;
