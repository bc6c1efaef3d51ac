-- Pauses and the operator's verbs (issue 16): pause a queue or a job kind, run a job now,
-- reschedule it, delete it.
--
-- A pause leaves every job's state alone (a paused job is still `ready` or `blocked`, counted
-- and listed as before). Workers honour it at their next claim: claim_jobs reads rcjobs.pause
-- in the claiming transaction, so every replica stops taking the paused work within one claim
-- (no cache, nothing to refresh) and a pause survives restarts because it is a row.
--
-- Cost on the claim path: a paused queue is one primary-key probe. A paused kind must not
-- make every claim walk past its backlog (100,000 due syncs during a chat-server maintenance
-- would be scanned by each claim), so a due job of a paused kind that a claim meets is marked
-- `paused` instead of claimed, and the claim index leaves marked rows out: each paused job is
-- looked at once per pause, a claim costs O(its batch) whatever the paused backlog. Inserts
-- pay nothing (no trigger: see the statistics note in 0001). Resuming a kind clears the marks
-- through a partial index that only holds marked rows.
--
-- Workers of schema 4 keep working on schema 5 and honour pauses: every function they call
-- keeps its signature, and claim_jobs is the one replaced.
SET LOCAL lock_timeout = '5s';

CREATE TABLE rcjobs.pause (
    scope     text        NOT NULL CHECK (scope IN ('queue', 'kind')),
    name      text        NOT NULL CHECK (name <> '' AND length(name) <= 200),
    paused_at timestamptz NOT NULL DEFAULT now(),
    -- who paused it (the console's or the CLI's operator name), for the audit and the pages
    paused_by text        NOT NULL DEFAULT '' CHECK (length(paused_by) <= 200),
    reason    text        NOT NULL DEFAULT '' CHECK (length(reason) <= 1000),
    PRIMARY KEY (scope, name)
);

-- Set by claim_jobs on a due job of a paused kind; cleared when the kind resumes. Not a
-- state: the job stays ready and counted as such.
ALTER TABLE rcjobs.job ADD COLUMN paused boolean NOT NULL DEFAULT false;

