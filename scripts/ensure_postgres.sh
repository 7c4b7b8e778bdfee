#!/usr/bin/env bash
# Installs Debian's PostgreSQL server package when its binaries are missing: the suite starts a
# real server of its own (initdb + pg_ctl in a temporary directory, tests/postgres_server.py).
#
#   scripts/ensure_postgres.sh      # idempotent; does nothing when initdb is already there
#
# RETAILFACE_PG_BIN names the binary directory; by default the newest /usr/lib/postgresql/*/bin
# (Debian 12's postgresql package is 15).
set -euo pipefail

pg_bin() {
  if [[ -n "${RETAILFACE_PG_BIN:-}" ]]; then
    echo "$RETAILFACE_PG_BIN"
  else
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
  fi
}

have_server() {
  local bin
  bin=$(pg_bin)
  [[ -n "$bin" && -x "$bin/initdb" && -x "$bin/pg_ctl" ]]
}

if have_server; then
  exit 0
fi

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null || {
    echo "ensure_postgres: initdb/pg_ctl are missing and sudo is not available; install the postgresql package as root" >&2
    exit 1
  }
  SUDO=(sudo)
fi
echo "ensure_postgres: installing the postgresql package (the tests start a server of their own)"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends postgresql

# Fail here, with the reason, rather than in the tests.
if ! have_server; then
  echo "ensure_postgres: postgresql is installed but no initdb/pg_ctl under $(pg_bin || true); set RETAILFACE_PG_BIN" >&2
  exit 1
fi
