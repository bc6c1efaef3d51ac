-- rcjobs queue core: schema, tables, counters, SQL API.
-- Hot table `rcjobs.job` holds unfinished jobs only (ready, running, blocked); finished jobs
-- (completed, dead, cancelled, superseded) live in `rcjobs.job_history`.

CREATE SCHEMA IF NOT EXISTS rcjobs;

-- Version the binary checks before it runs (rcjobs_queue::check_schema).
CREATE OR REPLACE FUNCTION rcjobs.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 1 $$;

-- ---------------------------------------------------------------------------------------------
-- Kind registry
-- ---------------------------------------------------------------------------------------------
CREATE TABLE rcjobs.job_kind (
    name              text PRIMARY KEY CHECK (name <> '' AND length(name) <= 200),
    required_fields   text[]      NOT NULL DEFAULT '{}',
    max_attempts      integer     NOT NULL DEFAULT 12 CHECK (max_attempts BETWEEN 1 AND 1000),
    max_payload_bytes integer     NOT NULL DEFAULT 65536 CHECK (max_payload_bytes > 0),
    component         text        NOT NULL DEFAULT 'rcjobs',
    description       text        NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- Jobs
-- ---------------------------------------------------------------------------------------------
CREATE SEQUENCE rcjobs.job_id_seq AS bigint;

CREATE TABLE rcjobs.job (
    id            bigint      PRIMARY KEY DEFAULT nextval('rcjobs.job_id_seq'),
    kind          text        NOT NULL,
    queue         text        NOT NULL DEFAULT 'default',
    -- ready: waiting for run_at / a worker; running: leased; blocked: behind its exclusion lane head
    state         text        NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'running', 'blocked')),
    priority      smallint    NOT NULL DEFAULT 0,
    run_at        timestamptz NOT NULL DEFAULT now(),
    payload       jsonb       NOT NULL,
    attempt       integer     NOT NULL DEFAULT 0,
    max_attempts  integer     NOT NULL,
    -- fencing token: incremented by every claim; every ack is a CAS on (id, token)
    token         integer     NOT NULL DEFAULT 0,
    lease_until   timestamptz,
    worker_id     uuid,
    dedup_key     text,
    exclusion_key text,
    enqueued_at   timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    last_error    text,
    errors        jsonb       NOT NULL DEFAULT '[]',
    fail_delay_s  integer     NOT NULL DEFAULT 0,
    snoozes       integer     NOT NULL DEFAULT 0
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05,
        autovacuum_vacuum_cost_delay = 0);

ALTER SEQUENCE rcjobs.job_id_seq OWNED BY rcjobs.job.id;

