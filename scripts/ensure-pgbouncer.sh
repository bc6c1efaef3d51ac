#!/usr/bin/env bash
# Prints the path of a PgBouncer that can pool sqlx's protocol-level prepared statements in
# transaction mode (1.21+, `max_prepared_statements`), installing one if there is none.
#
# Order: an installed pgbouncer that is new enough -> one this script built before ->
# Debian's package when its candidate is new enough -> Debian's own source package of the
# newer release (PGBOUNCER_SUITE, default trixie) from the mirror this machine's apt already
# uses, built with Debian's patches into PGBOUNCER_PREFIX. Debian 12 ships 1.18, which
# cannot carry named prepared statements through transaction pooling.
# Everything but the last line goes to stderr, so `bin=$(scripts/ensure-pgbouncer.sh)` works.
set -euo pipefail
SUITE=${PGBOUNCER_SUITE:-trixie}
PREFIX=${PGBOUNCER_PREFIX:-/usr/local/lib/rcjobs-pgbouncer}
log() { echo "ensure-pgbouncer: $*" >&2; }

# new_enough BIN: its version is 1.21 or later
new_enough() {
  local v
  v=$("$1" --version 2>/dev/null | head -1 | awk '{print $2}') || return 1
  [ -n "$v" ] || return 1
  [ "$(printf '%s\n1.21\n' "$v" | sort -V | head -1)" = "1.21" ]
}

for bin in /usr/sbin/pgbouncer /usr/bin/pgbouncer "$PREFIX/bin/pgbouncer"; do
  if [ -x "$bin" ] && new_enough "$bin"; then
    echo "$bin"; exit 0
  fi
done

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
cand=$(apt-cache policy pgbouncer 2>/dev/null | awk '/Candidate:/{print $2}')
if [ -n "$cand" ] && [ "$cand" != "(none)" ] \
   && [ "$(printf '%s\n1.21\n' "${cand%%-*}" | sort -V | head -1)" = "1.21" ]; then
  log "installing Debian's pgbouncer $cand"
  apt-get install -y -qq pgbouncer >&2
  echo /usr/sbin/pgbouncer; exit 0
fi

log "Debian's candidate is ${cand:-none} (< 1.21); building the $SUITE source package"
apt-get install -y -qq gcc make pkg-config libevent-dev libssl-dev libc-ares-dev dpkg-dev >&2
# The mirror apt already uses for this machine's Debian release.
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if [ -z "$mirror" ]; then
  mirror=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || { log "no Debian mirror found in apt's sources"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "deb-src $mirror $SUITE main" > "$work/src.list"
apt_src=(-o Dir::Etc::sourcelist="$work/src.list" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0)
apt-get "${apt_src[@]}" update -qq >&2
(cd "$work" && apt-get "${apt_src[@]}" source --download-only pgbouncer >&2)
dsc=$(ls "$work"/pgbouncer_*.dsc | head -1)
# The .dsc's checksums come from the signed Sources index apt just verified.
dpkg-source --no-check -x "$dsc" "$work/src" >&2
(cd "$work/src" && ./configure --prefix="$PREFIX" --without-pam --without-systemd >&2 \
   && make -j"$(nproc)" >&2 && make install >&2)
new_enough "$PREFIX/bin/pgbouncer" || { log "built pgbouncer is older than 1.21"; exit 1; }
log "built $("$PREFIX/bin/pgbouncer" --version | head -1) into $PREFIX"
echo "$PREFIX/bin/pgbouncer"
