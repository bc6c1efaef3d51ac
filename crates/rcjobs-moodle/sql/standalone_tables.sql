-- Standalone mode: the rooms rcjobs manages without mod_rocketchat (a site without the plugin,
-- or a course-wide room beside the plugin's activity rooms). rcjobs owns these two tables; they
-- live in the Moodle database so that the capture triggers can tell, with one index probe,
-- whether a change concerns a declared room, and so that a Moodle admin can declare rooms in
-- SQL. Created by `rcjobs moodle install-triggers` and `rcjobs rooms add`; never dropped by
-- rcjobs (uninstalling the triggers keeps the declarations).

-- One row per declared room. `roomkey` is the room's key everywhere in rcjobs (job payloads'
-- `cmid`, the room lock `room:<key>`, rcjobs_sync.room.cmid): the course module id for an
-- activity's room, minus the course id for a course's room (course module ids are positive,
-- so the two never meet).
CREATE TABLE IF NOT EXISTS {schema}.{prefix}rcjobs_room (
  roomkey bigint PRIMARY KEY,
  courseid bigint NOT NULL,
  cmid bigint,
  name text NOT NULL,
  roomid text NOT NULL DEFAULT '',
  moderatorroles text NOT NULL DEFAULT '',
  userroles text NOT NULL DEFAULT '',
  retentionenabled smallint NOT NULL DEFAULT 0,
  maxage bigint NOT NULL DEFAULT 90,
  filesonly smallint NOT NULL DEFAULT 0,
  excludepinned smallint NOT NULL DEFAULT 0,
  categoryrule bigint,
  timecreated bigint NOT NULL DEFAULT extract(epoch FROM now())::bigint,
  CONSTRAINT {prefix}rcjobs_room_key CHECK (roomkey = coalesce(cmid, -courseid) AND courseid > 0 AND (cmid IS NULL OR cmid > 0))
);
CREATE INDEX IF NOT EXISTS {prefix}rcjobs_room_course_ix ON {schema}.{prefix}rcjobs_room (courseid);
COMMENT ON TABLE {schema}.{prefix}rcjobs_room IS 'created by rcjobs: chat rooms declared for courses or activities (standalone mode)';

-- "Every course in category C (and below, with subcategories)": a course created in or moved
-- into such a category gets a course room declared by the course trigger.
CREATE TABLE IF NOT EXISTS {schema}.{prefix}rcjobs_room_rule (
  categoryid bigint PRIMARY KEY,
  subcategories boolean NOT NULL DEFAULT true,
  moderatorroles text,
  userroles text,
  timecreated bigint NOT NULL DEFAULT extract(epoch FROM now())::bigint
);
COMMENT ON TABLE {schema}.{prefix}rcjobs_room_rule IS 'created by rcjobs: categories whose every course gets a chat room (standalone mode)';
