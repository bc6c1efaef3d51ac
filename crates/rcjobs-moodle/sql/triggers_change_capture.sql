-- Change-capture mode: triggers on Moodle tables append level-triggered jobs naming the
-- scope that changed to the outbox (triggers_common.sql), which the workers relay into the
-- queue. Each trigger does a constant number of index lookups per row (set-based where Moodle
-- writes many rows in one statement), and any error becomes a WARNING: the Moodle write
-- always succeeds. No SET clause on the functions: names are schema-qualified and a SET costs
-- a configuration save and restore per call.

-- role_assignments and user_enrolments, inserts and deletes: statement-level triggers
-- reading the transition table. Each appends ONE outbox row per Moodle statement holding
-- the captured rows, reduced to ids, in row order (`jobs`: a JSON array of arrays, kind
-- 'rcjobs:<table>:ins|del'), with only the lookups that cannot wait: the course of an
-- enrolment (its enrol instance) and the context of a role assignment, which Moodle deletes
-- right after the rows when it deletes a course or an enrol instance. Whether the course
-- or module has a room, the future enrolment windows, the payloads and the keys are the
-- relay's work (rcjobs_moodle::outbox), off Moodle's transaction: a job for a course whose
-- last room went meanwhile is harmless, and a room made meanwhile is synced whole at
-- creation. One query with a cheap plan per statement: a one-row statement (the enrol API)
-- costs a few microseconds, a sync of thousands of rows in one statement a few per row.

-- role_assignments: enrol_role_assign / enrol_role_unassign.
-- Row: [id, userid, roleid, contextid, contextlevel, instanceid, course (NULL above a course)].
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_role_assignments_ins()
RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO {schema}.{prefix}rcjobs_outbox (kind, jobs)
  SELECT 'rcjobs:role_assignments:ins', j FROM (
    SELECT jsonb_agg(jsonb_build_array(ra.id, ra.userid, ra.roleid, ra.contextid, c.contextlevel, c.instanceid,
                                       CASE c.contextlevel WHEN 50 THEN c.instanceid WHEN 70 THEN cm.course END)
                     ORDER BY ra.id) AS j
      FROM rcjobs_new ra
      JOIN {schema}.{prefix}context c ON c.id = ra.contextid AND c.contextlevel IN (10, 40, 50, 70)
      LEFT JOIN {schema}.{prefix}course_modules cm ON c.contextlevel = 70 AND cm.id = c.instanceid) agg
   WHERE j IS NOT NULL;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: role_assignments INSERT not captured (% %)', SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_role_assignments_del()
RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO {schema}.{prefix}rcjobs_outbox (kind, jobs)
  SELECT 'rcjobs:role_assignments:del', j FROM (
    SELECT jsonb_agg(jsonb_build_array(ra.id, ra.userid, ra.roleid, ra.contextid, c.contextlevel, c.instanceid,
                                       CASE c.contextlevel WHEN 50 THEN c.instanceid WHEN 70 THEN cm.course END)
                     ORDER BY ra.id) AS j
      FROM rcjobs_old ra
      JOIN {schema}.{prefix}context c ON c.id = ra.contextid AND c.contextlevel IN (10, 40, 50, 70)
      LEFT JOIN {schema}.{prefix}course_modules cm ON c.contextlevel = 70 AND cm.id = c.instanceid) agg
   WHERE j IS NOT NULL;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: role_assignments DELETE not captured (% %)', SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER {prefix}rcjobs_role_assignments_ins AFTER INSERT ON {schema}.{prefix}role_assignments
  REFERENCING NEW TABLE AS rcjobs_new
  FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{prefix}rcjobs_role_assignments_ins();
CREATE TRIGGER {prefix}rcjobs_role_assignments_del AFTER DELETE ON {schema}.{prefix}role_assignments
  REFERENCING OLD TABLE AS rcjobs_old
  FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{prefix}rcjobs_role_assignments_del();

