-- Change-capture mode: row triggers on Moodle tables enqueue level-triggered jobs naming the
-- scope that changed. Each trigger does a constant number of index lookups per row, and any
-- error (queue schema missing, no permission, payload refused…) becomes a WARNING: the Moodle
-- write always succeeds.

-- role_assignments: enrol_role_assign / enrol_role_unassign.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_role_assignments()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  ra record;
  lvl bigint;
  inst bigint;
  course bigint;
BEGIN
  IF TG_OP = 'DELETE' THEN ra := OLD; ELSE ra := NEW; END IF;
  SELECT contextlevel, instanceid INTO lvl, inst FROM {schema}.{prefix}context WHERE id = ra.contextid;
  IF lvl = 50 THEN
    course := inst;
    IF NOT {schema}.{prefix}rcjobs_course_has_rooms(course) THEN RETURN NULL; END IF;
  ELSIF lvl = 70 THEN
    IF NOT {schema}.{prefix}rcjobs_cm_has_room(inst) THEN RETURN NULL; END IF;
    SELECT cm.course INTO course FROM {schema}.{prefix}course_modules cm WHERE cm.id = inst;
  ELSIF lvl IN (10, 40) THEN
    course := NULL; -- affects every room below this context
  ELSE
    RETURN NULL;
  END IF;
  PERFORM {schema}.{prefix}rcjobs_enqueue(
    CASE TG_OP WHEN 'INSERT' THEN 'enrol_role_assign' ELSE 'enrol_role_unassign' END,
    jsonb_build_object('courseid', course, 'roleid', ra.roleid, 'userid', ra.userid,
      'context', jsonb_build_object('id', ra.contextid, 'contextlevel', lvl, 'instanceid', inst)),
    'role:' || lvl || ':' || inst || ':' || ra.userid, NULL);
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: role_assignments % not captured (% %)', TG_OP, SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER {prefix}rcjobs_role_assignments AFTER INSERT OR DELETE ON {schema}.{prefix}role_assignments
  FOR EACH ROW EXECUTE FUNCTION {schema}.{prefix}rcjobs_role_assignments();

-- user_enrolments: enrolment (created, deleted, status or window changed). A window that
-- opens or closes in the future also gets a job scheduled at that moment.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_user_enrolments()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  ue record;
  course bigint;
  payload jsonb;
  nowts bigint := extract(epoch FROM now())::bigint;
BEGIN
  IF TG_OP = 'DELETE' THEN ue := OLD; ELSE ue := NEW; END IF;
  SELECT e.courseid INTO course FROM {schema}.{prefix}enrol e WHERE e.id = ue.enrolid;
  IF course IS NULL OR NOT {schema}.{prefix}rcjobs_course_has_rooms(course) THEN RETURN NULL; END IF;
  payload := jsonb_build_object('userid', ue.userid, 'courseid', course, 'enrolid', ue.enrolid);
  PERFORM {schema}.{prefix}rcjobs_enqueue('enrolment', payload,
    'enrolment:' || course || ':' || ue.userid, NULL);
  IF TG_OP <> 'DELETE' THEN
    IF ue.timestart > nowts THEN
      PERFORM {schema}.{prefix}rcjobs_enqueue_at('enrolment', payload,
        'enrolment:' || course || ':' || ue.userid || ':at:' || ue.timestart, NULL, ue.timestart);
    END IF;
    IF ue.timeend > nowts THEN
      PERFORM {schema}.{prefix}rcjobs_enqueue_at('enrolment', payload,
        'enrolment:' || course || ':' || ue.userid || ':at:' || ue.timeend, NULL, ue.timeend);
    END IF;
  END IF;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: user_enrolments % not captured (% %)', TG_OP, SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER {prefix}rcjobs_user_enrolments_ins_del AFTER INSERT OR DELETE ON {schema}.{prefix}user_enrolments
  FOR EACH ROW EXECUTE FUNCTION {schema}.{prefix}rcjobs_user_enrolments();
