#!/usr/bin/env bash
# Makes two loopback-only Synapse homeservers available for the Matrix backend's tests, and
# writes their URLs and the bot's credentials to target/synapse/env (read by the tests).
#   main   (127.0.0.1:18118): generous rate limits, so the tests never meet a 429 by chance;
#   strict (127.0.0.1:18119): Synapse's DEFAULT rate limits, for the rate-limit test.
# Idempotent: installs the pinned matrix-synapse into a venv only when missing, starts a server
# only when its /health does not answer, registers the bot (a server admin) only once and logs
# in only when the stored token stopped working (rc_login allows 5 logins, then 1 per 5 min).
# For throw-away CI/dev machines: the servers keep running in the background (stop them by the
# pid files under target/synapse/*/homeserver.pid).
set -euo pipefail
cd "$(dirname "$0")/.."
SYNAPSE_VERSION=${SYNAPSE_VERSION:-1.163.2}
ROOT=$PWD/target/synapse
VENV=$ROOT/venv
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
BOT=rcbot
SERVER_NAME=rcjobs.test
mkdir -p "$ROOT"

installed() { "$VENV/bin/python" -c 'import importlib.metadata as m,sys; sys.stdout.write(m.version("matrix-synapse"))' 2>/dev/null; }
if [ "$(installed || true)" != "$SYNAPSE_VERSION" ]; then
  echo "synapse: installing matrix-synapse==$SYNAPSE_VERSION into $VENV"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "matrix-synapse==$SYNAPSE_VERSION"
fi

rand() { "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(24))'; }
health() { curl -fsS -m 2 "http://127.0.0.1:$1/health" >/dev/null 2>&1; }

# Writes the instance's config once (its secrets must survive restarts: the bot's token does).
configure() {
  local name=$1 port=$2 dir=$ROOT/$1
  mkdir -p "$dir/media_store"
  [ -f "$dir/homeserver.yaml" ] && return 0
  cat >"$dir/log.config" <<EOF
version: 1
formatters: {precise: {format: '%(asctime)s %(name)s %(levelname)s %(message)s'}}
handlers: {file: {class: logging.FileHandler, formatter: precise, filename: $dir/homeserver.log}}
root: {level: WARNING, handlers: [file]}
disable_existing_loggers: false
EOF
  cat >"$dir/homeserver.yaml" <<EOF
# Written by scripts/ensure-synapse.sh ($name instance): loopback only, SQLite, no federation.
server_name: "$SERVER_NAME"
pid_file: $dir/homeserver.pid
listeners:
  - {port: $port, bind_addresses: ['127.0.0.1'], type: http, tls: false, x_forwarded: false,
     resources: [{names: [client], compress: false}]}
database: {name: sqlite3, args: {database: $dir/homeserver.db}}
log_config: $dir/log.config
media_store_path: $dir/media_store
signing_key_path: $dir/$SERVER_NAME.signing.key
registration_shared_secret: "$(rand)"
macaroon_secret_key: "$(rand)"
form_secret: "$(rand)"
report_stats: false
enable_registration: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
presence: {enabled: false}
bcrypt_rounds: 4
EOF
  if [ "$name" = main ]; then
    cat >>"$dir/homeserver.yaml" <<'EOF'
# Test-friendly limits: the conformance suite must never be slowed by a 429 by chance.
rc_message: &t {per_second: 10000, burst_count: 100000}
rc_registration: *t
rc_login: {address: *t, account: *t, failed_attempts: *t}
rc_joins: {local: *t, remote: *t}
rc_joins_per_room: *t
rc_invites: {per_room: *t, per_user: *t, per_issuer: *t}
rc_room_creation: *t
rc_3pid_validation: *t
EOF
  fi
  "$VENV/bin/python" -m synapse.app.homeserver -c "$dir/homeserver.yaml" --generate-keys >/dev/null
}

start() {
  local name=$1 port=$2 dir=$ROOT/$1
  if health "$port"; then echo "synapse: $name up on 127.0.0.1:$port"; return 0; fi
  echo "synapse: starting $name on 127.0.0.1:$port"
  (cd "$dir" && "$VENV/bin/python" -m synapse.app.homeserver -c homeserver.yaml --daemonize)
  for _ in $(seq 1 120); do health "$port" && return 0; sleep 0.5; done
  echo "synapse: $name did not answer /health on $port (log: $dir/homeserver.log)" >&2
  exit 1
}

# Registers the bot as a server admin (once) and prints a working access token, reusing the
# stored one while whoami accepts it.
bot_token() {
  local name=$1 port=$2 dir=$ROOT/$1 url=http://127.0.0.1:$2
  local pwfile=$dir/bot.password tokfile=$dir/bot.token
  [ -f "$pwfile" ] || rand >"$pwfile"
  if [ -f "$tokfile" ] && curl -fsS -m 5 -H "Authorization: Bearer $(cat "$tokfile")" \
      "$url/_matrix/client/v3/account/whoami" >/dev/null 2>&1; then
    cat "$tokfile"; return 0
  fi
  "$VENV/bin/register_new_matrix_user" -c "$dir/homeserver.yaml" -u "$BOT" -p "$(cat "$pwfile")" \
    --admin "$url" >/dev/null 2>&1 || true
  local body
  body=$(printf '{"type":"m.login.password","identifier":{"type":"m.id.user","user":"%s"},"password":"%s"}' \
    "$BOT" "$(cat "$pwfile")")
  curl -fsS -m 10 -X POST -H 'Content-Type: application/json' -d "$body" \
      "$url/_matrix/client/v3/login" \
    | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' >"$tokfile.new"
  mv "$tokfile.new" "$tokfile"
  cat "$tokfile"
}

configure main 18118
configure strict 18119
start main 18118
start strict 18119
main_token=$(bot_token main 18118)
strict_token=$(bot_token strict 18119)
umask 077
cat >"$ROOT/env.new" <<EOF
MATRIX_HOMESERVER_URL=http://127.0.0.1:18118
MATRIX_ACCESS_TOKEN=$main_token
MATRIX_BOT_USER=$BOT
MATRIX_BOT_PASSWORD=$(cat "$ROOT/main/bot.password")
MATRIX_STRICT_HOMESERVER_URL=http://127.0.0.1:18119
MATRIX_STRICT_ACCESS_TOKEN=$strict_token
MATRIX_SERVER_NAME=$SERVER_NAME
MATRIX_SYNAPSE_VERSION=$SYNAPSE_VERSION
EOF
mv "$ROOT/env.new" "$ROOT/env"
echo "synapse: $SYNAPSE_VERSION ready; credentials in $ROOT/env"
