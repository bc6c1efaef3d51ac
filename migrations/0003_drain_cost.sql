-- Cheaper drain: the claim updates the rows it locked by their tuple id instead of probing the
-- primary key once per job, and complete_jobs keeps one cached plan instead of planning every
-- call.
--
-- Measured before this change (EXPLAIN ANALYZE, 1,000-job claim): the primary-key probes were
-- ~3-4 ms of a ~15 ms claim, and planning complete_jobs (force_custom_plan) ~0.7-1.2 ms of a
-- ~10 ms acknowledgement. Figures: BENCHMARKS.md, "Schema 3".

-- Same contract as before (0001). The locked rows are updated through their ctid: the lock is
-- ours until commit, so no other transaction can move the row between the two steps. The
-- outer `state = 'ready'` recheck makes a stale ctid (a row that moved before we locked it)
-- update nothing rather than something else; such a job simply stays ready.
CREATE OR REPLACE FUNCTION rcjobs.claim_jobs(p_queue text, p_limit integer, p_lease_s double precision, p_worker uuid)
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
        WHERE j.ctid = ANY (ARRAY(
              SELECT x.ctid FROM rcjobs.job x
              WHERE x.state = 'ready' AND x.queue = p_queue AND x.run_at <= now()
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
END $$;

-- A cached generic plan is safe here once a sequential scan is ruled out: the only other
-- access path is the primary key, and the plan that planning every call protected against
-- (a sequential scan chosen while the table looked small) cannot be picked.
ALTER FUNCTION rcjobs.complete_jobs(bigint[], integer[]) RESET plan_cache_mode;
ALTER FUNCTION rcjobs.complete_jobs(bigint[], integer[]) SET enable_seqscan = off;

-- ---------------------------------------------------------------------------------------------
-- Cheaper COPY enqueue. rcjobs_queue::enqueue_copy now checks its jobs itself (check_job's
-- rules and messages) and only needs the counters and the wakeup here, so the rows are not
-- read back; copy_finish stays for batches whose payload size only the database can tell.
-- ---------------------------------------------------------------------------------------------

-- Counter deltas of a COPY (per queue and kind) and one wakeup when any job is due.
CREATE FUNCTION rcjobs.copy_counted(p_queues text[], p_kinds text[], p_counts bigint[], p_due boolean)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO rcjobs.stat_delta (queue, kind, state, n)
    SELECT u.q, u.k, 'ready', u.n FROM unnest(p_queues, p_kinds, p_counts) AS u(q, k, n);
    IF p_due THEN
        PERFORM pg_notify('rcjobs_jobs', '');
    END IF;
END $$;
REVOKE ALL ON FUNCTION rcjobs.copy_counted(text[], text[], bigint[], boolean) FROM PUBLIC;

-- n fresh job ids. No ORDER BY (its sort was a tenth of the call): one statement's nextval
-- calls increase, and the caller sorts.
CREATE OR REPLACE FUNCTION rcjobs.reserve_job_ids(p_n integer) RETURNS bigint[]
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(nextval('rcjobs.job_id_seq')), '{}')
    FROM generate_series(1, p_n) AS g
$$;

CREATE OR REPLACE FUNCTION rcjobs.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 3 $$;