CREATE TRIGGER {prefix}rcjobs_user_enrolments_upd AFTER UPDATE ON {schema}.{prefix}user_enrolments
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.timestart IS DISTINCT FROM NEW.timestart
                     OR OLD.timeend IS DISTINCT FROM NEW.timeend OR OLD.enrolid IS DISTINCT FROM NEW.enrolid
                     OR OLD.userid IS DISTINCT FROM NEW.userid)
  EXECUTE FUNCTION {schema}.{prefix}rcjobs_user_enrolments();

-- enrol: an instance enabled or disabled changes many users at once, with no per-user event:
-- synchronize_group for each room of the course.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_enrol()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  PERFORM {schema}.{prefix}rcjobs_sync_course_rooms(NEW.courseid);
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: enrol % not captured (% %)', TG_OP, SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER {prefix}rcjobs_enrol AFTER UPDATE ON {schema}.{prefix}enrol
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.courseid IS DISTINCT FROM NEW.courseid)
  EXECUTE FUNCTION {schema}.{prefix}rcjobs_enrol();

-- user: suspended or deleted changed -> synchronize_user_everywhere. On deletion Moodle
-- rewrites the username in the same UPDATE, so the old one travels in the payload, under
-- its own dedup key: folded into a pending 'user:<id>' job (no username) it would be lost.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_user()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF NEW.deleted <> 0 AND OLD.deleted = 0 THEN
    PERFORM {schema}.{prefix}rcjobs_enqueue('synchronize_user_everywhere',
      jsonb_build_object('userid', NEW.id, 'username', OLD.username), 'user:' || NEW.id || ':deleted', NULL);
  ELSE
    PERFORM {schema}.{prefix}rcjobs_enqueue('synchronize_user_everywhere',
      jsonb_build_object('userid', NEW.id), 'user:' || NEW.id, NULL);
  END IF;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: user % not captured (% %)', TG_OP, SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER {prefix}rcjobs_user AFTER UPDATE ON {schema}.{prefix}user
  FOR EACH ROW WHEN (OLD.suspended IS DISTINCT FROM NEW.suspended OR OLD.deleted IS DISTINCT FROM NEW.deleted)
  EXECUTE FUNCTION {schema}.{prefix}rcjobs_user();

-- course_modules (rocketchat modules only): deletion in progress -> recyclebin trash (and back
-- -> restore); instance linked (add or restore of an activity) -> restore; visibility -> sync.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_course_modules()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  gid text;
BEGIN
  IF NEW.module IS DISTINCT FROM {schema}.{prefix}rcjobs_rc_module() THEN RETURN NULL; END IF;
  SELECT r.rocketchatid INTO gid FROM {schema}.{prefix}rocketchat r WHERE r.id = NEW.instance;
  IF TG_OP = 'INSERT' OR OLD.instance IS DISTINCT FROM NEW.instance THEN
    IF NEW.instance <> 0 THEN
      PERFORM {schema}.{prefix}rcjobs_enqueue_room('restore',
        jsonb_build_object('cmid', NEW.id, 'courseid', NEW.course, 'instanceid', NEW.instance, 'rocketchatid', gid),
        'restore:' || NEW.id, 'room:' || NEW.id);
    END IF;
    RETURN NULL;
  END IF;
  IF OLD.deletioninprogress IS DISTINCT FROM NEW.deletioninprogress THEN
    PERFORM {schema}.{prefix}rcjobs_enqueue_room('recyclebin',
      jsonb_build_object('action', CASE WHEN NEW.deletioninprogress <> 0 THEN 'trash' ELSE 'restore' END,
        'cmid', NEW.id, 'courseid', NEW.course, 'instanceid', NEW.instance, 'rocketchatid', gid),
      NULL, 'room:' || NEW.id);
  ELSIF NEW.deletioninprogress = 0 THEN
    PERFORM {schema}.{prefix}rcjobs_enqueue_room('synchronize_group',
      jsonb_build_object('rocketchatid', gid, 'cmid', NEW.id, 'courseid', NEW.course,
        'coursecontextid', (SELECT id FROM {schema}.{prefix}context WHERE contextlevel = 50 AND instanceid = NEW.course)),
      'sync:' || NEW.id, 'room:' || NEW.id);
  END IF;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: course_modules % not captured (% %)', TG_OP, SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER {prefix}rcjobs_course_modules_ins AFTER INSERT ON {schema}.{prefix}course_modules
  FOR EACH ROW EXECUTE FUNCTION {schema}.{prefix}rcjobs_course_modules();