-- The claim index without the marked rows (same columns as 0001's).
CREATE INDEX job_claim_unpaused_idx ON rcjobs.job (queue, priority, run_at, id)
    WHERE state = 'ready' AND NOT paused;
DROP INDEX rcjobs.job_claim_idx;
ALTER INDEX rcjobs.job_claim_unpaused_idx RENAME TO job_claim_idx;
-- Only marked rows: empty unless a kind is paused.
CREATE INDEX job_paused_idx ON rcjobs.job (kind, queue) WHERE paused;

-- Same contract as 0003, plus pauses. The fast path (nothing paused) is 0003's statement.
CREATE OR REPLACE FUNCTION rcjobs.claim_jobs(p_queue text, p_limit integer, p_lease_s double precision, p_worker uuid)
RETURNS TABLE (id bigint, token integer, kind text, queue text, priority smallint, payload jsonb,
               attempt integer, max_attempts integer, exclusion_key text, enqueued_at timestamptz,
               run_at timestamptz, started_at timestamptz)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_kinds text[];
    v_take tid[];
    v_mark tid[];
    v_left integer := p_limit;
    v_n integer;
BEGIN
    IF EXISTS (SELECT 1 FROM rcjobs.pause p WHERE p.scope = 'queue' AND p.name = p_queue) THEN
        RETURN;
    END IF;
    SELECT array_agg(p.name) INTO v_kinds FROM rcjobs.pause p WHERE p.scope = 'kind';
    IF v_kinds IS NULL THEN
        -- Durable commit, unlike acks: a claim lost in a server crash would put the job back
        -- with its old token, and the next claim would hand the same token to a second worker
        -- while the first may still be running it (two holders of one fence).
        RETURN QUERY
        WITH c AS (
            UPDATE rcjobs.job j
            SET state = 'running', attempt = j.attempt + 1, token = j.token + 1,
                lease_until = now() + make_interval(secs => p_lease_s), worker_id = p_worker, started_at = now()
            WHERE j.ctid = ANY (ARRAY(
                  SELECT x.ctid FROM rcjobs.job x
                  WHERE x.state = 'ready' AND NOT x.paused AND x.queue = p_queue AND x.run_at <= now()
                  ORDER BY x.priority, x.run_at, x.id
                  LIMIT p_limit
                  FOR UPDATE SKIP LOCKED))
              AND j.state = 'ready'
            RETURNING j.id, j.token, j.kind, j.queue, j.priority, j.payload, j.attempt, j.max_attempts,
                      j.exclusion_key, j.enqueued_at, j.run_at, j.started_at),
        cnt AS (
            INSERT INTO rcjobs.stat_delta (queue, kind, state, n)
            SELECT g.queue, g.kind, s.state, s.n
            FROM (SELECT c.queue, c.kind, count(*) AS n FROM c GROUP BY 1, 2) g
            CROSS JOIN LATERAL (VALUES ('ready', -g.n), ('running', g.n)) AS s(state, n))
        SELECT c.* FROM c;
        RETURN;
    END IF;
    -- Some kind is paused: take the batch in index order, mark the paused kinds' rows (they
    -- leave the claim index) and claim the rest; go on while marking made room in the batch.
    -- Bounded: each round marks or claims what it locked.
    FOR round IN 1..16 LOOP
        SELECT array_agg(s.ctid) FILTER (WHERE NOT (s.kind = ANY (v_kinds))),
               array_agg(s.ctid) FILTER (WHERE s.kind = ANY (v_kinds))
        INTO v_take, v_mark
        FROM (SELECT x.ctid, x.kind FROM rcjobs.job x
              WHERE x.state = 'ready' AND NOT x.paused AND x.queue = p_queue AND x.run_at <= now()
              ORDER BY x.priority, x.run_at, x.id
              LIMIT v_left
              FOR UPDATE SKIP LOCKED) s;
        IF v_mark IS NOT NULL THEN
            UPDATE rcjobs.job j SET paused = true WHERE j.ctid = ANY (v_mark) AND j.state = 'ready';
        END IF;
        IF v_take IS NOT NULL THEN
            RETURN QUERY
            WITH c AS (
                UPDATE rcjobs.job j
                SET state = 'running', attempt = j.attempt + 1, token = j.token + 1,
                    lease_until = now() + make_interval(secs => p_lease_s), worker_id = p_worker, started_at = now()
                WHERE j.ctid = ANY (v_take) AND j.state = 'ready'
                RETURNING j.id, j.token, j.kind, j.queue, j.priority, j.payload, j.attempt, j.max_attempts,
                          j.exclusion_key, j.enqueued_at, j.run_at, j.started_at),
            cnt AS (
                INSERT INTO rcjobs.stat_delta (queue, kind, state, n)
                SELECT g.queue, g.kind, s.state, s.n
                FROM (SELECT c.queue, c.kind, count(*) AS n FROM c GROUP BY 1, 2) g
                CROSS JOIN LATERAL (VALUES ('ready', -g.n), ('running', g.n)) AS s(state, n))
            SELECT c.* FROM c;
            v_left := v_left - cardinality(v_take);
        END IF;
        EXIT WHEN v_mark IS NULL OR v_left <= 0;
    END LOOP;
END $$;

-- Pauses a queue or a kind; false when it was already paused (the first pause's who and
-- when are kept).
CREATE FUNCTION rcjobs.pause(p_scope text, p_name text, p_by text DEFAULT '', p_reason text DEFAULT '')
RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO rcjobs.pause (scope, name, paused_by, reason)
    VALUES (p_scope, p_name, coalesce(p_by, ''), coalesce(p_reason, ''))
    ON CONFLICT (scope, name) DO NOTHING;
    RETURN FOUND;
END $$;

