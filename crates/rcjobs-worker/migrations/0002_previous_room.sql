-- The room a course module had before Moodle pointed it at another one (the plugin's
-- "recreate", an admin fix, a duplicate receiving its own group): the worker follows Moodle
-- and leaves the previous room as it is; this records which one that was, and when.
ALTER TABLE rcjobs_sync.room
    ADD COLUMN IF NOT EXISTS previous_room_id text,
    ADD COLUMN IF NOT EXISTS room_changed_at timestamptz;
