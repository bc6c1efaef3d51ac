-- Standalone mode: declaring rooms (SQL API for admins and `rcjobs rooms add`) and the course
-- and course-module triggers that give declared rooms the life cycle of the plugin's rooms.
-- Tables: standalone_tables.sql. Membership follows from the shared triggers
-- (role_assignments, user_enrolments, enrol, user), which count declared rooms as rooms.

-- The role list a declared room uses when none is given: the plugin's site default when the
-- plugin's settings are there (`defaultmoderatorroles` / `defaultuserroles`), else every role
-- of the archetype (editingteacher / student), as the plugin's own defaults are.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_default_roles(p_setting text, p_archetype text)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT coalesce(
    (SELECT nullif(btrim(value), '') FROM {schema}.{prefix}config_plugins
      WHERE plugin = 'mod_rocketchat' AND name = p_setting),
    (SELECT string_agg(id::text, ',' ORDER BY id) FROM {schema}.{prefix}role WHERE archetype = p_archetype),
    '')
$fn$;

-- Declares the room of a course (p_cmid NULL) or of one of its activities, and asks the
-- workers to create it. Idempotent: an existing declaration is kept as it is. Returns the
-- room key (the cmid, or minus the course id). Raises (22023) for a course or activity that
-- does not exist: this is called by people and by the CLI, who want to know.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_declare_room(
  p_course bigint, p_cmid bigint DEFAULT NULL, p_name text DEFAULT NULL,
  p_moderatorroles text DEFAULT NULL, p_userroles text DEFAULT NULL, p_rule bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  c record;
  modname text;
  inst bigint;
  actname text;
  key bigint;
BEGIN
  SELECT id, fullname, shortname INTO c FROM {schema}.{prefix}course WHERE id = p_course;
  IF c.id IS NULL OR p_course = 1 THEN
    RAISE EXCEPTION 'rcjobs: no course % (the site front page, id 1, has no room)', p_course USING ERRCODE = '22023';
  END IF;
  IF p_cmid IS NOT NULL THEN
    SELECT m.name, cm.instance INTO modname, inst
      FROM {schema}.{prefix}course_modules cm JOIN {schema}.{prefix}modules m ON m.id = cm.module
     WHERE cm.id = p_cmid AND cm.course = p_course;
    IF modname IS NULL THEN
      RAISE EXCEPTION 'rcjobs: course % has no course module %', p_course, p_cmid USING ERRCODE = '22023';
    END IF;
    IF modname = 'rocketchat' THEN
      RAISE EXCEPTION 'rcjobs: course module % is a mod_rocketchat activity: the plugin declares its room', p_cmid USING ERRCODE = '22023';
    END IF;
    BEGIN -- every activity table has a name column; a missing one only costs the default name
      EXECUTE format('SELECT name FROM %I.%I WHERE id = $1', '{schema}', '{prefix}' || modname) INTO actname USING inst;
    EXCEPTION WHEN OTHERS THEN
      actname := NULL;
    END;
  END IF;
  key := coalesce(p_cmid, -p_course);
  INSERT INTO {schema}.{prefix}rcjobs_room (roomkey, courseid, cmid, name, moderatorroles, userroles, categoryrule)
  VALUES (key, p_course, p_cmid,
          coalesce(nullif(btrim(p_name), ''), actname, c.fullname),
          coalesce(p_moderatorroles, {schema}.{prefix}rcjobs_default_roles('defaultmoderatorroles', 'editingteacher')),
          coalesce(p_userroles, {schema}.{prefix}rcjobs_default_roles('defaultuserroles', 'student')),
          p_rule)
  ON CONFLICT (roomkey) DO NOTHING;
  BEGIN -- the declaration stands even when the queue is elsewhere (the CLI enqueues itself)
    PERFORM {schema}.{prefix}rcjobs_enqueue_room('restore',
      jsonb_build_object('cmid', key, 'courseid', p_course), 'restore:' || key, 'room:' || key);
  EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'rcjobs: room % declared, its creation not queued (% %)', key, SQLSTATE, SQLERRM;
  END;
  RETURN key;
END
$fn$;

-- The rule "every course in category p_category (and its subcategories)": recorded, and a
-- room declared for each course already there. Returns the number of courses covered.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_declare_category_rooms(
  p_category bigint, p_subcategories boolean DEFAULT true,
  p_moderatorroles text DEFAULT NULL, p_userroles text DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  n integer := 0;
  cid bigint;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM {schema}.{prefix}course_categories WHERE id = p_category) THEN
    RAISE EXCEPTION 'rcjobs: no course category %', p_category USING ERRCODE = '22023';
  END IF;
  INSERT INTO {schema}.{prefix}rcjobs_room_rule (categoryid, subcategories, moderatorroles, userroles)
  VALUES (p_category, p_subcategories, p_moderatorroles, p_userroles)
  ON CONFLICT (categoryid) DO UPDATE SET subcategories = EXCLUDED.subcategories,
    moderatorroles = EXCLUDED.moderatorroles, userroles = EXCLUDED.userroles;
  FOR cid IN SELECT c.id FROM {schema}.{prefix}course c
               JOIN {schema}.{prefix}course_categories cc ON cc.id = c.category
              WHERE c.id <> 1 AND (cc.id = p_category
                 OR (p_subcategories AND position('/' || p_category || '/' IN cc.path || '/') > 0))
              ORDER BY c.id
  LOOP
    PERFORM {schema}.{prefix}rcjobs_declare_room(cid, NULL, NULL, p_moderatorroles, p_userroles, p_category);
    n := n + 1;
  END LOOP;
  RETURN n;
END
$fn$;

-- course: created in (or moved into) a category with a rule -> its room is declared; shown or
-- hidden -> its declared rooms sync (a hidden course's room is archived, as a hidden
-- activity's); deleted -> its declared rooms are archived (the course went to the category
-- bin) or purged (deleted for good: only rooms rcjobs created are deleted), and the
-- declarations go with the course.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_course()
RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  rule record;
  d record;
  binned boolean := false;
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF to_regclass('{schema}.{prefix}tool_recyclebin_category') IS NOT NULL THEN
      binned := EXISTS (SELECT 1 FROM {schema}.{prefix}tool_recyclebin_category b
                         WHERE b.categoryid = OLD.category AND b.shortname = OLD.shortname);
    END IF;
    FOR d IN DELETE FROM {schema}.{prefix}rcjobs_room WHERE courseid = OLD.id RETURNING roomkey, roomid LOOP
      PERFORM {schema}.{prefix}rcjobs_enqueue_room('recyclebin',
        jsonb_build_object('action', CASE WHEN binned THEN 'trash' ELSE 'purge' END,
          'cmid', d.roomkey, 'courseid', OLD.id, 'rocketchatid', nullif(d.roomid, '')),
        NULL, 'room:' || d.roomkey);
    END LOOP;
    RETURN NULL;
  END IF;
  IF TG_OP = 'INSERT' OR OLD.category IS DISTINCT FROM NEW.category THEN
    SELECT r.* INTO rule FROM {schema}.{prefix}rcjobs_room_rule r
      JOIN {schema}.{prefix}course_categories cc ON cc.id = NEW.category
     WHERE r.categoryid = cc.id OR (r.subcategories AND position('/' || r.categoryid || '/' IN cc.path || '/') > 0)
     ORDER BY (r.categoryid = cc.id) DESC, length(cc.path) LIMIT 1;
    IF rule.categoryid IS NOT NULL AND NEW.id <> 1 THEN
      PERFORM {schema}.{prefix}rcjobs_declare_room(NEW.id, NULL, NULL, rule.moderatorroles, rule.userroles, rule.categoryid);
    END IF;
  END IF;
  IF TG_OP = 'UPDATE' AND OLD.visible IS DISTINCT FROM NEW.visible THEN
    FOR d IN SELECT roomkey FROM {schema}.{prefix}rcjobs_room WHERE courseid = NEW.id LOOP
      PERFORM {schema}.{prefix}rcjobs_enqueue_room('synchronize_group',
        jsonb_build_object('cmid', d.roomkey, 'courseid', NEW.id), 'sync:' || d.roomkey, 'room:' || d.roomkey);
    END LOOP;
  END IF;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: course % not captured (% %)', TG_OP, SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER {prefix}rcjobs_course_ins_del AFTER INSERT OR DELETE ON {schema}.{prefix}course
  FOR EACH ROW EXECUTE FUNCTION {schema}.{prefix}rcjobs_course();
CREATE TRIGGER {prefix}rcjobs_course_upd AFTER UPDATE ON {schema}.{prefix}course
  FOR EACH ROW WHEN (OLD.category IS DISTINCT FROM NEW.category OR OLD.visible IS DISTINCT FROM NEW.visible)
  EXECUTE FUNCTION {schema}.{prefix}rcjobs_course();

-- course_modules with a declared activity room: shown or hidden -> sync; deletion in progress
-- -> archive (trash), and back -> restore; row deleted -> declaration removed, and the room
-- purged (only a room rcjobs created) unless the activity or its course went to a bin (then it
-- stays archived). A bin restore makes a new course module, which is not declared. One primary-key probe of the (small) declarations table per
-- qualifying change; modules without a declared room return at once.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_declared_cm()
RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  d record;
  binned boolean := false;
BEGIN
  IF TG_OP = 'DELETE' THEN
    DELETE FROM {schema}.{prefix}rcjobs_room WHERE roomkey = OLD.id RETURNING roomkey, roomid, name INTO d;
    IF d.roomkey IS NULL THEN RETURN NULL; END IF;
    -- Binned (the activity to the course bin, or its whole course to the category bin; the bin
    -- item is written before the row goes): the room stays archived. Else deleted for good.
    IF to_regclass('{schema}.{prefix}tool_recyclebin_course') IS NOT NULL THEN
      binned := EXISTS (SELECT 1 FROM {schema}.{prefix}tool_recyclebin_course b
                         WHERE b.courseid = OLD.course AND b.module = OLD.module AND b.name = d.name);
    END IF;
    IF NOT binned AND to_regclass('{schema}.{prefix}tool_recyclebin_category') IS NOT NULL THEN
      binned := EXISTS (SELECT 1 FROM {schema}.{prefix}course c
                          JOIN {schema}.{prefix}tool_recyclebin_category b ON b.categoryid = c.category AND b.shortname = c.shortname
                         WHERE c.id = OLD.course);
    END IF;
    PERFORM {schema}.{prefix}rcjobs_enqueue_room('recyclebin',
      jsonb_build_object('action', CASE WHEN binned THEN 'trash' ELSE 'purge' END,
        'cmid', d.roomkey, 'courseid', OLD.course, 'rocketchatid', nullif(d.roomid, '')),
      NULL, 'room:' || d.roomkey);
    RETURN NULL;
  END IF;
  SELECT roomkey, roomid INTO d FROM {schema}.{prefix}rcjobs_room WHERE roomkey = NEW.id;
  IF d.roomkey IS NULL THEN RETURN NULL; END IF;
  IF OLD.deletioninprogress IS DISTINCT FROM NEW.deletioninprogress THEN
    PERFORM {schema}.{prefix}rcjobs_enqueue_room('recyclebin',
      jsonb_build_object('action', CASE WHEN NEW.deletioninprogress <> 0 THEN 'trash' ELSE 'restore' END,
        'cmid', d.roomkey, 'courseid', NEW.course, 'rocketchatid', nullif(d.roomid, '')),
      NULL, 'room:' || d.roomkey);
  ELSE
    PERFORM {schema}.{prefix}rcjobs_enqueue_room('synchronize_group',
      jsonb_build_object('cmid', d.roomkey, 'courseid', NEW.course), 'sync:' || d.roomkey, 'room:' || d.roomkey);
  END IF;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: course_modules % (declared room) not captured (% %)', TG_OP, SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER {prefix}rcjobs_declared_cm_upd AFTER UPDATE ON {schema}.{prefix}course_modules
  FOR EACH ROW WHEN (OLD.deletioninprogress IS DISTINCT FROM NEW.deletioninprogress
                     OR OLD.visible IS DISTINCT FROM NEW.visible
                     OR OLD.visibleoncoursepage IS DISTINCT FROM NEW.visibleoncoursepage)
  EXECUTE FUNCTION {schema}.{prefix}rcjobs_declared_cm();
CREATE TRIGGER {prefix}rcjobs_declared_cm_del AFTER DELETE ON {schema}.{prefix}course_modules
  FOR EACH ROW EXECUTE FUNCTION {schema}.{prefix}rcjobs_declared_cm();