CREATE TRIGGER {prefix}rcjobs_course_modules_upd AFTER UPDATE ON {schema}.{prefix}course_modules
  FOR EACH ROW WHEN (OLD.deletioninprogress IS DISTINCT FROM NEW.deletioninprogress
                     OR OLD.instance IS DISTINCT FROM NEW.instance
                     OR OLD.visible IS DISTINCT FROM NEW.visible
                     OR OLD.visibleoncoursepage IS DISTINCT FROM NEW.visibleoncoursepage)
  EXECUTE FUNCTION {schema}.{prefix}rcjobs_course_modules();

-- tool_recyclebin_course (rocketchat items only): insert -> trash; delete -> restore when a
-- live activity of that name was (re)created in the course since binning, else purge. The
-- worker re-checks at run time (a group still used by a live activity is never deleted).
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_recyclebin_course()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  rm record;
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.module IS DISTINCT FROM {schema}.{prefix}rcjobs_rc_module() THEN RETURN NULL; END IF;
    SELECT cm.id AS cmid, r.id AS instanceid, r.rocketchatid INTO rm
      FROM {schema}.{prefix}course_modules cm JOIN {schema}.{prefix}rocketchat r ON r.id = cm.instance
     WHERE cm.course = NEW.courseid AND cm.module = NEW.module AND r.name = NEW.name
     ORDER BY cm.deletioninprogress DESC, cm.id DESC LIMIT 1;
    PERFORM {schema}.{prefix}rcjobs_enqueue_room('recyclebin',
      jsonb_build_object('action', 'trash', 'binid', NEW.id, 'courseid', NEW.courseid,
        'cmid', rm.cmid, 'instanceid', rm.instanceid, 'rocketchatid', rm.rocketchatid),
      NULL, 'room:' || rm.cmid); -- NULL when no course module matched
    RETURN NULL;
  END IF;
  IF OLD.module IS DISTINCT FROM {schema}.{prefix}rcjobs_rc_module() THEN RETURN NULL; END IF;
  SELECT cm.id AS cmid, r.id AS instanceid, r.rocketchatid INTO rm
    FROM {schema}.{prefix}course_modules cm JOIN {schema}.{prefix}rocketchat r ON r.id = cm.instance
   WHERE cm.course = OLD.courseid AND cm.module = OLD.module AND r.name = OLD.name
     AND cm.deletioninprogress = 0 AND cm.added >= OLD.timecreated
   ORDER BY cm.id DESC LIMIT 1;
  IF rm.cmid IS NOT NULL THEN
    PERFORM {schema}.{prefix}rcjobs_enqueue_room('recyclebin',
      jsonb_build_object('action', 'restore', 'binid', OLD.id, 'courseid', OLD.courseid,
        'cmid', rm.cmid, 'instanceid', rm.instanceid, 'rocketchatid', rm.rocketchatid),
      NULL, 'room:' || rm.cmid);
  ELSE
    PERFORM {schema}.{prefix}rcjobs_enqueue_room('recyclebin',
      jsonb_build_object('action', 'purge', 'binid', OLD.id, 'courseid', OLD.courseid, 'name', OLD.name),
      NULL, NULL); -- no cmid: the worker takes the room lock itself
  END IF;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: tool_recyclebin_course % not captured (% %)', TG_OP, SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER {prefix}rcjobs_recyclebin_course AFTER INSERT OR DELETE ON {schema}.{prefix}tool_recyclebin_course
  FOR EACH ROW EXECUTE FUNCTION {schema}.{prefix}rcjobs_recyclebin_course();
