#!/usr/bin/env bash
# Evaluates every Grafana panel expression (and template variable) of grafana/dashboards/
# against a real Prometheus that scrapes real rcjobs workers under a real load, and checks
# the alert rules evaluate without errors. Fails on a query error or an empty result.
#
# Usage:
#   scripts/prometheus-dashboard-check.sh [options] --target HOST:PORT [--target ...] -- WORKLOAD...
#
#   WORKLOAD...        a command that produces the load and keeps the workers up: for example
#                      it starts N `rcjobs worker --metrics-addr 127.0.0.1:PORT` processes,
#                      enqueues jobs, and waits. It runs in the background in its own process
#                      group; the script evaluates while it is still running (an exited
#                      target's series go stale at once), then stops it (SIGTERM to the group,
#                      SIGKILL after 30 s). A workload that exits non-zero before evaluation
#                      fails the check. It sees RCJOBS_PROM_URL (the Prometheus base URL) and
#                      RCJOBS_PROM_SD_FILE (a Prometheus file_sd JSON file it may rewrite to add
#                      targets on ports it picks itself).
# Options:
#   --target HOST:PORT   a worker metrics address to scrape (repeatable; scraped as
#                        job="rcjobs-worker", as in the shipped Prometheus config).
#   --min-targets N      targets that must be up before evaluating (default: number of --target,
#                        at least 1).
#   --scrapes N          successful scrapes of each target before evaluating (default 5).
#   --load-seconds S     evaluate S seconds after the targets are up, or when the workload
#                        exits, whichever is first (default 30).
#   --rate-interval D    what $__rate_interval becomes (default 30s); other Grafana variables
#                        ($queue, $kind, ...) become ".*" (the dashboards' "All").
#   --scrape-interval D  Prometheus scrape interval (default 1s).
#   --port P             Prometheus listen port on 127.0.0.1 (default: a free port).
#   --timeout S          give up waiting for targets after S seconds (default 120).
#   --no-install         do not apt-get install prometheus when it is missing.
#   --keep               keep the Prometheus data directory and log (printed at the end).
#
# Example without a deployment (a simulated worker, crates/rcjobs-metrics/examples):
#   cargo build -p rcjobs-metrics --example synthetic_load
#   scripts/prometheus-dashboard-check.sh --target 127.0.0.1:19464 -- \
#     target/debug/examples/synthetic_load 127.0.0.1:19464 120
# Exit status: 0 when every expression returned data and no rule is unhealthy.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGETS=()
MIN_TARGETS=""
SCRAPES=5
LOAD_SECONDS=30
RATE_INTERVAL=30s
SCRAPE_INTERVAL=1s
PORT=""
TIMEOUT=120
INSTALL=1
KEEP=0

usage() { sed -n '2,41p' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --target) TARGETS+=("$2"); shift 2 ;;
    --min-targets) MIN_TARGETS="$2"; shift 2 ;;
    --scrapes) SCRAPES="$2"; shift 2 ;;
    --load-seconds) LOAD_SECONDS="$2"; shift 2 ;;
    --rate-interval) RATE_INTERVAL="$2"; shift 2 ;;
    --scrape-interval) SCRAPE_INTERVAL="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ $# -eq 0 ]; then
  echo "missing workload command after --" >&2; usage >&2; exit 2
