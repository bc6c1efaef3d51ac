-- Change-capture mode, the plugin's own table: installed only where `{prefix}rocketchat`
-- exists (a site without mod_rocketchat has no such table; its rooms are declared ones,
-- standalone.sql). Same contract as triggers_change_capture.sql: a failure here is a WARNING,
-- never a failed Moodle write.

-- rocketchat: insert of an already linked activity -> restore; role mapping or group
-- changed -> synchronize_group; delete -> purge, unless the activity went to a recycle bin
-- (then the bin insert already asked for trash).
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_rocketchat()
RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  cmid bigint;
  binned boolean := false;
BEGIN
  IF TG_OP = 'DELETE' THEN
    SELECT cm.id INTO cmid FROM {schema}.{prefix}course_modules cm
     WHERE cm.instance = OLD.id AND cm.module = {schema}.{prefix}rcjobs_rc_module() ORDER BY cm.id DESC LIMIT 1;
    IF to_regclass('{schema}.{prefix}tool_recyclebin_course') IS NOT NULL THEN
      IF EXISTS (SELECT 1 FROM {schema}.{prefix}tool_recyclebin_course b
                  WHERE b.courseid = OLD.course AND b.module = {schema}.{prefix}rcjobs_rc_module() AND b.name = OLD.name) THEN
        binned := true;
      END IF;
    END IF;
    IF NOT binned AND to_regclass('{schema}.{prefix}tool_recyclebin_category') IS NOT NULL THEN
      IF EXISTS (SELECT 1 FROM {schema}.{prefix}course c
                   JOIN {schema}.{prefix}tool_recyclebin_category b ON b.categoryid = c.category AND b.shortname = c.shortname
                  WHERE c.id = OLD.course) THEN
        binned := true;
        -- The whole course went to the category bin (its item is written before the course is
        -- deleted): archive the room at once rather than leave it writable with every former
        -- member. A course restored from the bin gets new activities carrying this room's id;
        -- their syncs unarchive it.
        -- One course-wide job whatever the number of activities (dedup per course); the worker
        -- finds the rooms (its own mapping: rooms it created have no id in Moodle).
        PERFORM {schema}.{prefix}rcjobs_enqueue_room('recyclebin',
          jsonb_build_object('action', 'trash', 'courseid', OLD.course),
          'recyclebin:trash:course:' || OLD.course, NULL);
      END IF;
    END IF;
    IF NOT binned THEN
      PERFORM {schema}.{prefix}rcjobs_enqueue_room('recyclebin',
        jsonb_build_object('action', 'purge', 'cmid', cmid, 'courseid', OLD.course, 'instanceid', OLD.id, 'rocketchatid', OLD.rocketchatid),
        NULL, 'room:' || cmid); -- NULL when no course module is left
    END IF;
    RETURN NULL;
  END IF;
  SELECT cm.id INTO cmid FROM {schema}.{prefix}course_modules cm
   WHERE cm.instance = NEW.id AND cm.module = {schema}.{prefix}rcjobs_rc_module() ORDER BY cm.id DESC LIMIT 1;
  IF TG_OP = 'INSERT' THEN
    -- Moodle inserts the course_modules row with instance 0 and links it after this insert;
    -- the course_modules trigger enqueues the restore then. Only an already-linked row is
    -- handled here (bulk tools writing explicit ids).
    IF cmid IS NOT NULL THEN
      PERFORM {schema}.{prefix}rcjobs_enqueue_room('restore',
        jsonb_build_object('cmid', cmid, 'courseid', NEW.course, 'instanceid', NEW.id, 'rocketchatid', NEW.rocketchatid),
        'restore:' || cmid, 'room:' || cmid);
    END IF;
  ELSIF cmid IS NOT NULL THEN
    PERFORM {schema}.{prefix}rcjobs_enqueue_room('synchronize_group',
      jsonb_build_object('rocketchatid', NEW.rocketchatid, 'cmid', cmid, 'courseid', NEW.course,
        'coursecontextid', (SELECT id FROM {schema}.{prefix}context WHERE contextlevel = 50 AND instanceid = NEW.course)),
      'sync:' || cmid, 'room:' || cmid);
  END IF;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: rocketchat % not captured (% %)', TG_OP, SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER {prefix}rcjobs_rocketchat_ins_del AFTER INSERT OR DELETE ON {schema}.{prefix}rocketchat
  FOR EACH ROW EXECUTE FUNCTION {schema}.{prefix}rcjobs_rocketchat();
CREATE TRIGGER {prefix}rcjobs_rocketchat_upd AFTER UPDATE ON {schema}.{prefix}rocketchat
  FOR EACH ROW WHEN (OLD.moderatorroles IS DISTINCT FROM NEW.moderatorroles OR OLD.userroles IS DISTINCT FROM NEW.userroles
                     OR OLD.rocketchatid IS DISTINCT FROM NEW.rocketchatid
                     OR OLD.retentionenabled IS DISTINCT FROM NEW.retentionenabled OR OLD.maxage IS DISTINCT FROM NEW.maxage
                     OR OLD.filesonly IS DISTINCT FROM NEW.filesonly OR OLD.excludepinned IS DISTINCT FROM NEW.excludepinned)
  EXECUTE FUNCTION {schema}.{prefix}rcjobs_rocketchat();

