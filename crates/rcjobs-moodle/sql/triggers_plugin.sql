-- Plugin mode: mod_rocketchat's adhoc tasks become rcjobs jobs: in the same transaction the
-- job goes to the capture outbox (triggers_common.sql), which the workers relay into the
-- queue. customdata is reduced to ids (no user rows, no password hashes). If anything fails,
-- the row is let through unchanged so Moodle's cron still runs it: nothing is lost.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_task_adhoc()
RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  cls text := regexp_replace(NEW.classname, '^\\?mod_rocketchat\\task\\', '');
  cd jsonb;
  payload jsonb;
  uid bigint;
  course bigint;
  ctxid bigint;
  dedup text;
BEGIN
  cd := coalesce(NULLIF(NEW.customdata, '')::jsonb, '{}'::jsonb);
  IF jsonb_typeof(cd) <> 'object' THEN
    RETURN NEW;
  END IF;
  CASE cls
  WHEN 'enrol_role_assign', 'enrol_role_unassign' THEN
    uid := coalesce(cd->'moodleuser'->>'id', cd->>'userid')::bigint;
    course := (cd->>'courseid')::bigint;
    ctxid := (cd->'context'->>'id')::bigint;
    payload := jsonb_build_object(
      'courseid', course,
      'roleid', (cd->>'roleid')::bigint,
      'userid', uid,
      'context', jsonb_build_object(
        'id', ctxid,
        'contextlevel', (cd->'context'->>'contextlevel')::bigint,
        'instanceid', (cd->'context'->>'instanceid')::bigint));
    dedup := 'role:' || (payload->'context'->>'contextlevel') || ':' || (payload->'context'->>'instanceid') || ':' || uid;
  WHEN 'enrol_user_to_rocketchat_group' THEN
    uid := (cd->>'userid')::bigint;
    ctxid := (cd->>'coursecontextid')::bigint;
    payload := jsonb_build_object('rocketchatid', cd->>'rocketchatid', 'userid', uid, 'coursecontextid', ctxid);
    dedup := 'enrol_user:rc:' || (cd->>'rocketchatid') || ':' || uid;
  WHEN 'synchronize_group' THEN
    -- No cmid: the worker resolves the rocketchatid and enqueues each room's sync under
    -- its room lock, so this job takes none.
    ctxid := (cd->>'coursecontextid')::bigint;
    payload := jsonb_build_object('rocketchatid', cd->>'rocketchatid', 'coursecontextid', ctxid);
    dedup := 'sync:rc:' || (cd->>'rocketchatid');
  WHEN 'synchronize_user_everywhere', 'unenrol_user_everywhere' THEN
    uid := (cd->>'userid')::bigint;
    payload := jsonb_build_object('userid', uid);
    dedup := 'user:' || uid;
  ELSE
    RETURN NEW; -- not a task we handle: leave it to Moodle
  END CASE;
  -- Every kind here is user-scoped or names no cmid: no exclusion key (the worker's room
  -- syncs hold the room locks).
  PERFORM {schema}.{prefix}rcjobs_enqueue(cls, payload, dedup, NULL);
  RETURN NULL; -- the job is queued: Moodle never stores (nor runs) the adhoc task
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'rcjobs: % left to Moodle cron (% %)', NEW.classname, SQLSTATE, SQLERRM;
  RETURN NEW;
END
$fn$;

CREATE TRIGGER {prefix}rcjobs_task_adhoc BEFORE INSERT ON {schema}.{prefix}task_adhoc
  FOR EACH ROW WHEN (NEW.component = 'mod_rocketchat') EXECUTE FUNCTION {schema}.{prefix}rcjobs_task_adhoc();
