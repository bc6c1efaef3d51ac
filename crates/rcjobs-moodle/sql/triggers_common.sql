-- rcjobs trigger set: helpers shared by both modes. {schema} is the Moodle schema (quoted),
-- {prefix} the validated Moodle table prefix. Every object is named {prefix}rcjobs_* so that
-- uninstall can find and drop exactly these.

-- The outbox: what the triggers capture, in the Moodle database itself, so a capture never
-- depends on where the queue lives (same database, another one, another server) and costs
-- Moodle one plain append: no validation, no dedup, no lane lock, no foreign schema. The
-- workers' relay (rcjobs_moodle::outbox) moves the rows into the queue in id order,
-- coalescing there, and deletes them only after the jobs are committed in the queue
-- database. Kept by uninstall (rows still pending get relayed); created once, never altered
-- in place, so a reinstall keeps what is pending.
-- A row is one job (kind, payload, ...), or, from a statement-level trigger, the captured
-- rows of one Moodle statement in `jobs` (kind 'rcjobs:<table>:ins|del', a JSON array of
-- arrays of ids, in row order; triggers_change_capture.sql) that the relay turns into jobs:
-- a sync writing thousands of rows then costs one outbox row, not thousands of heap and
-- index insertions.
CREATE TABLE IF NOT EXISTS {schema}.{prefix}rcjobs_outbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind text,
  payload jsonb,
  priority smallint NOT NULL DEFAULT 0,
  run_at timestamptz,
  dedup_key text,
  exclusion_key text,
  jobs jsonb
);
COMMENT ON TABLE {schema}.{prefix}rcjobs_outbox IS
  'rcjobs change capture: jobs waiting for the rcjobs workers'' relay (rows are deleted once in the queue)';

-- The job a change asks for, appended to the outbox. Keys follow rcjobs_producer's
-- Job::keys() for the same payload, so jobs captured here and enqueued from Rust fold
-- together: user-scoped kinds (they only fan out to room syncs) take no exclusion key;
-- room-scoped kinds that know their cmid hold the room lock 'room:<cmid>'. No SET clause:
-- every name is schema-qualified, the function runs with the caller's rights, and a SET
-- would cost a configuration save and restore on every captured row. plpgsql, not sql: a
-- plpgsql function keeps its INSERT's plan for the session, a non-inlined sql function
-- plans it again on every call (a fifth of a millisecond per captured row, measured).
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_enqueue(p_kind text, p_payload jsonb, p_dedup text, p_exclusion text, p_run_at timestamptz DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO {schema}.{prefix}rcjobs_outbox (kind, payload, priority, run_at, dedup_key, exclusion_key)
  VALUES (p_kind, p_payload, 0, p_run_at, p_dedup, p_exclusion);
END
$fn$;

-- Room work: a new or restored activity's room, the recycle bin, a room's own settings. It is
-- claimed ahead of user-scoped fan-out work (priority 0), so a teacher waiting for the room of
-- a new activity never waits behind a mass enrolment: -20 for a room's life cycle (ahead of
-- everything), -10 for a room sync (the worker's own room syncs use -10 too,
-- rcjobs_worker::engine::ROOM_SYNC_PRIORITY).
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_enqueue_room(p_kind text, p_payload jsonb, p_dedup text, p_exclusion text)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO {schema}.{prefix}rcjobs_outbox (kind, payload, priority, run_at, dedup_key, exclusion_key)
  VALUES (p_kind, p_payload, (CASE WHEN p_kind = 'synchronize_group' THEN -10 ELSE -20 END)::smallint,
          NULL, p_dedup, p_exclusion);
END
$fn$;

