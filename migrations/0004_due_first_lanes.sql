-- Lanes that never let a job that is not running delay one that is due (decision 0006).
--
-- Before: a lane's head was its first job by id, whatever its run_at, so a sync scheduled an
-- hour ahead by the periodic reconcile, a retry in backoff or an operator's `--run-at +1d`
-- kept every later job of the same key blocked until it ran. Dedup folded a due enqueue into
-- a pending duplicate scheduled later. A run_at of ±infinity or past chrono's range was
-- accepted and crashed the workers that claimed it.
--
-- Now, per exclusion key, the head (the one job allowed to be ready or running) is the
-- pending job due first (run_at, then id), re-chosen whenever that could change: a job joins
-- the lane, the head finishes, the head goes back to wait (retry, snooze), or a dedup hit
-- pulls a job forward. A running head is never displaced: at most one job per key runs.
-- Dedup: the earlier run_at wins; a retry waiting in backoff is superseded by the newer job.

-- Never queue behind the hot job table for long (docs/operations.md §8): a migration that
-- times out is simply run again. Workers of schema 3 keep working on schema 4 (every function
-- they call keeps its signature).
SET LOCAL lock_timeout = '5s';

-- ---------------------------------------------------------------------------------------------
-- run_at bounds (rcjobs_queue::check_run_at says the same)
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION rcjobs.run_at_ok(p_run_at timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_run_at IS NULL
        OR (p_run_at >= '1970-01-01 00:00:00+00'::timestamptz AND p_run_at < '10000-01-01 00:00:00+00'::timestamptz)
$$;

CREATE FUNCTION rcjobs.check_run_at(p_run_at timestamptz) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT rcjobs.run_at_ok(p_run_at) THEN
        RAISE EXCEPTION 'rcjobs: run_at must be from 1970-01-01 to before 10000-01-01 UTC, got %', p_run_at
            USING ERRCODE = '22023',
                  HINT = 'NULL means now; a Moodle time past year 9999 (timeend = 9000000000000) names no real instant';
    END IF;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Lane heads
-- ---------------------------------------------------------------------------------------------
DROP INDEX rcjobs.job_blocked_idx;
-- the next head of a lane: its blocked job due first
CREATE INDEX job_blocked_idx ON rcjobs.job (exclusion_key, run_at, id) WHERE state = 'blocked';

-- Re-chooses the head of each lane in p_keys whose head is not running: the pending job of the
-- key due first (run_at, then id) becomes ready, the former head (if still pending) blocked; a
-- lane with no job left is dropped. Lanes are locked in key order, so callers that lock
-- several cannot deadlock each other.
CREATE FUNCTION rcjobs.pick_lane_heads(p_keys text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    r record;
    b record;
    v_pending boolean;
    v_head_state text;
    v_head_run_at timestamptz;
    v_queue text;
    v_kind text;
BEGIN
    FOR r IN
        SELECT l.key, l.head_id FROM rcjobs.lane l WHERE l.key = ANY (p_keys) ORDER BY l.key FOR UPDATE OF l
    LOOP
        SELECT j.state, j.run_at INTO v_head_state, v_head_run_at FROM rcjobs.job j WHERE j.id = r.head_id;
        v_pending := FOUND;
        CONTINUE WHEN v_head_state = 'running';
        SELECT j.id, j.queue, j.kind, j.run_at INTO b FROM rcjobs.job j
        WHERE j.exclusion_key = r.key AND j.state = 'blocked'
        ORDER BY j.run_at, j.id LIMIT 1;
        IF NOT FOUND THEN
            IF NOT v_pending THEN
                DELETE FROM rcjobs.lane WHERE key = r.key;
            END IF;
            CONTINUE;
        END IF;
        IF v_pending THEN
            CONTINUE WHEN (v_head_run_at, r.head_id) <= (b.run_at, b.id);
            -- a worker may have claimed it since we looked: then it keeps the lane
            UPDATE rcjobs.job SET state = 'blocked' WHERE id = r.head_id AND state = 'ready'
            RETURNING queue, kind INTO v_queue, v_kind;
            CONTINUE WHEN NOT FOUND;
            INSERT INTO rcjobs.stat_delta (queue, kind, state, n)
            VALUES (v_queue, v_kind, 'ready', -1), (v_queue, v_kind, 'blocked', 1);
        END IF;
        UPDATE rcjobs.job SET state = 'ready' WHERE id = b.id;
        INSERT INTO rcjobs.stat_delta (queue, kind, state, n)
        VALUES (b.queue, b.kind, 'blocked', -1), (b.queue, b.kind, 'ready', 1);
        UPDATE rcjobs.lane SET head_id = b.id, updated_at = now() WHERE key = r.key;
        IF b.run_at <= now() THEN
            PERFORM pg_notify('rcjobs_jobs', '');
        END IF;
    END LOOP;
END $$;

-- Called with the keys of finished jobs (complete_jobs, finish_jobs). The finished ids are
-- no longer needed: a lane whose head is gone or waiting gets a new one either way.
CREATE OR REPLACE FUNCTION rcjobs.advance_lanes(p_keys text[], p_finished bigint[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM rcjobs.pick_lane_heads(p_keys);
END $$;

-- Puts job p_id (due at p_run_at, not yet inserted) on lane p_key; true when it becomes the
-- head. It takes the head from a head that is not running and is due later. The usual case
-- (head running or due first) only share-locks the lane row: an update per enqueue made
-- every later enqueue on that lane in the same transaction walk all the row versions before
-- it (quadratic: 4,000 jobs on one lane took 16 s). The lock, share or not, makes
-- pick_lane_heads (FOR UPDATE) wait until this job is committed and visible.
CREATE FUNCTION rcjobs.join_lane(p_key text, p_id bigint, p_run_at timestamptz) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_head bigint;
    v_state text;
    v_run_at timestamptz;
    v_take boolean;
    v_queue text;
    v_kind text;
BEGIN
    LOOP
        INSERT INTO rcjobs.lane (key, head_id) VALUES (p_key, p_id)
        ON CONFLICT (key) DO NOTHING RETURNING head_id INTO v_head;
        IF FOUND THEN
            RETURN true;
        END IF;
        -- unlocked look first: take the row exclusively only when the head may change hands,
        -- so concurrent enqueuers that will both take it queue up instead of deadlocking
        SELECT j.state = 'ready' AND j.run_at > p_run_at INTO v_take
        FROM rcjobs.lane l JOIN rcjobs.job j ON j.id = l.head_id WHERE l.key = p_key;
        IF coalesce(v_take, false) THEN
            SELECT l.head_id INTO v_head FROM rcjobs.lane l WHERE l.key = p_key FOR UPDATE;
        ELSE
            SELECT l.head_id INTO v_head FROM rcjobs.lane l WHERE l.key = p_key FOR SHARE;
        END IF;
        CONTINUE WHEN NOT FOUND; -- the lane emptied and was dropped meanwhile: start again
        SELECT j.state, j.run_at INTO v_state, v_run_at FROM rcjobs.job j WHERE j.id = v_head;
        IF v_state = 'ready' AND v_run_at > p_run_at THEN
            IF NOT coalesce(v_take, false) THEN
                -- the head changed while we waited (rare): upgrade the lock
                PERFORM 1 FROM rcjobs.lane l WHERE l.key = p_key FOR UPDATE;
            END IF;
            UPDATE rcjobs.job SET state = 'blocked' WHERE id = v_head AND state = 'ready'
            RETURNING queue, kind INTO v_queue, v_kind;
            IF FOUND THEN
                INSERT INTO rcjobs.stat_delta (queue, kind, state, n)
                VALUES (v_queue, v_kind, 'ready', -1), (v_queue, v_kind, 'blocked', 1);
                UPDATE rcjobs.lane SET head_id = p_id, updated_at = now() WHERE key = p_key;
                RETURN true;
            END IF;
        END IF;
        RETURN v_head = p_id;
    END LOOP;
END $$;

-- Inserts one job (id already drawn) and joins its lane; its state.
CREATE FUNCTION rcjobs.insert_job(p_id bigint, k rcjobs.job_kind, p_queue text, p_priority smallint,
    p_run_at timestamptz, p_payload jsonb, p_max_attempts integer, p_dedup_key text, p_exclusion_key text)
RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_state text := 'ready';
BEGIN
    IF p_exclusion_key IS NOT NULL AND NOT rcjobs.join_lane(p_exclusion_key, p_id, p_run_at) THEN
        v_state := 'blocked';
    END IF;
    INSERT INTO rcjobs.job (id, kind, queue, state, priority, run_at, payload, max_attempts, dedup_key, exclusion_key)
    VALUES (p_id, k.name, p_queue, v_state, coalesce(p_priority, 0), p_run_at, p_payload,
            coalesce(p_max_attempts, k.max_attempts), p_dedup_key, p_exclusion_key);
    PERFORM rcjobs.enqueued(p_queue, k.name, v_state, p_run_at);
    RETURN v_state;
END $$;

-- A pending duplicate due later than p_run_at: pulled forward when it never ran, superseded by
-- the new job p_new when it is a retry waiting in backoff. p_lane is the duplicate's exclusion
-- key as last seen. Returns the id that covers the
-- enqueue (the duplicate's, or NULL when it was superseded or is gone: insert p_new).
CREATE FUNCTION rcjobs.meet_later_duplicate(p_kind text, p_dedup_key text, p_run_at timestamptz,
    p_lane text, p_new bigint)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d record;
BEGIN
    -- lane before job row, the order pick_lane_heads takes them in
    IF p_lane IS NOT NULL THEN
        PERFORM 1 FROM rcjobs.lane l WHERE l.key = p_lane FOR UPDATE;
    END IF;
    SELECT j.id, j.run_at, j.attempt, j.state, j.exclusion_key INTO d FROM rcjobs.job j
    WHERE j.kind = p_kind AND j.dedup_key = p_dedup_key AND j.state IN ('ready', 'blocked')
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL; -- claimed or finished meanwhile
    END IF;
    IF d.run_at <= p_run_at THEN
        RETURN d.id;
    END IF;
    IF d.attempt > 0 THEN
        PERFORM rcjobs.finish_jobs(ARRAY[d.id], ARRAY['superseded'], ARRAY[p_new]);
        RETURN NULL;
    END IF;
    UPDATE rcjobs.job SET run_at = p_run_at WHERE id = d.id;
    IF d.exclusion_key IS NOT NULL THEN
        PERFORM rcjobs.pick_lane_heads(ARRAY[d.exclusion_key]);
    END IF;
    IF d.state = 'ready' AND p_run_at <= now() THEN
        PERFORM pg_notify('rcjobs_jobs', '');
    END IF;
    RETURN d.id;
END $$;

-- Same contract as 0001, plus: run_at checked; a dedup hit never delays the enqueue.
CREATE OR REPLACE FUNCTION rcjobs.enqueue_ex(
    p_kind text, p_payload jsonb, p_queue text DEFAULT 'default', p_priority smallint DEFAULT 0,
    p_run_at timestamptz DEFAULT NULL, p_dedup_key text DEFAULT NULL, p_exclusion_key text DEFAULT NULL,
    p_max_attempts integer DEFAULT NULL, OUT id bigint, OUT deduplicated boolean)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k rcjobs.job_kind;
    v_queue text := coalesce(p_queue, 'default');
    v_run_at timestamptz := coalesce(p_run_at, now());
    v_dup_run_at timestamptz;
    v_dup_lane text;
    v_dup boolean;
    v_cover bigint;
BEGIN
    k := rcjobs.check_job(p_kind, p_payload, v_queue, p_max_attempts);
    PERFORM rcjobs.check_run_at(p_run_at);
    IF p_dedup_key IS NULL THEN
        id := nextval('rcjobs.job_id_seq');
        PERFORM rcjobs.insert_job(id, k, v_queue, p_priority, v_run_at, p_payload, p_max_attempts, NULL, p_exclusion_key);
        deduplicated := false;
        RETURN;
    END IF;
    LOOP
        SELECT j.id, j.run_at, j.exclusion_key INTO v_cover, v_dup_run_at, v_dup_lane FROM rcjobs.job j
        WHERE j.kind = p_kind AND j.dedup_key = p_dedup_key AND j.state IN ('ready', 'blocked');
        v_dup := FOUND;
        IF v_dup AND v_dup_run_at <= v_run_at THEN
            -- the common case, without a lock: the pending job runs no later than this one would
            id := v_cover;
            deduplicated := true;
            RETURN;
        END IF;
        id := nextval('rcjobs.job_id_seq');
        IF v_dup THEN
            v_cover := rcjobs.meet_later_duplicate(p_kind, p_dedup_key, v_run_at, v_dup_lane, id);
            IF v_cover IS NOT NULL THEN
                id := v_cover;
                deduplicated := true;
                RETURN;
            END IF;
        END IF;
        BEGIN
            PERFORM rcjobs.insert_job(id, k, v_queue, p_priority, v_run_at, p_payload, p_max_attempts,
                                      p_dedup_key, p_exclusion_key);
            deduplicated := false;
            RETURN;
        EXCEPTION WHEN unique_violation THEN
            -- a concurrent enqueue of the same dedup key won; loop to meet it
            NULL;
        END;
    END LOOP;
END $$;

-- Same contract as 0001; run_at is checked on the fast path too.
CREATE OR REPLACE FUNCTION rcjobs.enqueue_many(
    kinds text[], payloads jsonb[], queues text[] DEFAULT NULL, priorities smallint[] DEFAULT NULL,
    run_ats timestamptz[] DEFAULT NULL, dedup_keys text[] DEFAULT NULL, exclusion_keys text[] DEFAULT NULL,
    max_attempts integer[] DEFAULT NULL)
RETURNS TABLE (ord integer, id bigint, deduplicated boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n integer := coalesce(cardinality(kinds), 0);
    bad record;
    i integer;
    r record;
BEGIN
    IF coalesce(cardinality(payloads), 0) <> n
       OR (queues IS NOT NULL AND cardinality(queues) <> n)
       OR (priorities IS NOT NULL AND cardinality(priorities) <> n)
       OR (run_ats IS NOT NULL AND cardinality(run_ats) <> n)
       OR (dedup_keys IS NOT NULL AND cardinality(dedup_keys) <> n)
       OR (exclusion_keys IS NOT NULL AND cardinality(exclusion_keys) <> n)
       OR (max_attempts IS NOT NULL AND cardinality(max_attempts) <> n) THEN
        RAISE EXCEPTION 'rcjobs: enqueue_many arrays must all have % elements', n USING ERRCODE = '22023';
    END IF;
    IF n = 0 THEN
        RETURN;
    END IF;
    IF (dedup_keys IS NULL OR array_position(ARRAY(SELECT x IS NOT NULL FROM unnest(dedup_keys) x), true) IS NULL)
       AND (exclusion_keys IS NULL OR array_position(ARRAY(SELECT x IS NOT NULL FROM unnest(exclusion_keys) x), true) IS NULL) THEN
        -- fast path: validate in one pass, insert in one statement
        SELECT u.o, u.k, u.p, u.q, u.m, u.ra INTO bad
        FROM unnest(kinds, payloads, queues, max_attempts, run_ats) WITH ORDINALITY AS u(k, p, q, m, ra, o)
        LEFT JOIN rcjobs.job_kind jk ON jk.name = u.k
        WHERE jk.name IS NULL OR jsonb_typeof(u.p) IS DISTINCT FROM 'object'
           OR octet_length(u.p::text) > jk.max_payload_bytes OR NOT (u.p ?& jk.required_fields)
           OR (u.q IS NOT NULL AND (u.q = '' OR length(u.q) > 100)) OR u.m < 1
           OR NOT rcjobs.run_at_ok(u.ra)
        ORDER BY u.o LIMIT 1;
        IF FOUND THEN
            BEGIN
                PERFORM rcjobs.check_job(bad.k, bad.p, coalesce(bad.q, 'default'), bad.m);
                PERFORM rcjobs.check_run_at(bad.ra);
            EXCEPTION WHEN invalid_parameter_value THEN
                RAISE EXCEPTION '% (job % of %)', SQLERRM, bad.o, n USING ERRCODE = '22023';
            END;
        END IF;
        RETURN QUERY
        WITH src AS (
            SELECT nextval('rcjobs.job_id_seq') AS nid, u.o, u.k, u.p, u.q, u.pr, u.ra, u.m
            FROM unnest(kinds, payloads, queues, priorities, run_ats, max_attempts)
                 WITH ORDINALITY AS u(k, p, q, pr, ra, m, o)
            ORDER BY u.o),
        ins AS (
            INSERT INTO rcjobs.job (id, kind, queue, priority, run_at, payload, max_attempts)
            SELECT s.nid, s.k, coalesce(s.q, 'default'), coalesce(s.pr, 0), coalesce(s.ra, now()), s.p,
                   coalesce(s.m, jk.max_attempts)
            FROM src s JOIN rcjobs.job_kind jk ON jk.name = s.k
            RETURNING queue, kind),
        cnt AS (
            INSERT INTO rcjobs.stat_delta (queue, kind, state, n)
            SELECT i.queue, i.kind, 'ready', count(*) FROM ins i GROUP BY 1, 2)
        SELECT s.o::integer, s.nid, false FROM src s ORDER BY s.o;
        IF run_ats IS NULL OR EXISTS (SELECT 1 FROM unnest(run_ats) AS t(ra) WHERE t.ra IS NULL OR t.ra <= now()) THEN
            PERFORM pg_notify('rcjobs_jobs', '');
        END IF;
        RETURN;
    END IF;
    -- keys present: per-row path with full dedup/lane semantics
    FOR i IN 1..n LOOP
        BEGIN
            SELECT * INTO r FROM rcjobs.enqueue_ex(kinds[i], payloads[i], coalesce(queues[i], 'default'),
                coalesce(priorities[i], 0::smallint), run_ats[i], dedup_keys[i], exclusion_keys[i], max_attempts[i]);
        EXCEPTION WHEN invalid_parameter_value THEN
            RAISE EXCEPTION '% (job % of %)', SQLERRM, i, n USING ERRCODE = '22023';
        END;
        ord := i; id := r.id; deduplicated := r.deduplicated;
        RETURN NEXT;
    END LOOP;
END $$;

-- Same contract as 0001; a job going back to wait (retry, snooze) re-chooses its lane's head,
-- so a due job of the same key runs while it backs off.
CREATE OR REPLACE FUNCTION rcjobs.settle_jobs(p_ids bigint[], p_tokens integer[], p_actions text[],
                                              p_run_ats timestamptz[], p_errors text[])
RETURNS TABLE (job_id bigint, outcome text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan AS $$
#variable_conflict use_column
DECLARE
    v_ids bigint[];
    v_out text[];
    v_sup bigint[];
    v_keys text[];
    v_tries integer := 0;
    v_in jsonb;
BEGIN
    -- lock the rows that still belong to the caller, decide each outcome
    IF to_regclass('pg_temp.rcjobs_settle') IS NULL THEN
        CREATE TEMP TABLE rcjobs_settle (
            id bigint, action text, run_at timestamptz, err text, outcome text, sup bigint) ON COMMIT DELETE ROWS;
    END IF;
    TRUNCATE rcjobs_settle;
    -- inputs by id in a map, probed per row (see complete_jobs: no join with the list)
    SELECT jsonb_object_agg(u.id::text, jsonb_build_object('t', u.token, 'a', u.action, 'r', u.run_at, 'e', u.err))
    INTO v_in FROM unnest(p_ids, p_tokens, p_actions, p_run_ats, p_errors) AS u(id, token, action, run_at, err);
    INSERT INTO rcjobs_settle (id, action, run_at, err, outcome)
    SELECT s.id, s.a ->> 'a', (s.a ->> 'r')::timestamptz, s.a ->> 'e',
           CASE WHEN s.a ->> 'a' = 'dead' THEN 'dead'
                WHEN s.a ->> 'a' IN ('retry', 'expire') AND s.attempt >= s.max_attempts THEN 'dead'
                ELSE 'pending' END
    FROM (SELECT j.id, j.attempt, j.max_attempts, v_in -> (j.id::text) AS a
          FROM rcjobs.job j
          WHERE j.id = ANY (p_ids) AND j.state = 'running'
            AND (v_in -> (j.id::text) ->> 't' IS NULL OR j.token = (v_in -> (j.id::text) ->> 't')::integer)
          ORDER BY j.id
          FOR UPDATE OF j) s;

    -- the lanes this batch touches, locked in key order before any of them is changed
    SELECT array_agg(DISTINCT j.exclusion_key) INTO v_keys
    FROM rcjobs_settle s JOIN rcjobs.job j ON j.id = s.id WHERE j.exclusion_key IS NOT NULL;
    IF v_keys IS NOT NULL THEN
        PERFORM 1 FROM rcjobs.lane l WHERE l.key = ANY (v_keys) ORDER BY l.key FOR UPDATE;
    END IF;

    -- error history (last 25 entries)
    UPDATE rcjobs.job j
    SET last_error = s.err,
        errors = jsonb_path_query_array(
            j.errors || jsonb_build_array(jsonb_build_object(
                'attempt', j.attempt, 'at', now(), 'class', s.action, 'error', s.err)),
            '$[last - 24 to last]')
    FROM rcjobs_settle s
    WHERE j.id = s.id AND s.action IN ('retry', 'dead', 'expire') AND s.err IS NOT NULL;

    LOOP
        BEGIN
            -- pending dedup collision: the newer pending job covers this one
            UPDATE rcjobs_settle s SET outcome = 'superseded', sup = p.id
            FROM rcjobs.job j, rcjobs.job p
            WHERE s.outcome = 'pending' AND j.id = s.id AND j.dedup_key IS NOT NULL
              AND p.kind = j.kind AND p.dedup_key = j.dedup_key AND p.state IN ('ready', 'blocked') AND p.id <> j.id;

            WITH u AS (
            UPDATE rcjobs.job j
            SET state = 'ready',
                -- a crashed or handed-back job keeps its place: it was due when claimed, and
                -- sending it behind a long backlog would delay a crash redelivery by minutes
                run_at = coalesce(s.run_at, CASE WHEN s.action IN ('expire', 'release')
                                                 THEN least(j.run_at, now()) ELSE now() END),
                lease_until = NULL,
                worker_id = NULL,
                attempt = CASE WHEN s.action IN ('snooze', 'release') THEN greatest(j.attempt - 1, 0) ELSE j.attempt END,
                snoozes = j.snoozes + CASE WHEN s.action = 'snooze' THEN 1 ELSE 0 END,
                fail_delay_s = CASE WHEN s.action = 'retry'
                                    THEN greatest(0, extract(epoch FROM coalesce(s.run_at, now()) - now()))::integer
                                    ELSE j.fail_delay_s END
            FROM rcjobs_settle s
            WHERE j.id = s.id AND s.outcome = 'pending'
            RETURNING j.queue, j.kind)
            INSERT INTO rcjobs.stat_delta (queue, kind, state, n)
            SELECT g.queue, g.kind, x.state, x.n
            FROM (SELECT u.queue, u.kind, count(*) AS c FROM u GROUP BY 1, 2) g
            CROSS JOIN LATERAL (VALUES ('running', -g.c), ('ready', g.c)) AS x(state, n);
            EXIT;
        EXCEPTION WHEN unique_violation THEN
            v_tries := v_tries + 1;
            IF v_tries > 20 THEN RAISE; END IF;
        END;
    END LOOP;

    SELECT array_agg(id), array_agg(outcome), array_agg(sup) INTO v_ids, v_out, v_sup
    FROM rcjobs_settle WHERE outcome IN ('dead', 'superseded');
    IF v_ids IS NOT NULL THEN
        PERFORM rcjobs.finish_jobs(v_ids, v_out, v_sup); -- re-picks the lanes of these
    END IF;
    -- the lanes of jobs gone back to wait: a due job of the key may run meanwhile
    SELECT array_agg(DISTINCT j.exclusion_key) INTO v_keys
    FROM rcjobs_settle s JOIN rcjobs.job j ON j.id = s.id
    WHERE s.outcome = 'pending' AND j.exclusion_key IS NOT NULL;
    IF v_keys IS NOT NULL THEN
        PERFORM rcjobs.pick_lane_heads(v_keys);
    END IF;

    RETURN QUERY SELECT s.id, CASE WHEN s.outcome = 'pending' THEN s.action ELSE s.outcome END FROM rcjobs_settle s;
END $$;

-- Same contract as 0001; a requeued job joins its lane as due now.
CREATE OR REPLACE FUNCTION rcjobs.retry_dead(p_ids bigint[] DEFAULT NULL, p_limit integer DEFAULT 100000)
RETURNS TABLE (job_id bigint, outcome text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    r rcjobs.job_history;
    v_state text;
    v_sup bigint;
BEGIN
    FOR r IN
        DELETE FROM rcjobs.job_history h
        WHERE h.id IN (SELECT x.id FROM rcjobs.job_history x
                       WHERE x.state = 'dead' AND (p_ids IS NULL OR x.id = ANY (p_ids))
                       ORDER BY x.id LIMIT p_limit)
        RETURNING h.*
    LOOP
        job_id := r.id;
        v_sup := NULL;
        INSERT INTO rcjobs.stat_delta (queue, kind, state, n) VALUES (r.queue, r.kind, 'dead', -1);
        IF r.dedup_key IS NOT NULL THEN
            SELECT p.id INTO v_sup FROM rcjobs.job p
            WHERE p.kind = r.kind AND p.dedup_key = r.dedup_key AND p.state IN ('ready', 'blocked');
        END IF;
        BEGIN
            IF v_sup IS NULL THEN
                v_state := 'ready';
                IF r.exclusion_key IS NOT NULL THEN
                    IF NOT rcjobs.join_lane(r.exclusion_key, r.id, now()) THEN v_state := 'blocked'; END IF;
                END IF;
                INSERT INTO rcjobs.job (id, kind, queue, state, priority, run_at, payload, attempt, max_attempts,
                    dedup_key, exclusion_key, enqueued_at, last_error, errors, snoozes)
                VALUES (r.id, r.kind, r.queue, v_state, r.priority, now(), r.payload, 0, r.max_attempts,
                    r.dedup_key, r.exclusion_key, r.enqueued_at, r.last_error, r.errors, r.snoozes);
                PERFORM rcjobs.enqueued(r.queue, r.kind, v_state, NULL);
                outcome := 'requeued';
            END IF;
        EXCEPTION WHEN unique_violation THEN
            SELECT p.id INTO v_sup FROM rcjobs.job p
            WHERE p.kind = r.kind AND p.dedup_key = r.dedup_key AND p.state IN ('ready', 'blocked');
        END;
        IF v_sup IS NOT NULL THEN
            r.state := 'superseded';
            r.superseded_by := v_sup;
            r.finished_at := now();
            INSERT INTO rcjobs.job_history SELECT r.*;
            INSERT INTO rcjobs.stat_delta (queue, kind, state, n) VALUES (r.queue, r.kind, 'superseded', 1);
            outcome := 'superseded';
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Pending jobs not yet due (delayed, backing off, the periodic reconcile's spread syncs), so
-- callers can tell waiting work from scheduled work: the counters cannot (their `ready`
-- includes both). Ready ones by a skip scan of the claim index, one range per (queue,
-- priority): O(scheduled jobs), never the due backlog. Blocked ones by their own index.
-- ---------------------------------------------------------------------------------------------

-- The (queue, priority) groups that have ready jobs: one probe of the claim index per group.
CREATE FUNCTION rcjobs.ready_groups() RETURNS TABLE (queue text, priority smallint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE g(queue, priority) AS (
        (SELECT j.queue, j.priority FROM rcjobs.job j
         WHERE j.state = 'ready' ORDER BY j.queue, j.priority LIMIT 1)
        UNION ALL
        SELECT n.queue, n.priority FROM g CROSS JOIN LATERAL (
            SELECT j.queue, j.priority FROM rcjobs.job j
            WHERE j.state = 'ready' AND (j.queue, j.priority) > (g.queue, g.priority)
            ORDER BY j.queue, j.priority LIMIT 1) n)
    SELECT g.queue, g.priority FROM g
$$;

-- By (queue, kind) and the state the jobs sit in (ready or blocked), for metrics and
-- `rcjobs status`: the counters' ready less these is the work due now.
CREATE FUNCTION rcjobs.scheduled_counts() RETURNS TABLE (queue text, kind text, state text, n bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT f.queue, f.kind, 'ready', count(*)::bigint FROM rcjobs.ready_groups() g CROSS JOIN LATERAL (
        SELECT j.queue, j.kind FROM rcjobs.job j
        WHERE j.state = 'ready' AND j.queue = g.queue AND j.priority = g.priority AND j.run_at > now()) f
    GROUP BY 1, 2
    UNION ALL
    SELECT b.queue, b.kind, 'blocked', count(*)::bigint FROM rcjobs.job b
    WHERE b.state = 'blocked' AND b.run_at > now() GROUP BY 1, 2
$$;

-- Per queue, the run_at of its oldest ready job that is due (queues with none are absent):
-- one probe per (queue, priority) group of the claim index.
CREATE FUNCTION rcjobs.oldest_due_by_queue() RETURNS TABLE (queue text, run_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT g.queue, min(f.run_at) FROM rcjobs.ready_groups() g CROSS JOIN LATERAL (
        SELECT j.run_at FROM rcjobs.job j
        WHERE j.state = 'ready' AND j.queue = g.queue AND j.priority = g.priority AND j.run_at <= now()
        ORDER BY j.run_at LIMIT 1) f
    GROUP BY g.queue
$$;

DROP FUNCTION rcjobs.join_lane(text, bigint);

REVOKE ALL ON FUNCTION rcjobs.run_at_ok(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION rcjobs.check_run_at(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION rcjobs.pick_lane_heads(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION rcjobs.ready_groups() FROM PUBLIC;
REVOKE ALL ON FUNCTION rcjobs.scheduled_counts() FROM PUBLIC;
REVOKE ALL ON FUNCTION rcjobs.oldest_due_by_queue() FROM PUBLIC;
REVOKE ALL ON FUNCTION rcjobs.join_lane(text, bigint, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION rcjobs.insert_job(bigint, rcjobs.job_kind, text, smallint, timestamptz, jsonb, integer, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION rcjobs.meet_later_duplicate(text, text, timestamptz, text, bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION rcjobs.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 4 $$;
