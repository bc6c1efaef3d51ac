#!/usr/bin/env bash
# Makes a PostgreSQL server reachable on 127.0.0.1:5432 with trust auth for user postgres.
# Order: already up -> start the installed cluster -> install Debian's package and start it.
# For throw-away CI/dev machines only (the test command runs it; `rcjobs demo` does not): it
# adds trust auth on loopback to pg_hba.conf and raises max_connections to 400.
set -euo pipefail
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
up() { pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null && psql -h "$PGHOST" -p "$PGPORT" -U postgres -Atc 'select 1' postgres >/dev/null 2>&1; }

restart_cluster() {
  local v; v=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  [ -n "$v" ] && pg_ctlcluster --skip-systemctl-redirect "$v" main restart
}
# Parallel tests each open a few pools: ask for more connections than Debian's default 100.
raise_connections() {
  local n; n=$(psql -h "$PGHOST" -p "$PGPORT" -U postgres -Atc 'show max_connections' postgres)
  if [ "$n" -lt 300 ]; then
    psql -h "$PGHOST" -p "$PGPORT" -U postgres -qc 'ALTER SYSTEM SET max_connections = 400' postgres
    restart_cluster || true
    for _ in $(seq 1 60); do up && break; sleep 1; done
  fi
}

if command -v pg_isready >/dev/null && up; then
  raise_connections
  echo "postgres: reachable on $PGHOST:$PGPORT"; exit 0
fi
if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "postgres: not installed; installing Debian's postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql postgresql-contrib >/dev/null
fi
ver=$(ls /etc/postgresql | sort -V | tail -1)
conf=/etc/postgresql/$ver/main
# Trust auth on loopback for the test user (a throw-away CI/dev server only).
if ! grep -q '^host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"; then
  sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$conf/pg_hba.conf"
fi
grep -q "^listen_addresses" "$conf/postgresql.conf" || echo "listen_addresses = '127.0.0.1'" >> "$conf/postgresql.conf"
pg_ctlcluster --skip-systemctl-redirect "$ver" main start || pg_ctlcluster --skip-systemctl-redirect "$ver" main restart
for _ in $(seq 1 60); do up && { raise_connections; echo "postgres: started ($ver)"; exit 0; }; sleep 1; done
echo "postgres: could not be started" >&2
exit 1