-- Resumes a queue or a kind (its marked jobs go back to the claim index) and wakes the
-- workers; false when it was not paused.
CREATE FUNCTION rcjobs.resume(p_scope text, p_name text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM rcjobs.pause WHERE scope = p_scope AND name = p_name;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF p_scope = 'kind' THEN
        UPDATE rcjobs.job SET paused = false WHERE paused AND kind = p_name;
    END IF;
    PERFORM pg_notify('rcjobs_jobs', '');
    RETURN true;
END $$;

-- Moves a pending job's run_at: to p_run_at, or (p_run_at NULL: run now) to now and ahead of
-- every other pending job of its lane. A running head is never displaced: the job runs next.
-- 'ok', 'running' (refused), 'finished' or 'not_found'.
CREATE FUNCTION rcjobs.move_job(p_id bigint, p_run_at timestamptz) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_key text;
    v_state text;
    v_at timestamptz := p_run_at;
BEGIN
    PERFORM rcjobs.check_run_at(p_run_at);
    SELECT j.exclusion_key INTO v_key FROM rcjobs.job j WHERE j.id = p_id;
    IF NOT FOUND THEN
        RETURN CASE WHEN EXISTS (SELECT 1 FROM rcjobs.job_history h WHERE h.id = p_id)
                    THEN 'finished' ELSE 'not_found' END;
    END IF;
    -- lane before job row, the order pick_lane_heads takes them in
    IF v_key IS NOT NULL THEN
        PERFORM 1 FROM rcjobs.lane l WHERE l.key = v_key FOR UPDATE;
    END IF;
    SELECT j.state INTO v_state FROM rcjobs.job j WHERE j.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'finished';
    END IF;
    IF v_state = 'running' THEN
        RETURN 'running';
    END IF;
    IF v_at IS NULL THEN
        v_at := now();
        IF v_key IS NOT NULL THEN
            -- just before the lane's first pending job (least ignores NULL: an empty lane)
            SELECT least(v_at, min(j.run_at) - interval '1 microsecond') INTO v_at FROM rcjobs.job j
            WHERE j.exclusion_key = v_key AND j.state IN ('ready', 'blocked') AND j.id <> p_id;
            v_at := greatest(v_at, '1970-01-01 00:00:00+00'::timestamptz);
        END IF;
    END IF;
    UPDATE rcjobs.job SET run_at = v_at WHERE id = p_id;
    IF v_key IS NOT NULL THEN
        PERFORM rcjobs.pick_lane_heads(ARRAY[v_key]);
    END IF;
    IF v_at <= now() THEN
        PERFORM pg_notify('rcjobs_jobs', '');
    END IF;
    RETURN 'ok';
END $$;

-- Deletes jobs for good: pending ones (ready, blocked; their lanes re-picked) and dead ones.
-- Outcome per id: 'deleted', 'running' (refused: its handler may be mid-way), 'finished'
-- (completed, cancelled or superseded: history, pruned by retention) or 'not_found'.
CREATE FUNCTION rcjobs.delete_jobs(p_ids bigint[]) RETURNS TABLE (job_id bigint, outcome text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_id bigint;
    v_key text;
    r record;
BEGIN
    FOREACH v_id IN ARRAY coalesce(p_ids, '{}') LOOP
        job_id := v_id;
        SELECT j.exclusion_key INTO v_key FROM rcjobs.job j WHERE j.id = v_id;
        IF FOUND THEN
            IF v_key IS NOT NULL THEN
                PERFORM 1 FROM rcjobs.lane l WHERE l.key = v_key FOR UPDATE;
            END IF;
            DELETE FROM rcjobs.job j WHERE j.id = v_id AND j.state <> 'running'
            RETURNING j.queue, j.kind, j.state INTO r;
            IF FOUND THEN
                INSERT INTO rcjobs.stat_delta (queue, kind, state, n) VALUES (r.queue, r.kind, r.state, -1);
                IF v_key IS NOT NULL THEN
                    PERFORM rcjobs.pick_lane_heads(ARRAY[v_key]);
                END IF;
                outcome := 'deleted';
            ELSIF EXISTS (SELECT 1 FROM rcjobs.job j WHERE j.id = v_id) THEN
                outcome := 'running';
            ELSE
                outcome := 'not_found';
            END IF;
        ELSE
            DELETE FROM rcjobs.job_history h WHERE h.id = v_id AND h.state = 'dead'
            RETURNING h.queue, h.kind INTO r;
            IF FOUND THEN
                INSERT INTO rcjobs.stat_delta (queue, kind, state, n) VALUES (r.queue, r.kind, 'dead', -1);
                outcome := 'deleted';
            ELSIF EXISTS (SELECT 1 FROM rcjobs.job_history h WHERE h.id = v_id) THEN
                outcome := 'finished';
            ELSE
                outcome := 'not_found';
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;

-- 0004's skip scans, over the unpaused claim index; marked (paused) jobs were due when marked
-- and are counted by paused_counts instead.
CREATE OR REPLACE FUNCTION rcjobs.ready_groups() RETURNS TABLE (queue text, priority smallint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE g(queue, priority) AS (
        (SELECT j.queue, j.priority FROM rcjobs.job j
         WHERE j.state = 'ready' AND NOT j.paused ORDER BY j.queue, j.priority LIMIT 1)
        UNION ALL
        SELECT n.queue, n.priority FROM g CROSS JOIN LATERAL (
            SELECT j.queue, j.priority FROM rcjobs.job j
            WHERE j.state = 'ready' AND NOT j.paused AND (j.queue, j.priority) > (g.queue, g.priority)
            ORDER BY j.queue, j.priority LIMIT 1) n)
    SELECT g.queue, g.priority FROM g
$$;

CREATE OR REPLACE FUNCTION rcjobs.scheduled_counts() RETURNS TABLE (queue text, kind text, state text, n bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT f.queue, f.kind, 'ready', count(*)::bigint FROM rcjobs.ready_groups() g CROSS JOIN LATERAL (
        SELECT j.queue, j.kind FROM rcjobs.job j
        WHERE j.state = 'ready' AND NOT j.paused AND j.queue = g.queue AND j.priority = g.priority
          AND j.run_at > now()) f
    GROUP BY 1, 2
    UNION ALL
    SELECT b.queue, b.kind, 'blocked', count(*)::bigint FROM rcjobs.job b
    WHERE b.state = 'blocked' AND b.run_at > now() GROUP BY 1, 2
$$;

CREATE OR REPLACE FUNCTION rcjobs.oldest_due_by_queue() RETURNS TABLE (queue text, run_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT g.queue, min(f.run_at) FROM rcjobs.ready_groups() g CROSS JOIN LATERAL (
        SELECT j.run_at FROM rcjobs.job j
        WHERE j.state = 'ready' AND NOT j.paused AND j.queue = g.queue AND j.priority = g.priority
          AND j.run_at <= now()
        ORDER BY j.run_at LIMIT 1) f
    GROUP BY g.queue
$$;

-- Jobs held back by a kind pause, per (queue, kind): the marked ones, by their own index
-- (O(paused jobs), zero rows when nothing is paused).
CREATE FUNCTION rcjobs.paused_counts() RETURNS TABLE (queue text, kind text, n bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT j.queue, j.kind, count(*)::bigint FROM rcjobs.job j WHERE j.paused GROUP BY 1, 2
$$;

REVOKE ALL ON TABLE rcjobs.pause FROM PUBLIC;
REVOKE ALL ON FUNCTION rcjobs.pause(text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION rcjobs.resume(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION rcjobs.move_job(bigint, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION rcjobs.delete_jobs(bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION rcjobs.paused_counts() FROM PUBLIC;

CREATE OR REPLACE FUNCTION rcjobs.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 5 $$;