-- user_enrolments: enrolment (created, deleted, status or window changed). A window that
-- opens or closes in the future also gets a job scheduled at that moment (by the relay for
-- inserts). An update stays a row trigger whose WHEN keeps Moodle's frequent
-- timemodified-only updates free.
-- Row: [id, userid, enrolid, course, timestart, timeend].
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_user_enrolments_ins()
RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO {schema}.{prefix}rcjobs_outbox (kind, jobs)
  SELECT 'rcjobs:user_enrolments:ins', j FROM (
    SELECT jsonb_agg(jsonb_build_array(ue.id, ue.userid, ue.enrolid, e.courseid, ue.timestart, ue.timeend)
                     ORDER BY ue.id) AS j
      FROM rcjobs_new ue JOIN {schema}.{prefix}enrol e ON e.id = ue.enrolid) agg
   WHERE j IS NOT NULL;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: user_enrolments INSERT not captured (% %)', SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_user_enrolments_del()
RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO {schema}.{prefix}rcjobs_outbox (kind, jobs)
  SELECT 'rcjobs:user_enrolments:del', j FROM (
    SELECT jsonb_agg(jsonb_build_array(ue.id, ue.userid, ue.enrolid, e.courseid, ue.timestart, ue.timeend)
                     ORDER BY ue.id) AS j
      FROM rcjobs_old ue JOIN {schema}.{prefix}enrol e ON e.id = ue.enrolid) agg
   WHERE j IS NOT NULL;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: user_enrolments DELETE not captured (% %)', SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
-- An update, one row: the same jobs as an insert of the new row.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_user_enrolments()
RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  course bigint;
  payload jsonb;
  nowts bigint := extract(epoch FROM now())::bigint;
BEGIN
  SELECT e.courseid INTO course FROM {schema}.{prefix}enrol e WHERE e.id = NEW.enrolid;
  IF course IS NULL OR NOT {schema}.{prefix}rcjobs_course_has_rooms(course) THEN RETURN NULL; END IF;
  payload := jsonb_build_object('userid', NEW.userid, 'courseid', course, 'enrolid', NEW.enrolid);
  PERFORM {schema}.{prefix}rcjobs_enqueue('enrolment', payload,
    'enrolment:' || course || ':' || NEW.userid, NULL);
  IF NEW.timestart > nowts THEN
    PERFORM {schema}.{prefix}rcjobs_enqueue_at('enrolment', payload,
      'enrolment:' || course || ':' || NEW.userid || ':at:' || NEW.timestart, NULL, NEW.timestart);
  END IF;
  IF NEW.timeend > nowts THEN
    PERFORM {schema}.{prefix}rcjobs_enqueue_at('enrolment', payload,
      'enrolment:' || course || ':' || NEW.userid || ':at:' || NEW.timeend, NULL, NEW.timeend);
  END IF;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: user_enrolments % not captured (% %)', TG_OP, SQLSTATE, SQLERRM;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER {prefix}rcjobs_user_enrolments_ins AFTER INSERT ON {schema}.{prefix}user_enrolments
  REFERENCING NEW TABLE AS rcjobs_new
  FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{prefix}rcjobs_user_enrolments_ins();
CREATE TRIGGER {prefix}rcjobs_user_enrolments_del AFTER DELETE ON {schema}.{prefix}user_enrolments
  REFERENCING OLD TABLE AS rcjobs_old
  FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{prefix}rcjobs_user_enrolments_del();
CREATE TRIGGER {prefix}rcjobs_user_enrolments_upd AFTER UPDATE ON {schema}.{prefix}user_enrolments
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.timestart IS DISTINCT FROM NEW.timestart
                     OR OLD.timeend IS DISTINCT FROM NEW.timeend OR OLD.enrolid IS DISTINCT FROM NEW.enrolid
                     OR OLD.userid IS DISTINCT FROM NEW.userid)
  EXECUTE FUNCTION {schema}.{prefix}rcjobs_user_enrolments();

-- enrol: an instance enabled or disabled changes many users at once, with no per-user event:
-- synchronize_group for each room of the course.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_enrol()
RETURNS trigger LANGUAGE plpgsql AS $fn$
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
RETURNS trigger LANGUAGE plpgsql AS $fn$
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
RETURNS trigger LANGUAGE plpgsql AS $fn$
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
RETURNS trigger LANGUAGE plpgsql AS $fn$
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
