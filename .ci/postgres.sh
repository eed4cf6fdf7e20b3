# Start a throwaway PostgreSQL server for the tests; source it from .ci/run (bash).
#
# Installs Debian's postgresql package when no server binaries are found, runs initdb in a
# temporary folder, listens on 127.0.0.1 only (port ARCHBENCH_PG_PORT, default 54329, or the
# next free one), creates the user and database `archbench_test`, exports
# ARCHBENCH_TEST_POSTGRES_URL, and stops the server and removes its folder when the sourcing
# shell exits. Set ARCHBENCH_SKIP_POSTGRES=1 to skip it all (the PostgreSQL tests then skip).
# Run directly (`bash .ci/postgres.sh`) it starts, checks and stops the server.

_abpg_log() { echo "postgres.sh: $*" >&2; }

_abpg_apt() {
    # Another apt/dpkg user may hold the lock: wait for it instead of failing.
    local try
    for try in 1 2 3 4 5 6 7 8 9 10; do
        if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -q "$@"; then
            return 0
        fi
        _abpg_log "apt-get $* failed (try $try); retrying in 15 s"
        sleep 15
    done
    return 1
}

_abpg_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
        echo "$dir"
    fi
}

_abpg_as_owner() {
    # initdb and postgres refuse to run as root: run them as the postgres user then.
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

_abpg_port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

archbench_pg_stop() {
    if [ -n "${ARCHBENCH_PG_DIR:-}" ] && [ -d "$ARCHBENCH_PG_DIR" ]; then
        _abpg_as_owner "$ARCHBENCH_PG_BINDIR/pg_ctl" -D "$ARCHBENCH_PG_DIR/data" -m fast \
            -w stop >/dev/null 2>&1 || true
        rm -rf "$ARCHBENCH_PG_DIR"
        _abpg_log "server stopped"
    fi
    ARCHBENCH_PG_DIR=
}

archbench_pg_start() {
    local bindir port dir pw
    bindir=$(_abpg_bindir)
    if [ -z "$bindir" ]; then
        if [ "$(id -u)" != 0 ]; then
            _abpg_log "no PostgreSQL server binaries and not root: cannot install them"
            return 1
        fi
        _abpg_log "installing postgresql from Debian's packages"
        _abpg_apt update && _abpg_apt install -y postgresql || return 1
        bindir=$(_abpg_bindir)
        [ -n "$bindir" ] || { _abpg_log "postgresql installed but no initdb found"; return 1; }
    fi
    port=${ARCHBENCH_PG_PORT:-54329}
    while ! _abpg_port_free "$port"; do
        port=$((port + 1))
        [ "$port" -lt "$(( ${ARCHBENCH_PG_PORT:-54329} + 50 ))" ] || {
            _abpg_log "no free port"
            return 1
        }
    done
    dir=$(mktemp -d /tmp/archbench-pg.XXXXXX) || return 1
    # Exported: tests restart or stop this server (tests/test_pg_restart.py).
    export ARCHBENCH_PG_DIR=$dir
    export ARCHBENCH_PG_BINDIR=$bindir
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    pw=archbench-$RANDOM$RANDOM
    # Trust on the private socket (only the owner can reach it), passwords over TCP.
    if ! _abpg_as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        archbench_pg_stop
        return 1
    fi
    if ! _abpg_as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null; then
        cat "$dir/server.log" >&2
        archbench_pg_stop
        return 1
    fi
    _abpg_as_owner "$bindir/psql" -h "$dir" -p "$port" -U postgres -d postgres -q \
        -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE archbench_test LOGIN PASSWORD '$pw'" \
        -c "CREATE DATABASE archbench_test OWNER archbench_test" || {
        archbench_pg_stop
        return 1
    }
    ARCHBENCH_PG_PORT_USED=$port
    export ARCHBENCH_TEST_POSTGRES_URL="postgresql://archbench_test:$pw@127.0.0.1:$port/archbench_test"
    _abpg_log "server on 127.0.0.1:$port (data in $dir)"
}

_abpg_python_driver() {
    # The tests need psycopg2 in the project's venv (the `postgres` extra).
    local py=${ARCHBENCH_PYTHON:-.venv/bin/python}
    if [ -x "$py" ] && ! "$py" -c "import psycopg2" 2>/dev/null; then
        "$py" -m pip install -q "psycopg2-binary>=2.9"
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    # Run directly: a self-check.
    set -euo pipefail
    archbench_pg_start
    trap archbench_pg_stop EXIT
    "$ARCHBENCH_PG_BINDIR/pg_isready" -h 127.0.0.1 -p "$ARCHBENCH_PG_PORT_USED"
    PGPASSWORD=${ARCHBENCH_TEST_POSTGRES_URL#*archbench_test:} PGPASSWORD=${PGPASSWORD%%@*} \
        "$ARCHBENCH_PG_BINDIR/psql" -h 127.0.0.1 -p "$ARCHBENCH_PG_PORT_USED" -U archbench_test \
        -d archbench_test -tAc "SELECT 'password login ok: ' || current_user"
elif [ "${ARCHBENCH_SKIP_POSTGRES:-0}" != 1 ]; then
    _abpg_python_driver
    archbench_pg_start || { _abpg_log "could not start PostgreSQL"; return 1; }
    trap archbench_pg_stop EXIT
fi