fi
if [ -z "$MIN_TARGETS" ]; then
  MIN_TARGETS=${#TARGETS[@]}
  [ "$MIN_TARGETS" -ge 1 ] || MIN_TARGETS=1
fi

# ---- Prometheus binary (Debian package) ---------------------------------------------------
if ! command -v prometheus >/dev/null 2>&1; then
  if [ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing prometheus (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 \
      || { apt-get update >/dev/null && apt-get install -y --no-install-recommends prometheus >/dev/null; }
  else
    echo "prometheus not found (apt-get install prometheus)" >&2; exit 1
  fi
fi
prometheus --version 2>&1 | head -1

if [ -z "$PORT" ]; then
  PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
fi
DIR="$(mktemp -d "${TMPDIR:-/tmp}/rcjobs-promcheck.XXXXXX")"
PROM_PID=""
WORK_PID=""
cleanup() {
  if [ -n "$WORK_PID" ] && kill -0 "$WORK_PID" 2>/dev/null; then
    kill -TERM -- "-$WORK_PID" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$WORK_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$WORK_PID" 2>/dev/null || true
  fi
  if [ -n "$PROM_PID" ]; then
    kill -TERM "$PROM_PID" 2>/dev/null || true
    wait "$PROM_PID" 2>/dev/null || true
  fi
  if [ "$KEEP" = 1 ]; then echo "kept: $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

# ---- configuration: file_sd targets, the shipped alert rules -----------------------------
python3 - "$DIR/targets.json" "${TARGETS[@]}" <<'PYEOF'
import json, sys
targets = sys.argv[2:]
json.dump([{"targets": targets, "labels": {}}] if targets else [], open(sys.argv[1], "w"))
PYEOF
cp "$ROOT/deploy/prometheus/alerts.yml" "$DIR/alerts.yml"
cat >"$DIR/prometheus.yml" <<EOF
global:
  scrape_interval: $SCRAPE_INTERVAL
  evaluation_interval: $SCRAPE_INTERVAL
rule_files:
  - alerts.yml
scrape_configs:
  - job_name: rcjobs-worker
    file_sd_configs:
      - files: ["$DIR/targets.json"]
        refresh_interval: 1s
EOF

prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/data" \
  --web.listen-address="127.0.0.1:$PORT" --log.level=warn >"$DIR/prometheus.log" 2>&1 &
PROM_PID=$!
export RCJOBS_PROM_URL="http://127.0.0.1:$PORT"
export RCJOBS_PROM_SD_FILE="$DIR/targets.json"

# ---- the workload ---------------------------------------------------------------------------
set -m
"$@" &
WORK_PID=$!
set +m
echo "prometheus on $RCJOBS_PROM_URL (pid $PROM_PID), workload pid $WORK_PID: $*"

# ---- wait, evaluate ---------------------------------------------------------------------
status=0
python3 - "$ROOT" "$RCJOBS_PROM_URL" "$WORK_PID" "$MIN_TARGETS" "$SCRAPES" "$LOAD_SECONDS" \
  "$RATE_INTERVAL" "$TIMEOUT" <<'PYEOF' || status=$?
import glob, json, os, re, sys, time, urllib.parse, urllib.request

root, url, work_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
min_targets, scrapes, load_seconds = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
rate_interval, timeout = sys.argv[7], float(sys.argv[8])

def api(path, **params):
    q = urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(f"{url}{path}?{q}", timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)

def workload_exit():
    """None while the workload runs, else its exit status (it is our sibling: poll /proc)."""
    try:
        with open(f"/proc/{work_pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return None if state != "Z" else 0
    except FileNotFoundError:
        return 0

def wait_until(what, deadline, check):
    while True:
        try:
            if check():
                return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.5)

deadline = time.monotonic() + timeout
def prometheus_ready():
    with urllib.request.urlopen(f"{url}/-/ready", timeout=5) as r:
        return r.status == 200

wait_until("Prometheus", deadline, prometheus_ready)

def targets_ready():
    if workload_exit() is not None:
        sys.exit("the workload exited before its targets were up")
    r = api("/api/v1/query", query=f'count_over_time(up{{job="rcjobs-worker"}}[10m]) >= {scrapes} and up{{job="rcjobs-worker"}} == 1')
    n = len(r["data"]["result"])
    return n >= min_targets

wait_until(f"{min_targets} target(s) with {scrapes} scrapes", deadline, targets_ready)
up = api("/api/v1/targets")["data"]["activeTargets"]
print(f"targets up: {', '.join(t['labels']['instance'] for t in up if t['health'] == 'up')}")

end = time.monotonic() + load_seconds
while time.monotonic() < end and workload_exit() is None:
    time.sleep(0.5)
if workload_exit() is not None:
    print("workload exited before the load window ended; evaluating what was scraped")

def substitute(expr):
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__interval", "15s")
    expr = expr.replace("$__range", "1h")
    expr = re.sub(r"\$\{[A-Za-z0-9_]+\}|\$[A-Za-z_][A-Za-z0-9_]*", ".*", expr)
    return expr

failures, checked = [], 0
now = time.time()
for path in sorted(glob.glob(os.path.join(root, "grafana/dashboards/*.json"))):
    dash = json.load(open(path))
    name = os.path.basename(path)
    exprs = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            exprs.append((f"{p['title']} [{t['refId']}]", t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*([A-Za-z_]+)\)", q.strip())
            if not m:
                failures.append(f"{name}: variable {v['name']}: unsupported query {q}")
                continue
            exprs.append((f"variable {v['name']}", f"count by ({m.group(2)}) ({m.group(1)})"))
    for title, expr in exprs:
        checked += 1
        r = api("/api/v1/query", query=substitute(expr), time=f"{now:.3f}")
        if r.get("status") != "success":
            failures.append(f"{name} / {title}: error {r.get('errorType')}: {r.get('error')}\n      {expr}")
        elif not r["data"]["result"]:
            failures.append(f"{name} / {title}: empty result\n      {expr}")
        else:
            res = r["data"]["result"]
            print(f"  ok  {name} / {title}: {len(res) if isinstance(res, list) else 1} series")

groups = api("/api/v1/rules")["data"]["groups"]
for g in groups:
    for rule in g["rules"]:
        checked += 1
        if rule.get("health") == "err":
            failures.append(f"rule {rule['name']}: {rule.get('lastError')}")
print(f"{checked} expressions and rules checked, {len(failures)} failed")
if failures:
    print("\n".join("FAIL " + f for f in failures))
    sys.exit(1)
PYEOF
# A workload that already ended (a zombie until waited for) must have succeeded.
if [ ! -e "/proc/$WORK_PID" ] || grep -q ') Z ' "/proc/$WORK_PID/stat" 2>/dev/null; then
  work_status=0
  wait "$WORK_PID" || work_status=$?
  WORK_PID=""
  if [ "$work_status" != 0 ]; then
    echo "workload failed (exit $work_status)" >&2
    status=1
  fi
fi
if [ "$status" = 0 ]; then
  echo "prometheus-dashboard-check: all panels returned data"
else
  echo "prometheus-dashboard-check: FAILED (prometheus log: $DIR/prometheus.log; use --keep to keep it)" >&2
  tail -5 "$DIR/prometheus.log" >&2 || true
fi
exit "$status"
