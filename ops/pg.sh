#!/usr/bin/env bash
# PostgreSQL without ceremony, for the run, test and bench scripts.
#
#   ops/pg.sh ensure              start (or reuse) the project-local cluster; print its DATABASE_URL
#   ops/pg.sh ephemeral DIR [durable]
#                                 initialise and start a throwaway cluster in DIR; print its socket folder
#                                 (DIR.lock beside it serialises two starts in one DIR)
#   ops/pg.sh stop DIR            stop the cluster in DIR and remove DIR (and DIR.lock)
#   ops/pg.sh halt DIR            stop the cluster in DIR (fast), keeping its data: an outage
#   ops/pg.sh resume DIR          start the halted cluster in DIR again
#   ops/pg.sh watch PID DIR       wait until process PID exits, then stop and remove DIR
#   ops/pg.sh bindir              print the folder of the server binaries (installing them if missing)
#
# initdb refuses to run as root, so as root the cluster runs as the `postgres`
# system user (runuser); a non-root developer runs it as themself. Clusters
# listen only on a Unix socket inside their own folder, so several can run at
# once and none collides with a system PostgreSQL.
#
# `ensure` and `ephemeral` hold a lock (flock, util-linux) from choosing the
# folder to creating the database, so two started at once (`ops/run &` and
# `ops/run tenant add` pasted together, say) share one cluster instead of both
# running initdb in one folder: the second waits, then finds it running.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { echo "pg.sh: $*" >&2; }

find_bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    return 1
}

bindir() {
    if find_bindir; then return 0; fi
    log "PostgreSQL server binaries not found; installing Debian's postgresql package"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
    find_bindir || { log "initdb still missing after installing postgresql"; exit 1; }
}

# Holds an exclusive lock on FILE (created if missing) until this script
# exits. File descriptor 9 is the lock: whatever this script starts that
# outlives it (the postmaster) must be started with 9>&-, or it would hold
# the lock for as long as it runs.
hold_lock() {
    local file=$1
    if ! command -v flock >/dev/null 2>&1; then
        log "flock (util-linux) is missing; not guarding against a concurrent start"
        return 0
    fi
    exec 9>>"$file" || { log "cannot open the lock file $file"; exit 1; }
    if ! flock -n 9; then
        log "waiting for another ops/pg.sh to finish starting PostgreSQL (lock $file)"
        flock 9
    fi
}

# Runs a command as the cluster's owner.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

prepare_dir() {
    local dir=$1
    mkdir -p "$dir" 2>/dev/null || return 1
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
        chown postgres: "$dir"
        chmod 700 "$dir"
    fi
}

# Can the cluster owner reach DIR? (A checkout under a 700 home folder is out
# of the postgres user's reach; a read-only checkout is out of everyone's.)
reachable() {
    local dir=$1
    if [ "$(id -u)" -ne 0 ]; then
        test -w "$dir"
    else
        runuser -u postgres -- test -w "$dir" 2>/dev/null
    fi
}

init_and_start() {
    local dir=$1 durable=${2:-}
    local bin
    bin=$(bindir)
    if [ ! -f "$dir/PG_VERSION" ]; then
        as_owner "$bin/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >"$dir.initdb.log" 2>&1 \
            || as_owner "$bin/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$dir.initdb.log" 2>&1 \
            || { cat "$dir.initdb.log" >&2; exit 1; }
        rm -f "$dir.initdb.log"
        {
            echo "listen_addresses = ''"
            echo "unix_socket_directories = '$dir'"
            echo "max_connections = 400"
            echo "shared_buffers = 256MB"
            echo "log_min_messages = warning"
            echo "idle_in_transaction_session_timeout = '60s'"
            if [ "$durable" != "durable" ]; then
                # Throwaway test clusters: durability buys nothing and costs time.
                echo "fsync = off"
                echo "synchronous_commit = off"
                echo "full_page_writes = off"
            fi
        } | as_owner tee -a "$dir/postgresql.conf" >/dev/null
    fi
    if ! as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        # 9>&-: the postmaster must not inherit the lock (see hold_lock).
        as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null 9>&- \
            || { tail -n 30 "$dir/server.log" >&2; exit 1; }
    fi
}

stop_cluster() {
    local dir=$1 bin
    [ -d "$dir" ] || return 0
    bin=$(find_bindir) || true
    if [ -n "${bin:-}" ] && [ -f "$dir/PG_VERSION" ]; then
        as_owner "$bin/pg_ctl" -D "$dir" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    rm -f "${dir%/}.lock"
}

cmd=${1:-}
case "$cmd" in
    bindir)
        bindir
        ;;
    ensure)
        # One lock per user and checkout, in the folder the fallback cluster
        # lives in: writable whether or not the checkout is, and outside the
        # work tree. Held until this script exits, past createdb.
        key=$(echo "$repo" | cksum | cut -d' ' -f1)
        hold_lock "${TMPDIR:-/tmp}/opsledger-pgdata-$(id -u)-$key.lock"
        dir=${OPSLEDGER_PGDATA:-$repo/.pgdata}
        if ! { prepare_dir "$dir" && reachable "$dir"; }; then
            dir=${TMPDIR:-/tmp}/opsledger-pgdata-$(id -u)-$key
            prepare_dir "$dir" || { log "cannot create $dir"; exit 1; }
        fi
        init_and_start "$dir" durable
        bin=$(bindir)
        if ! as_owner "$bin/psql" -h "$dir" -U postgres -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = 'opsledger'" | grep -q 1; then
            as_owner "$bin/createdb" -h "$dir" -U postgres opsledger
        fi
        echo "host=$dir user=postgres dbname=opsledger"
        ;;
    ephemeral)
        dir=${2:?usage: ops/pg.sh ephemeral DIR [durable]}
        hold_lock "${dir%/}.lock"
        prepare_dir "$dir" || { log "cannot create $dir"; exit 1; }
        init_and_start "$dir" "${3:-}"
        echo "$dir"
        ;;
    stop)
        stop_cluster "${2:?usage: ops/pg.sh stop DIR}"
        ;;
    halt)
        dir=${2:?usage: ops/pg.sh halt DIR}
        bin=$(find_bindir)
        as_owner "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
        ;;
    resume)
        dir=${2:?usage: ops/pg.sh resume DIR}
        bin=$(find_bindir)
        as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null \
            || { tail -n 30 "$dir/server.log" >&2; exit 1; }
        ;;
    watch)
        pid=${2:?usage: ops/pg.sh watch PID DIR}
        dir=${3:?usage: ops/pg.sh watch PID DIR}
        while kill -0 "$pid" 2>/dev/null; do sleep 1; done
        stop_cluster "$dir"
        ;;
    *)
        sed -n '2,12p' "$0" >&2
        exit 2
        ;;
esac
