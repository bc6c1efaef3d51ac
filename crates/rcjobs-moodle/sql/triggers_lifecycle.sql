-- Change-capture mode, room life cycle beyond one activity: a course deleted to (and restored
-- from, or purged from) the category recycle bin, and a course reset that asks for the chat
-- history to be cleaned. Same contract as triggers_change_capture.sql: constant index lookups
-- per row (a loop is bounded by the chat activities of one course), keys as
-- rcjobs_producer's Job::keys(), room life-cycle work at priority -20 (rcjobs_enqueue_room),
-- and any error becomes a WARNING: the Moodle write always succeeds.

-- tool_recyclebin_category: the item is written *before* delete_course() removes the course
-- (the course still exists, found by category + shortname, index course.shortname), so
-- insert -> one trash per chat activity of the course, carrying the item id and the activity
-- name: the worker archives each room at once and records both, to hand the rooms back if
-- the item is restored. Delete -> restore when a course with the item's shortname exists in
-- its category, created since the item (restore_item() makes a new course, then deletes the
-- item), else purge. The worker re-checks: it matches the old rooms to the new course's
-- activities, and deletes only rooms it created and no live activity uses.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_recyclebin_category()
RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  v_course bigint;
  rm record;
BEGIN
  -- Activity rooms live in mod_rocketchat's table; a site without it has none to bin.
  IF to_regclass('{schema}.{prefix}rocketchat') IS NULL THEN RETURN NULL; END IF;
  IF TG_OP = 'INSERT' THEN
    SELECT c.id INTO v_course FROM {schema}.{prefix}course c
     WHERE c.shortname = NEW.shortname AND c.category = NEW.categoryid ORDER BY c.id DESC LIMIT 1;
    IF v_course IS NULL THEN RETURN NULL; END IF;
    FOR rm IN SELECT cm.id AS cmid, r.id AS instanceid, r.name, r.rocketchatid
                FROM {schema}.{prefix}course_modules cm
                JOIN {schema}.{prefix}rocketchat r ON r.id = cm.instance
               WHERE cm.course = v_course AND cm.module = {schema}.{prefix}rcjobs_rc_module()
    LOOP
      PERFORM {schema}.{prefix}rcjobs_enqueue_room('recyclebin',
        jsonb_build_object('action', 'trash', 'cmid', rm.cmid, 'courseid', v_course,
          'categorybinid', NEW.id, 'name', rm.name, 'instanceid', rm.instanceid,
          'rocketchatid', rm.rocketchatid),
        'recyclebin:trash:' || rm.cmid, 'room:' || rm.cmid);
    END LOOP;
    RETURN NULL;
  END IF;
  SELECT c.id INTO v_course FROM {schema}.{prefix}course c
   WHERE c.shortname = OLD.shortname AND c.category = OLD.categoryid AND c.timecreated >= OLD.timecreated
   ORDER BY c.id DESC LIMIT 1;
  IF v_course IS NOT NULL THEN
    PERFORM {schema}.{prefix}rcjobs_enqueue_room('recyclebin',
      jsonb_build_object('action', 'restore', 'categorybinid', OLD.id, 'courseid', v_course),
      'recyclebin:restore:catbin:' || OLD.id, NULL);
  ELSE
    PERFORM {schema}.{prefix}rcjobs_enqueue_room('recyclebin',
      jsonb_build_object('action', 'purge', 'categorybinid', OLD.id),
      'recyclebin:purge:catbin:' || OLD.id, NULL);
  END IF;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: tool_recyclebin_category % not captured (% %)', TG_OP, SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER {prefix}rcjobs_recyclebin_category AFTER INSERT OR DELETE ON {schema}.{prefix}tool_recyclebin_category
  FOR EACH ROW EXECUTE FUNCTION {schema}.{prefix}rcjobs_recyclebin_category();

-- Course reset (decision 0009): Moodle writes no table of its own for a reset, and the
-- plugin cleans the history synchronously from its reset callback. The one durable trace is
-- the standard log's `\core\event\course_reset_ended` row, whose `other` (JSON) holds the
-- reset form's options: `reset_options.reset_rocketchat` set -> one clean_history per chat
-- activity of the course, up to the log row's time (messages posted after the reset stay).
-- The WHEN clause keeps every other log insert at one string comparison.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_course_reset()
RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  flag text;
  rm record;
BEGIN
  IF to_regclass('{schema}.{prefix}rocketchat') IS NULL THEN RETURN NULL; END IF;
  flag := (NEW.other::jsonb) -> 'reset_options' ->> 'reset_rocketchat';
  IF flag IS NULL OR flag NOT IN ('1', 'true') THEN RETURN NULL; END IF;
  FOR rm IN SELECT cm.id AS cmid, r.rocketchatid
              FROM {schema}.{prefix}course_modules cm
              JOIN {schema}.{prefix}rocketchat r ON r.id = cm.instance
             WHERE cm.course = NEW.courseid AND cm.module = {schema}.{prefix}rcjobs_rc_module()
               AND cm.deletioninprogress = 0
  LOOP
    PERFORM {schema}.{prefix}rcjobs_enqueue_room('clean_history',
      jsonb_build_object('cmid', rm.cmid, 'courseid', NEW.courseid, 'rocketchatid', rm.rocketchatid,
        'latest', NEW.timecreated),
      'clean_history:' || rm.cmid, 'room:' || rm.cmid);
  END LOOP;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: course reset of course % not captured (% %)', NEW.courseid, SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
-- The standard log store is a core plugin, so its table is there on every real site; a
-- synthetic schema without it simply gets no reset capture.
DO $do$
BEGIN
  IF to_regclass('{schema}.{prefix}logstore_standard_log') IS NOT NULL THEN
    CREATE TRIGGER {prefix}rcjobs_course_reset AFTER INSERT ON {schema}.{prefix}logstore_standard_log
      FOR EACH ROW WHEN (NEW.eventname = '\core\event\course_reset_ended')
      EXECUTE FUNCTION {schema}.{prefix}rcjobs_course_reset();
  END IF;
END
$do$;
