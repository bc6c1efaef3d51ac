#!/usr/bin/env bash
# Page cost of the operator console (`rcjobs ui`) and the claim with a paused kind, on a
# 1,000,000-job table (BENCHMARKS.md, "Console page cost").
#
#   bash scripts/bench-console.sh            # BIN=path/to/rcjobs; default target/release/rcjobs, else target/debug/rcjobs
#
# Creates (and drops afterwards) the database rcjobs_bench_console on DATABASE_URL's server
# (default postgres://postgres@127.0.0.1:5432). Fills, with COPY:
#   - 1,000,000 pending jobs: 700,000 synchronize_group due now (one lane each), 200,000
#     scheduled an hour ahead, 100,000 add_user_to_group due now in queue `default`;
#   - 300,000 finished jobs in history (270,000 completed in the last 5 minutes, 30,000 dead
#     in the last hour);
# then times each page over HTTP (median of 5 after one warm-up), and the claim with the
# 100,000-job kind paused: the first claims mark the paused jobs they meet, later ones
# no longer see them (EXPLAIN ANALYZE printed).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$( [ -x target/release/rcjobs ] && echo target/release/rcjobs || echo target/debug/rcjobs )}
SERVER=${DATABASE_URL_SERVER:-postgres://postgres@127.0.0.1:5432}
DB=rcjobs_bench_console
URL="$SERVER/$DB"
PORT=${PORT:-9389}
TOKEN=bench-console-token-0123456789
[ -x "$BIN" ] || { echo "build first: cargo build [--release]" >&2; exit 1; }
psql "$SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
# KEEP_DB=1 leaves the database for a look at the plans
trap 'kill $UI_PID 2>/dev/null || true; [ -n "${KEEP_DB:-}" ] || psql "$SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB (FORCE)" || true' EXIT
UI_PID=
DATABASE_URL="$URL" "$BIN" migrate >/dev/null

t0=$(date +%s.%N)
# pending: ids 1..1,000,000, by COPY (the columns rcjobs_queue::enqueue_copy writes)
psql "$URL" -X -q -c "COPY (SELECT g, CASE WHEN g <= 900000 THEN 'synchronize_group' ELSE 'add_user_to_group' END,
        'default', 'ready', 0,
        CASE WHEN g BETWEEN 700001 AND 900000 THEN now() + interval '1 hour' ELSE now() - interval '10 minutes' END,
        CASE WHEN g <= 900000 THEN json_build_object('cmid', g, 'courseid', g / 50, 'v', 1)
             ELSE json_build_object('cmid', g % 5000, 'courseid', 1, 'userid', g, 'v', 1) END, 12
      FROM generate_series(1, 1000000) g) TO STDOUT" \
  | psql "$URL" -X -q -c "COPY rcjobs.job (id, kind, queue, state, priority, run_at, payload, max_attempts) FROM STDIN"
psql "$URL" -q <<'SQL'
\set ON_ERROR_STOP on
SELECT setval('rcjobs.job_id_seq', 2000000);
INSERT INTO rcjobs.job_history (id, kind, queue, state, priority, run_at, payload, attempt, max_attempts,
    enqueued_at, started_at, finished_at, last_error, errors)
SELECT 1000000 + g, 'synchronize_group', 'default', CASE WHEN g <= 270000 THEN 'completed' ELSE 'dead' END, 0,
       now() - interval '4 minutes', json_build_object('cmid', g, 'courseid', 1), 1, 12,
       now() - interval '4 minutes', now() - interval '4 minutes' + (g % 7) * interval '1 second',
       now() - interval '3 minutes' + (g % 60) * interval '1 second',
       CASE WHEN g > 270000 THEN 'chat server said 403' END,
       CASE WHEN g > 270000 THEN '[{"attempt": 12, "class": "forbidden", "error": "chat server said 403"}]'::jsonb ELSE '[]' END
FROM generate_series(1, 300000) g;
SELECT rcjobs.recount_stats();
VACUUM ANALYZE rcjobs.job;
VACUUM ANALYZE rcjobs.job_history;
SQL
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "filled 1,000,000 pending + 300,000 finished jobs in %.1f s\n", b - a }'

DATABASE_URL="$URL" RCJOBS_UI_TOKEN=$TOKEN RUST_LOG=warn "$BIN" ui --addr "127.0.0.1:$PORT" --refresh 0 &
UI_PID=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/assets/style.css" >/dev/null && break; sleep 0.2; done

page() { # name path
    local times=()
    curl -fs -o /dev/null "http://127.0.0.1:$PORT$2"
    for _ in 1 2 3 4 5; do
        times+=("$(curl -fs -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT$2")")
    done
    printf '%-44s %6.1f ms (median of 5)\n' "$1" "$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p | awk '{print $1 * 1000}')"
}
page "overview /" "/"
page "jobs /jobs (newest 100)" "/jobs"
page "jobs, state=dead" "/jobs?state=dead"
page "jobs, kind=add_user_to_group" "/jobs?kind=add_user_to_group"
page "jobs, payload cmid=42 (bounded scan)" "/jobs?payload=cmid%3D42"
page "jobs, error 403 (bounded scan)" "/jobs?error=403"
page "job detail /jobs/500000" "/jobs/500000"
page "queues /queues" "/queues"
page "rooms /rooms" "/rooms"

echo "--- claim with add_user_to_group (100,000 due jobs) paused and first in the claim order"
psql "$URL" -q <<'SQL'
\set ON_ERROR_STOP on
\timing on
-- put the paused kind's jobs ahead of everything else in the claim order
UPDATE rcjobs.job SET priority = -5 WHERE kind = 'add_user_to_group';
VACUUM ANALYZE rcjobs.job;
SELECT rcjobs.pause('kind', 'add_user_to_group', 'bench', '');
\echo first claims (each marks the paused jobs it meets, 16 rounds of its batch at most):
SELECT count(*) FROM rcjobs.claim_jobs('default', 100, 30, gen_random_uuid());
SELECT count(*) FROM rcjobs.claim_jobs('default', 100, 30, gen_random_uuid());
\echo drain the marking (claims until none is left to mark):
DO $$ BEGIN
  WHILE EXISTS (SELECT 1 FROM rcjobs.job WHERE state = 'ready' AND NOT paused AND kind = 'add_user_to_group' AND run_at <= now()) LOOP
    PERFORM count(*) FROM rcjobs.claim_jobs('default', 1000, 30, gen_random_uuid());
  END LOOP; END $$;
\echo steady state, 100,000 paused jobs marked: a claim of 100
SELECT count(*) FROM rcjobs.claim_jobs('default', 100, 30, gen_random_uuid());
SELECT count(*) FROM rcjobs.claim_jobs('default', 100, 30, gen_random_uuid());
SELECT count(*) FROM rcjobs.claim_jobs('default', 100, 30, gen_random_uuid());
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT x.ctid, x.kind FROM rcjobs.job x
 WHERE x.state = 'ready' AND NOT x.paused AND x.queue = 'default' AND x.run_at <= now()
 ORDER BY x.priority, x.run_at, x.id LIMIT 100 FOR UPDATE SKIP LOCKED;
\echo paused_counts (overview and queue list, O(paused jobs)):
SELECT * FROM rcjobs.paused_counts();
SQL
page "overview, 100,000 jobs marked paused" "/"
page "queues, 100,000 jobs marked paused" "/queues"
echo "--- resume (clears the marks through job_paused_idx)"
psql "$URL" -q -c '\timing on' -c "SELECT rcjobs.resume('kind', 'add_user_to_group')"
