-- A course deleted to the category bin: which bin item its rooms went with, and the activity
-- name each room belonged to. Restoring the item makes a new course with new modules (and,
-- for rooms rcjobs created, no room id in Moodle), matched to these rooms by name; purging it
-- deletes the rooms rcjobs created. Kept apart from `binid` because tool_recyclebin_course
-- and tool_recyclebin_category number their items independently.
ALTER TABLE rcjobs_sync.room
    ADD COLUMN IF NOT EXISTS category_binid bigint,
    ADD COLUMN IF NOT EXISTS activity_name text;
CREATE INDEX IF NOT EXISTS room_category_binid ON rcjobs_sync.room (category_binid)
    WHERE category_binid IS NOT NULL;