-- Schedules a job at a Moodle time (unix seconds, e.g. an enrolment's timeend). A time at or
-- past 10000-01-01 (Moodle stores what forms and web services send: timeend = 9000000000000
-- has been seen) names no instant the queue can hold: nothing is scheduled for it, with a
-- warning, and the change's immediate job stands.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_enqueue_at(p_kind text, p_payload jsonb, p_dedup text, p_exclusion text, p_epoch bigint)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
  IF p_epoch >= 253402300800 THEN
    RAISE WARNING 'rcjobs: % at Moodle time % is past year 9999; no job scheduled for it', p_kind, p_epoch;
    RETURN;
  END IF;
  PERFORM {schema}.{prefix}rcjobs_enqueue(p_kind, p_payload, p_dedup, p_exclusion, to_timestamp(p_epoch));
END
$fn$;

-- The lookups below are plpgsql for the same reason as rcjobs_enqueue: their queries have a
-- FROM clause, so as sql functions they could not be inlined and would be planned again on
-- every call from a trigger; as plpgsql their plans live for the session.

-- modules.id of 'rocketchat' (index modules.name).
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_rc_module()
RETURNS bigint LANGUAGE plpgsql STABLE AS $fn$
BEGIN
  RETURN (SELECT min(id) FROM {schema}.{prefix}modules WHERE name = 'rocketchat');
END
$fn$;

-- Whether a course has at least one chat room: a chat activity (index course_modules.course)
-- or a room declared in standalone mode (index rcjobs_room.courseid).
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_course_has_rooms(p_course bigint)
RETURNS boolean LANGUAGE plpgsql STABLE AS $fn$
BEGIN
  RETURN EXISTS (SELECT 1 FROM {schema}.{prefix}course_modules cm
                  WHERE cm.course = p_course
                    AND cm.module = (SELECT min(m.id) FROM {schema}.{prefix}modules m WHERE m.name = 'rocketchat'))
      OR EXISTS (SELECT 1 FROM {schema}.{prefix}rcjobs_room d WHERE d.courseid = p_course);
END
$fn$;

-- Whether course module p_cmid has a chat room: a chat activity or a declared room.
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_cm_has_room(p_cmid bigint)
RETURNS boolean LANGUAGE plpgsql STABLE AS $fn$
BEGIN
  RETURN EXISTS (SELECT 1 FROM {schema}.{prefix}course_modules cm
                  WHERE cm.id = p_cmid
                    AND cm.module = (SELECT min(m.id) FROM {schema}.{prefix}modules m WHERE m.name = 'rocketchat'))
      OR EXISTS (SELECT 1 FROM {schema}.{prefix}rcjobs_room d WHERE d.roomkey = p_cmid);
END
$fn$;

-- synchronize_group for every live room of a course, declared rooms included (bounded by the
-- rooms of one course).
CREATE OR REPLACE FUNCTION {schema}.{prefix}rcjobs_sync_course_rooms(p_course bigint)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  rm record;
  cctx bigint;
BEGIN
  SELECT id INTO cctx FROM {schema}.{prefix}context WHERE contextlevel = 50 AND instanceid = p_course;
  IF {schema}.{prefix}rcjobs_rc_module() IS NOT NULL THEN -- no plugin, no rocketchat table
    FOR rm IN SELECT cm.id AS cmid, r.rocketchatid
                FROM {schema}.{prefix}course_modules cm
                JOIN {schema}.{prefix}rocketchat r ON r.id = cm.instance
               WHERE cm.course = p_course AND cm.module = {schema}.{prefix}rcjobs_rc_module()
                 AND cm.deletioninprogress = 0
    LOOP
      PERFORM {schema}.{prefix}rcjobs_enqueue_room('synchronize_group',
        jsonb_build_object('rocketchatid', rm.rocketchatid, 'coursecontextid', cctx, 'cmid', rm.cmid, 'courseid', p_course),
        'sync:' || rm.cmid, 'room:' || rm.cmid);
    END LOOP;
  END IF;
  FOR rm IN SELECT d.roomkey FROM {schema}.{prefix}rcjobs_room d WHERE d.courseid = p_course LOOP
    PERFORM {schema}.{prefix}rcjobs_enqueue_room('synchronize_group',
      jsonb_build_object('coursecontextid', cctx, 'cmid', rm.roomkey, 'courseid', p_course),
      'sync:' || rm.roomkey, 'room:' || rm.roomkey);
  END LOOP;
END
$fn$;