-- claim: ORDER BY priority, run_at, id within a queue
CREATE INDEX job_claim_idx ON rcjobs.job (queue, priority, run_at, id) WHERE state = 'ready';
-- oldest ready age without scanning
CREATE INDEX job_ready_run_at_idx ON rcjobs.job (run_at) WHERE state = 'ready';
-- sweep of expired leases. Keyed on lease_until (set exactly while a job runs), not on
-- state: a partial index on state = 'running' is what the planner picks for every by-id
-- lookup that also checks state = 'running' (acks, renewals) whenever its statistics say few
-- jobs run, and then it walks every running row plus every dead entry left by finished jobs.
CREATE INDEX job_lease_idx ON rcjobs.job (lease_until) WHERE lease_until IS NOT NULL;
-- dedup: unique among jobs not yet started
CREATE UNIQUE INDEX job_dedup_idx ON rcjobs.job (kind, dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('ready', 'blocked');
-- exclusion lanes: next blocked job per key
CREATE INDEX job_blocked_idx ON rcjobs.job (exclusion_key, id) WHERE state = 'blocked';

CREATE TABLE rcjobs.job_history (
    id            bigint      NOT NULL PRIMARY KEY,
    kind          text        NOT NULL,
    queue         text        NOT NULL,
    state         text        NOT NULL CHECK (state IN ('completed', 'dead', 'cancelled', 'superseded')),
    priority      smallint    NOT NULL,
    run_at        timestamptz NOT NULL,
    payload       jsonb       NOT NULL,
    attempt       integer     NOT NULL,
    max_attempts  integer     NOT NULL,
    dedup_key     text,
    exclusion_key text,
    enqueued_at   timestamptz NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz NOT NULL DEFAULT now(),
    last_error    text,
    errors        jsonb       NOT NULL DEFAULT '[]',
    snoozes       integer     NOT NULL DEFAULT 0,
    superseded_by bigint,
    worker_id     uuid
);
CREATE INDEX job_history_finished_brin ON rcjobs.job_history USING brin (finished_at);
CREATE INDEX job_history_dead_idx ON rcjobs.job_history (id) WHERE state = 'dead';

-- Exclusion lanes: key -> the one job of that key allowed to be ready/running (FIFO by id).
CREATE TABLE rcjobs.lane (
    key        text        PRIMARY KEY,
    head_id    bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Worker processes (registration + heartbeat) for `rcjobs status`.
CREATE TABLE rcjobs.worker (
    id          uuid        PRIMARY KEY,
    hostname    text        NOT NULL,
    pid         integer     NOT NULL,
    queues      text[]      NOT NULL,
    concurrency integer     NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- O(1) statistics: every function below that moves a job appends per-(queue, kind, state)
-- deltas in the same statement (a data-modifying CTE, which runs whether or not the main
-- query reads it; no row locks, no hot row); compact_stats() folds them into
-- stat_count. Readers add both. No triggers: a statement trigger with transition tables
-- copies every changed row, payload included, and cost more than the change it counted.
-- Writing rcjobs.job or rcjobs.job_history by hand skews the counters: recount_stats()
-- rebuilds them.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE rcjobs.stat_delta (
    queue text   NOT NULL,
    kind  text   NOT NULL,
    state text   NOT NULL,
    n     bigint NOT NULL
);
CREATE TABLE rcjobs.stat_count (
    queue text   NOT NULL,
    kind  text   NOT NULL,
    state text   NOT NULL,
    n     bigint NOT NULL,
    PRIMARY KEY (queue, kind, state)
);

-- Folds deltas into stat_count; one compactor at a time (others return at once).
CREATE FUNCTION rcjobs.compact_stats() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_rows bigint := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7210431001) THEN
        RETURN 0;
    END IF;
    WITH d AS (DELETE FROM rcjobs.stat_delta RETURNING queue, kind, state, n),
    agg AS (SELECT queue, kind, state, sum(n)::bigint AS n, count(*) AS c FROM d GROUP BY 1, 2, 3),
    up AS (
        INSERT INTO rcjobs.stat_count AS s (queue, kind, state, n)
        SELECT queue, kind, state, n FROM agg ORDER BY 1, 2, 3
        ON CONFLICT (queue, kind, state) DO UPDATE SET n = s.n + EXCLUDED.n
        RETURNING 1)
    SELECT coalesce(sum(c), 0) INTO v_rows FROM agg, (SELECT count(*) FROM up) u;
    RETURN v_rows;
END $$;

-- Rebuilds the counters from the tables (O(n); for repair after manual TRUNCATE/COPY).
CREATE FUNCTION rcjobs.recount_stats() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7210431001);
    LOCK TABLE rcjobs.job, rcjobs.job_history IN SHARE MODE;
    DELETE FROM rcjobs.stat_delta;
    DELETE FROM rcjobs.stat_count;
    INSERT INTO rcjobs.stat_count (queue, kind, state, n)
    SELECT queue, kind, state, count(*) FROM rcjobs.job GROUP BY 1, 2, 3
    UNION ALL
    SELECT queue, kind, state, count(*) FROM rcjobs.job_history GROUP BY 1, 2, 3;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Enqueue
-- ---------------------------------------------------------------------------------------------

-- Raises 22023 'rcjobs: …' when a job cannot be accepted; returns the kind row otherwise.
CREATE FUNCTION rcjobs.check_job(p_kind text, p_payload jsonb, p_queue text, p_max_attempts integer)
RETURNS rcjobs.job_kind
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k rcjobs.job_kind;
    v_size integer;
    v_missing text[];
BEGIN
    SELECT * INTO k FROM rcjobs.job_kind WHERE name = p_kind;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rcjobs: unknown job kind "%"', p_kind
            USING ERRCODE = '22023', HINT = 'kinds are registered in rcjobs.job_kind (rcjobs migrate registers the built-in ones)';
    END IF;
    IF p_payload IS NULL OR jsonb_typeof(p_payload) <> 'object' THEN
        RAISE EXCEPTION 'rcjobs: payload of a "%" job must be a JSON object, got %', p_kind,
            coalesce(jsonb_typeof(p_payload), 'NULL') USING ERRCODE = '22023';
    END IF;
    v_size := octet_length(p_payload::text);
    IF v_size > k.max_payload_bytes THEN
        RAISE EXCEPTION 'rcjobs: payload of a "%" job is % bytes, over the limit of % bytes', p_kind, v_size,
            k.max_payload_bytes USING ERRCODE = '22023';
    END IF;
    IF NOT (p_payload ?& k.required_fields) THEN
        v_missing := ARRAY(SELECT f FROM unnest(k.required_fields) f WHERE NOT p_payload ? f);
        RAISE EXCEPTION 'rcjobs: payload of a "%" job is missing required field(s): %', p_kind,
            array_to_string(v_missing, ', ') USING ERRCODE = '22023';
    END IF;
    IF p_queue IS NULL OR p_queue = '' OR length(p_queue) > 100 THEN
        RAISE EXCEPTION 'rcjobs: queue name must be 1 to 100 characters' USING ERRCODE = '22023';
    END IF;
    IF p_max_attempts IS NOT NULL AND p_max_attempts < 1 THEN
        RAISE EXCEPTION 'rcjobs: max_attempts must be at least 1, got %', p_max_attempts USING ERRCODE = '22023';
    END IF;
    RETURN k;
END $$;

-- Puts job p_id on lane p_key; true when it is the lane's head (may run), false when it
-- waits behind the head. A lane row already there is only share-locked, not updated: an
-- upsert that rewrote it made every later enqueue on that lane in the same transaction walk
-- all the row versions before it (quadratic: 4,000 jobs on one lane took 16 s). The share
-- lock still makes advance_lanes (FOR UPDATE) wait until this job is committed and visible.
CREATE FUNCTION rcjobs.join_lane(p_key text, p_id bigint) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_head bigint;
BEGIN
    LOOP
        INSERT INTO rcjobs.lane (key, head_id) VALUES (p_key, p_id)
        ON CONFLICT (key) DO NOTHING RETURNING head_id INTO v_head;
        EXIT WHEN FOUND;
        SELECT l.head_id INTO v_head FROM rcjobs.lane l WHERE l.key = p_key FOR SHARE;
        EXIT WHEN FOUND;
        -- the lane emptied and was dropped between the two statements: try again
    END LOOP;
    RETURN v_head = p_id;
END $$;

-- Bookkeeping of one new job: its counter delta, and a wakeup when it can run now. Repeated
-- pg_notify calls with the same payload in one transaction deliver one notification, so a
-- statement enqueueing many jobs wakes the workers once.
CREATE FUNCTION rcjobs.enqueued(p_queue text, p_kind text, p_state text, p_run_at timestamptz)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO rcjobs.stat_delta (queue, kind, state, n) VALUES (p_queue, p_kind, p_state, 1);
    IF p_state = 'ready' AND (p_run_at IS NULL OR p_run_at <= now()) THEN
        PERFORM pg_notify('rcjobs_jobs', '');
    END IF;
END $$;

-- Full single enqueue; returns the id and whether an existing pending job absorbed it.
CREATE FUNCTION rcjobs.enqueue_ex(
    p_kind text, p_payload jsonb, p_queue text DEFAULT 'default', p_priority smallint DEFAULT 0,
    p_run_at timestamptz DEFAULT NULL, p_dedup_key text DEFAULT NULL, p_exclusion_key text DEFAULT NULL,
    p_max_attempts integer DEFAULT NULL, OUT id bigint, OUT deduplicated boolean)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k rcjobs.job_kind;
    v_state text := 'ready';
    v_queue text := coalesce(p_queue, 'default');
BEGIN
    k := rcjobs.check_job(p_kind, p_payload, v_queue, p_max_attempts);
    IF p_dedup_key IS NULL THEN
        id := nextval('rcjobs.job_id_seq');
        IF p_exclusion_key IS NOT NULL THEN
            IF NOT rcjobs.join_lane(p_exclusion_key, id) THEN v_state := 'blocked'; END IF;
        END IF;
        INSERT INTO rcjobs.job (id, kind, queue, state, priority, run_at, payload, max_attempts, exclusion_key)
        VALUES (id, p_kind, v_queue, v_state, coalesce(p_priority, 0), coalesce(p_run_at, now()), p_payload,
                coalesce(p_max_attempts, k.max_attempts), p_exclusion_key);
        PERFORM rcjobs.enqueued(v_queue, p_kind, v_state, p_run_at);
        deduplicated := false;
        RETURN;
    END IF;
    LOOP
        SELECT j.id INTO id FROM rcjobs.job j
        WHERE j.kind = p_kind AND j.dedup_key = p_dedup_key AND j.state IN ('ready', 'blocked');
        IF FOUND THEN
            deduplicated := true;
            RETURN;
        END IF;
        BEGIN
            id := nextval('rcjobs.job_id_seq');
            v_state := 'ready';
            IF p_exclusion_key IS NOT NULL THEN
                IF NOT rcjobs.join_lane(p_exclusion_key, id) THEN v_state := 'blocked'; END IF;
            END IF;
            INSERT INTO rcjobs.job (id, kind, queue, state, priority, run_at, payload, max_attempts, dedup_key, exclusion_key)
            VALUES (id, p_kind, v_queue, v_state, coalesce(p_priority, 0), coalesce(p_run_at, now()), p_payload,
                    coalesce(p_max_attempts, k.max_attempts), p_dedup_key, p_exclusion_key);
            PERFORM rcjobs.enqueued(v_queue, p_kind, v_state, p_run_at);
            deduplicated := false;
            RETURN;
        EXCEPTION WHEN unique_violation THEN
            -- a concurrent enqueue of the same dedup key won; loop to return its id
            NULL;
        END;
    END LOOP;
END $$;

-- The SQL API for producers that are not Rust (Moodle triggers, cron, psql).
CREATE FUNCTION rcjobs.enqueue(
    kind text, payload jsonb, queue text DEFAULT 'default', priority smallint DEFAULT 0,
    run_at timestamptz DEFAULT NULL, dedup_key text DEFAULT NULL, exclusion_key text DEFAULT NULL,
    max_attempts integer DEFAULT NULL)
RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT e.id FROM rcjobs.enqueue_ex(kind, payload, queue, priority, run_at, dedup_key, exclusion_key, max_attempts) e
$$;

-- Bulk enqueue: parallel arrays (NULL array = all defaults); returns one row per input, in order.
CREATE FUNCTION rcjobs.enqueue_many(
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
        SELECT u.o, u.k, u.p, u.q, u.m INTO bad
        FROM unnest(kinds, payloads, queues, max_attempts) WITH ORDINALITY AS u(k, p, q, m, o)
        LEFT JOIN rcjobs.job_kind jk ON jk.name = u.k
        WHERE jk.name IS NULL OR jsonb_typeof(u.p) IS DISTINCT FROM 'object'
           OR octet_length(u.p::text) > jk.max_payload_bytes OR NOT (u.p ?& jk.required_fields)
           OR (u.q IS NOT NULL AND (u.q = '' OR length(u.q) > 100)) OR u.m < 1
        ORDER BY u.o LIMIT 1;
        IF FOUND THEN
            BEGIN
                PERFORM rcjobs.check_job(bad.k, bad.p, coalesce(bad.q, 'default'), bad.m);
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

-- ---------------------------------------------------------------------------------------------
-- Finishing and requeueing (internal; the worker runtime calls these)
-- ---------------------------------------------------------------------------------------------

-- Moves the lane of each finished head to its next blocked job (FIFO) or drops the lane.
-- Each statement takes a fresh snapshot after the lane row lock, so an enqueue that held the
-- lane while we waited is seen.
CREATE FUNCTION rcjobs.advance_lanes(p_keys text[], p_finished bigint[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    r record;
    v_next bigint;
    v_queue text;
    v_kind text;
BEGIN
    FOR r IN
        SELECT l.key FROM rcjobs.lane l
        JOIN unnest(p_keys, p_finished) AS u(key, fid) ON l.key = u.key AND l.head_id = u.fid
        ORDER BY l.key
        FOR UPDATE OF l
    LOOP
        v_next := NULL;
        UPDATE rcjobs.job SET state = 'ready'
        WHERE id = (SELECT b.id FROM rcjobs.job b WHERE b.exclusion_key = r.key AND b.state = 'blocked'
                    ORDER BY b.id LIMIT 1)
        RETURNING id, queue, kind INTO v_next, v_queue, v_kind;
        IF v_next IS NOT NULL THEN
            INSERT INTO rcjobs.stat_delta (queue, kind, state, n)
            VALUES (v_queue, v_kind, 'blocked', -1), (v_queue, v_kind, 'ready', 1);
        END IF;
        IF v_next IS NULL THEN
            DELETE FROM rcjobs.lane WHERE key = r.key;
        ELSE
            UPDATE rcjobs.lane SET head_id = v_next, updated_at = now() WHERE key = r.key;
            PERFORM pg_notify('rcjobs_jobs', '');
        END IF;
    END LOOP;
END $$;

-- Moves jobs to history with a final state; advances their lanes.
CREATE FUNCTION rcjobs.finish_jobs(p_ids bigint[], p_states text[], p_superseded_by bigint[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_n integer;
    v_keys text[];
    v_heads bigint[];
BEGIN
    WITH d AS (
        DELETE FROM rcjobs.job j
        USING unnest(p_ids, p_states, coalesce(p_superseded_by, array_fill(NULL::bigint, ARRAY[cardinality(p_ids)])))
              AS u(id, st, sup)
        WHERE j.id = u.id AND j.id = ANY (p_ids)
        RETURNING j.*, u.st, u.sup),
    h AS (
        INSERT INTO rcjobs.job_history (id, kind, queue, state, priority, run_at, payload, attempt, max_attempts,
            dedup_key, exclusion_key, enqueued_at, started_at, finished_at, last_error, errors, snoozes,
            superseded_by, worker_id)
        SELECT d.id, d.kind, d.queue, d.st, d.priority, d.run_at, d.payload, d.attempt, d.max_attempts,
            d.dedup_key, d.exclusion_key, d.enqueued_at, d.started_at, now(), d.last_error, d.errors, d.snoozes,
            d.sup, d.worker_id
        FROM d
        RETURNING id, exclusion_key),
    cnt AS (
        INSERT INTO rcjobs.stat_delta (queue, kind, state, n)
        SELECT x.queue, x.kind, x.state, sum(x.n) FROM (
            SELECT d.queue, d.kind, d.state, -1 AS n FROM d
            UNION ALL SELECT d.queue, d.kind, d.st, 1 FROM d) x
        GROUP BY 1, 2, 3)
    SELECT count(*), array_agg(exclusion_key) FILTER (WHERE exclusion_key IS NOT NULL),
           array_agg(id) FILTER (WHERE exclusion_key IS NOT NULL)
    INTO v_n, v_keys, v_heads FROM h;
    IF v_keys IS NOT NULL THEN
        PERFORM rcjobs.advance_lanes(v_keys, v_heads);
    END IF;
    RETURN v_n;
END $$;

-- Hot path: leases up to p_limit due jobs of p_queue (priority, run_at, id) with SKIP LOCKED.
-- Each claim increments the attempt and the fencing token.
CREATE FUNCTION rcjobs.claim_jobs(p_queue text, p_limit integer, p_lease_s double precision, p_worker uuid)
RETURNS TABLE (id bigint, token integer, kind text, queue text, priority smallint, payload jsonb,
               attempt integer, max_attempts integer, exclusion_key text, enqueued_at timestamptz,
               run_at timestamptz, started_at timestamptz)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    -- Durable commit, unlike acks: a claim lost in a server crash would put the job back with
    -- its old token, and the next claim would hand the same token to a second worker while
    -- the first may still be running it (two holders of one fence; a lane running twice).
    RETURN QUERY
    WITH c AS (
        UPDATE rcjobs.job j
        SET state = 'running', attempt = j.attempt + 1, token = j.token + 1,
            lease_until = now() + make_interval(secs => p_lease_s), worker_id = p_worker, started_at = now()
        WHERE j.id = ANY (ARRAY(
              SELECT x.id FROM rcjobs.job x
              WHERE x.state = 'ready' AND x.queue = p_queue AND x.run_at <= now()
              ORDER BY x.priority, x.run_at, x.id
              LIMIT p_limit
              FOR UPDATE SKIP LOCKED))
        RETURNING j.id, j.token, j.kind, j.queue, j.priority, j.payload, j.attempt, j.max_attempts,
                  j.exclusion_key, j.enqueued_at, j.run_at, j.started_at),
    cnt AS (
        INSERT INTO rcjobs.stat_delta (queue, kind, state, n)
        SELECT g.queue, g.kind, s.state, s.n
        FROM (SELECT c.queue, c.kind, count(*) AS n FROM c GROUP BY 1, 2) g
        CROSS JOIN LATERAL (VALUES ('ready', -g.n), ('running', g.n)) AS s(state, n))
    SELECT c.* FROM c;
END $$;

-- Hot path: CAS-complete running jobs; returns the ids accepted (others were stale).
CREATE FUNCTION rcjobs.complete_jobs(p_ids bigint[], p_tokens integer[])
RETURNS SETOF bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_ids bigint[];
    v_keys text[];
    v_heads bigint[];
    v_tok jsonb;
BEGIN
    -- Asynchronous commit for this transaction only (see docs/decisions/0001): an ack lost in
    -- a server crash leaves the job 'running' with its lease, so the sweeper re-runs it
    -- (at-least-once). A later durable commit flushes the WAL past this one, so nothing that
    -- depended on the ack (a lane advance, a dedup enqueue) can survive without it.
    PERFORM set_config('synchronous_commit', 'off', true);
    -- One primary-key probe per id, tokens looked up in a map. Any join between the job
    -- table and the unnested (id, token) list let the planner (whose statistics rarely see
    -- running jobs, so it expects one) pick a nested loop over the whole list per row:
    -- quadratic in the batch, 0.4 s for 1,000 acks.
    SELECT jsonb_object_agg(u.id::text, u.token) INTO v_tok FROM unnest(p_ids, p_tokens) AS u(id, token);
    WITH d AS (
        DELETE FROM rcjobs.job j
        WHERE j.id = ANY (p_ids) AND j.state = 'running' AND j.token = (v_tok ->> j.id::text)::integer
        RETURNING j.*),
    h AS (
        INSERT INTO rcjobs.job_history (id, kind, queue, state, priority, run_at, payload, attempt, max_attempts,
            dedup_key, exclusion_key, enqueued_at, started_at, finished_at, last_error, errors, snoozes, worker_id)
        SELECT d.id, d.kind, d.queue, 'completed', d.priority, d.run_at, d.payload, d.attempt, d.max_attempts,
            d.dedup_key, d.exclusion_key, d.enqueued_at, d.started_at, now(), d.last_error, d.errors, d.snoozes,
            d.worker_id
        FROM d
        RETURNING id, exclusion_key),
    cnt AS (
        INSERT INTO rcjobs.stat_delta (queue, kind, state, n)
        SELECT g.queue, g.kind, s.state, s.n
        FROM (SELECT d.queue, d.kind, count(*) AS c FROM d GROUP BY 1, 2) g
        CROSS JOIN LATERAL (VALUES ('running', -g.c), ('completed', g.c)) AS s(state, n))
    SELECT array_agg(id), array_agg(exclusion_key) FILTER (WHERE exclusion_key IS NOT NULL),
           array_agg(id) FILTER (WHERE exclusion_key IS NOT NULL)
    INTO v_ids, v_keys, v_heads FROM h;
    IF v_keys IS NOT NULL THEN
        PERFORM rcjobs.advance_lanes(v_keys, v_heads);
    END IF;
    RETURN QUERY SELECT unnest(v_ids);
END $$;

-- Settles running jobs that did not complete. Actions per job:
--   retry   : back to ready at run_at (dead when attempts are used up); error recorded
--   dead    : straight to dead; error recorded
--   snooze  : back to ready at run_at without using an attempt
--   release : back to ready now without using an attempt (prefetched, never started)
--   expire  : lease expired (crash); counts as an attempt; ready now or dead when used up
-- A token of NULL skips the CAS (used by the sweeper, which holds the row lock).
-- When a job going back to pending meets a newer pending job with the same dedup key, the
-- newer one covers it: the old one finishes as 'superseded'.
CREATE FUNCTION rcjobs.settle_jobs(p_ids bigint[], p_tokens integer[], p_actions text[],
                                   p_run_ats timestamptz[], p_errors text[])
RETURNS TABLE (job_id bigint, outcome text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan AS $$
#variable_conflict use_column
DECLARE
    v_ids bigint[];
    v_out text[];
    v_sup bigint[];
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
        PERFORM rcjobs.finish_jobs(v_ids, v_out, v_sup);
    END IF;

    RETURN QUERY SELECT s.id, CASE WHEN s.outcome = 'pending' THEN s.action ELSE s.outcome END FROM rcjobs_settle s;
END $$;

-- Returns expired leases to the queue (or to dead when attempts are used up). Any worker may
-- run it: SKIP LOCKED lets concurrent sweepers share the work.
CREATE FUNCTION rcjobs.sweep(p_limit integer DEFAULT 1000)
RETURNS TABLE (job_id bigint, outcome text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_ids bigint[];
BEGIN
    SELECT array_agg(id) INTO v_ids FROM (
        SELECT id FROM rcjobs.job WHERE state = 'running' AND lease_until < now()
        ORDER BY lease_until LIMIT p_limit FOR UPDATE SKIP LOCKED) s;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM rcjobs.settle_jobs(
        v_ids, array_fill(NULL::integer, ARRAY[cardinality(v_ids)]),
        array_fill('expire'::text, ARRAY[cardinality(v_ids)]),
        array_fill(NULL::timestamptz, ARRAY[cardinality(v_ids)]),
        array_fill('lease expired: the worker stopped renewing it (crash, hang or lost connection)'::text,
                   ARRAY[cardinality(v_ids)]));
    PERFORM pg_notify('rcjobs_jobs', '');
END $$;

-- ---------------------------------------------------------------------------------------------
-- Admin
-- ---------------------------------------------------------------------------------------------

-- Cancels a job that has not started: 'cancelled', 'running' (refused), 'finished' or 'not_found'.
CREATE FUNCTION rcjobs.cancel_job(p_id bigint) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_state text;
BEGIN
    SELECT state INTO v_state FROM rcjobs.job WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM rcjobs.job_history WHERE id = p_id) THEN
            RETURN 'finished';
        END IF;
        RETURN 'not_found';
    END IF;
    IF v_state = 'running' THEN
        RETURN 'running';
    END IF;
    PERFORM rcjobs.finish_jobs(ARRAY[p_id], ARRAY['cancelled']);
    RETURN 'cancelled';
END $$;

-- Puts dead jobs back in the queue with fresh attempts (all dead ones when p_ids is NULL).
-- Outcome per job: 'requeued', or 'superseded' when a pending job with the same dedup key
-- already covers it.
CREATE FUNCTION rcjobs.retry_dead(p_ids bigint[] DEFAULT NULL, p_limit integer DEFAULT 100000)
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
                    IF NOT rcjobs.join_lane(r.exclusion_key, r.id) THEN v_state := 'blocked'; END IF;
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

-- Deletes finished jobs older than the retention (dead ones by their own retention).
CREATE FUNCTION rcjobs.prune_history(p_keep interval, p_keep_dead interval, p_limit integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_n bigint;
BEGIN
    WITH d AS (
        DELETE FROM rcjobs.job_history h
        WHERE h.id IN (SELECT x.id FROM rcjobs.job_history x
                       WHERE (x.state <> 'dead' AND x.finished_at < now() - p_keep)
                          OR (x.state = 'dead' AND x.finished_at < now() - p_keep_dead)
                       LIMIT p_limit)
        RETURNING h.queue, h.kind, h.state),
    cnt AS (
        INSERT INTO rcjobs.stat_delta (queue, kind, state, n)
        SELECT d.queue, d.kind, d.state, -count(*) FROM d GROUP BY 1, 2, 3
        RETURNING n)
    SELECT coalesce(-sum(n), 0) INTO v_n FROM cnt;
    RETURN v_n;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Moodle-shaped view (names as in Moodle's task_adhoc table)
-- ---------------------------------------------------------------------------------------------
CREATE VIEW rcjobs.task_adhoc AS
SELECT j.id,
       coalesce(k.component, 'rcjobs')                        AS component,
       j.kind                                                 AS classname,
       j.payload::text                                        AS customdata,
       extract(epoch FROM j.run_at)::bigint                   AS nextruntime,
       j.fail_delay_s                                         AS faildelay,
       greatest(j.max_attempts - j.attempt, 0)                AS attemptsavailable,
       CASE WHEN j.state = 'running' THEN extract(epoch FROM j.started_at)::bigint END AS timestarted,
       w.hostname,
       w.pid,
       extract(epoch FROM j.enqueued_at)::bigint              AS timecreated,
       j.queue,
       j.priority,
       j.state,
       j.attempt,
       j.dedup_key,
       j.exclusion_key,
       j.last_error
FROM rcjobs.job j
LEFT JOIN rcjobs.job_kind k ON k.name = j.kind
LEFT JOIN rcjobs.worker w ON j.state = 'running' AND w.id = j.worker_id;

-- ---------------------------------------------------------------------------------------------
-- Producer role: may call enqueue/enqueue_many and nothing else
-- ---------------------------------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rcjobs_producer') THEN
        BEGIN
            CREATE ROLE rcjobs_producer NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created concurrently (roles are cluster-wide)
        END;
    END IF;
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA rcjobs FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA rcjobs FROM PUBLIC;
GRANT USAGE ON SCHEMA rcjobs TO rcjobs_producer;
GRANT EXECUTE ON FUNCTION rcjobs.enqueue(text, jsonb, text, smallint, timestamptz, text, text, integer) TO rcjobs_producer;
GRANT EXECUTE ON FUNCTION rcjobs.enqueue_many(text[], jsonb[], text[], smallint[], timestamptz[], text[], text[], integer[]) TO rcjobs_producer;
