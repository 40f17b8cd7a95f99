#!/usr/bin/env bash
# Throw-away PostgreSQL cluster for tests and CI: Debian's postgresql package, one cluster
# in a fresh temporary directory, listening on 127.0.0.1 only, trust authentication, a
# superuser and a database both named `nas`, durability switched off (fsync,
# synchronous_commit, full_page_writes) because nothing in it has to survive a crash of
# the machine.
#
# Usage: scripts/postgres.sh COMMAND
#   start    idempotent: install the postgresql package if initdb cannot be found, create
#            the cluster (initdb, a free port, pg_ctl start, createdb nas) and print its URL.
#            If the cluster named in the state file answers, only print its URL; if its
#            data directory exists but the server is down (after `kill`), start that same
#            cluster again on the same port (the data survives).
#   restart  restart the server of the same cluster on the same port (pg_ctl restart -m fast),
#            print the URL again (tests restart the database mid-run with this)
#   url      print the URL of the running cluster; exit 1 if none answers
#   kill     stop the server at once (pg_ctl stop -m immediate: no shutdown checkpoint, as
#            after a crash) and keep everything, for fault tests; `start` brings it back
#   stop     stop the server (pg_ctl stop -m fast), remove its directory and the state file;
#            succeeds when nothing runs
#
# `start`, `restart` and `url` print exactly one line on stdout, the URL
#   postgres://nas@127.0.0.1:PORT/nas
# so that URL="$(scripts/postgres.sh start)" works; every diagnostic goes to stderr. If the
# server does not start, the last 30 lines of its log go to stderr and the exit status is 1.
#
# Layout: /tmp/nas-pg.XXXXXX/ holds data/ (the cluster), log (the server log), initdb.log
# and the server's Unix socket. The state file ${NAS_PG_STATE:-/tmp/nas-pg.state} names the
# directory, port, URL and binaries (key=value lines); ${NAS_PG_STATE}.lock serialises calls
# of this script that share a state file.
#
# The server binaries refuse to run as root: as root the script runs initdb and pg_ctl as
# the `postgres` OS user (created by the Debian package) and chowns the directory to it;
# as any other user it runs them as that user. The package is installed with apt-get
# (through sudo when not root), with `apt-get update` only if the install fails without it.
# Ports: the first port from ${NAS_PG_PORT:-55432} upward that can be bound on 127.0.0.1.
# The cluster uses the C locale and UTF8 encoding whatever the host's locale settings are.
set -euo pipefail

STATE="${NAS_PG_STATE:-/tmp/nas-pg.state}"
PG_LIB="${NAS_PG_LIBDIR:-/usr/lib/postgresql}"
FIRST_PORT="${NAS_PG_PORT:-55432}"
START_TIMEOUT="${NAS_PG_START_TIMEOUT:-60}"
PG_OS_USER=postgres
DB_USER=nas
DB_NAME=nas
# The C locale exists everywhere; a host locale that is set but not generated would
# otherwise make initdb (and perl in dpkg's scripts) fail or warn.
export LC_ALL=C

# stdout carries only the URL: keep the real stdout on fd 3 and send everything else,
# including the output of every program run here, to stderr. Servers must not inherit
# fd 3 (or the lock on fd 9): a captured $(...) would never see end of file.
exec 3>&1 1>&2

log() { echo "[postgres] $*" >&2; }
say() { echo "$*" >&3; }

# find_bindir: the bin folder of the newest PostgreSQL under $PG_LIB (Debian's layout),
# else the folder of an initdb on PATH; fails if there is none.
find_bindir() {
    local candidate best=""
    if [[ -n "${NAS_PG_BINDIR:-}" ]]; then
        [[ -x "$NAS_PG_BINDIR/initdb" ]] && { echo "$NAS_PG_BINDIR"; return 0; }
        return 1
    fi
    best="$(printf '%s\n' "$PG_LIB"/*/bin/initdb | sort -V | tail -n 1)"
    if [[ -x "$best" ]]; then
        dirname "$best"
        return 0
    fi
    candidate="$(command -v initdb 2>/dev/null)" || return 1
    dirname "$(readlink -f "$candidate")"
}

ensure_postgres() {
    BIN="$(find_bindir)" && return 0
    local sudo="" aptlog t0=$SECONDS
    if ((EUID != 0)); then
        if ! command -v sudo >/dev/null 2>&1; then
            log "initdb not found and not root (no sudo): install Debian's postgresql package"
            return 1
        fi
        sudo=sudo
    fi
    aptlog="$(mktemp /tmp/nas-pg-apt.XXXXXX)"
    log "initdb not found: installing Debian's postgresql package (apt-get install -y postgresql)"
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >"$aptlog" 2>&1; then
        log "apt-get install failed; running apt-get update and trying again"
        if ! { $sudo apt-get update && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; } \
            >"$aptlog" 2>&1; then
            log "installing postgresql failed; last lines of the apt-get output:"
            tail -n 30 "$aptlog" >&2
            rm -f "$aptlog"
            return 1
        fi
    fi
    rm -f "$aptlog"
    if ! BIN="$(find_bindir)"; then
        log "postgresql is installed but no initdb under $PG_LIB/*/bin or on PATH"
        return 1
    fi
    log "installed postgresql in $((SECONDS - t0))s ($BIN)"
}

# as_pg CMD...: run a server program (initdb, pg_ctl) as the cluster's owner, from / (the
# owner may not be allowed into the caller's folder), without fds 3 and 9.
as_pg() {
    if ((EUID == 0)); then
        (cd / && exec runuser -u "$PG_OS_USER" -- "$@") 3>&- 9>&-
    else
        (cd / && exec "$@") 3>&- 9>&-
    fi
}

url_for() { echo "postgres://$DB_USER@127.0.0.1:$1/$DB_NAME"; }

server_opts() {
    echo "-c listen_addresses=127.0.0.1 -p $2 -c fsync=off -c synchronous_commit=off" \
        "-c full_page_writes=off -c unix_socket_directories=$1 -c max_connections=200"
}

# read_state: set DIR, PORT, URL and BIN from the state file; fails if there is none (or it
# is incomplete). BIN falls back to find_bindir when the recorded one has gone.
read_state() {
    DIR="" PORT="" URL="" BIN=""
    [[ -f "$STATE" ]] || return 1
    local key value
    while IFS='=' read -r key value; do
        case "$key" in
            dir) DIR="$value" ;;
            port) PORT="$value" ;;
            url) URL="$value" ;;
            bindir) BIN="$value" ;;
        esac
    done <"$STATE"
    if [[ -z "$DIR" || ! "$PORT" =~ ^[0-9]+$ ]]; then
        log "ignoring the unreadable state file $STATE"
        return 1
    fi
    URL="${URL:-$(url_for "$PORT")}"
    if [[ -z "$BIN" || ! -x "$BIN/pg_ctl" ]]; then
        BIN="$(find_bindir)" || BIN=""
    fi
    return 0
}

write_state() {
    printf 'dir=%s\nport=%s\nurl=%s\nbindir=%s\n' "$DIR" "$PORT" "$URL" "$BIN" >"$STATE.part"
    mv "$STATE.part" "$STATE"
}

# Only ever delete what this script created.
remove_dir() {
    if [[ "$1" == /tmp/nas-pg.* && "$1" != */../* ]]; then
        rm -rf -- "$1"
    else
        log "not removing $1: not a /tmp/nas-pg.* folder"
        return 1
    fi
}

# port_free PORT: whether PORT can be bound on 127.0.0.1 now.
port_free() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
    else
        # Without python3: a port nobody answers on is taken to be free.
        if (exec 4<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 1
        fi
    fi
}

free_port() {
    local port
    for ((port = $1; port < $1 + 1000; port++)); do
        if port_free "$port"; then
            echo "$port"
            return 0
        fi
    done
    log "no free port in $1..$(($1 + 999)) on 127.0.0.1"
    return 1
}

ready() { [[ -n "$BIN" ]] && "$BIN/pg_isready" -q -t 2 -h 127.0.0.1 -p "$1" -d "$DB_NAME" -U "$DB_USER"; }

# server_running: whether a postmaster runs on the cluster in $DIR (whether or not it
# accepts connections yet).
server_running() {
    [[ -n "$BIN" && -f "$DIR/data/postmaster.pid" ]] && as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1
}

wait_ready() {
    local deadline=$((SECONDS + START_TIMEOUT))
    until ready "$PORT"; do
        if ((SECONDS >= deadline)); then
            log "the server on port $PORT does not accept connections after ${START_TIMEOUT}s; last lines of $DIR/log:"
            tail -n 30 "$DIR/log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

# pg_start: start the cluster in $DIR on $PORT and wait until it accepts connections.
# Quiet on failure when QUIET_FAILURE is set (the caller retries on another port).
pg_start() {
    if as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -o "$(server_opts "$DIR" "$PORT")" \
        -w -t "$START_TIMEOUT" start >/dev/null; then
        return 0
    fi
    if [[ -z "${QUIET_FAILURE:-}" ]]; then
        log "the server did not start on port $PORT; last lines of $DIR/log:"
        tail -n 30 "$DIR/log" >&2 || true
    fi
    return 1
}

create_cluster() {
    ensure_postgres
    if ((EUID == 0)) && ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
        log "running as root but there is no '$PG_OS_USER' OS user to run the server as"
        return 1
    fi
    DIR="$(mktemp -d /tmp/nas-pg.XXXXXX)"
    ((EUID == 0)) && chown "$PG_OS_USER:" "$DIR"
    log "creating a cluster in $DIR ($("$BIN/postgres" --version))"
    if ! as_pg "$BIN/initdb" -D "$DIR/data" --auth=trust -U "$DB_USER" --encoding=UTF8 --locale=C \
        --no-sync >"$DIR/initdb.log" 2>&1; then
        log "initdb failed; last lines of its output:"
        tail -n 30 "$DIR/initdb.log" >&2
        remove_dir "$DIR"
        return 1
    fi
    local attempt
    for attempt in 1 2 3; do
        PORT="$(free_port "$FIRST_PORT")"
        URL="$(url_for "$PORT")"
        # Written before the server starts, so that `stop` cleans up even after a failed start.
        write_state
        ((attempt < 3)) && QUIET_FAILURE=1 || QUIET_FAILURE=""
        if QUIET_FAILURE="$QUIET_FAILURE" pg_start; then
            break
        fi
        # Someone else may have bound the port between the probe and the server's bind.
        if ((attempt < 3)) && grep -q 'could not bind\|Address already in use' "$DIR/log" 2>/dev/null; then
            log "port $PORT was taken meanwhile; trying another"
            continue
        fi
        if [[ -n "$QUIET_FAILURE" ]]; then
            log "the server did not start on port $PORT; last lines of $DIR/log:"
            tail -n 30 "$DIR/log" >&2 || true
        fi
        log "the cluster is left in $DIR for inspection; 'scripts/postgres.sh stop' removes it"
        return 1
    done
    "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U "$DB_USER" "$DB_NAME"
    log "ready: $URL (data in $DIR/data, log $DIR/log)"
}

cmd_start() {
    if read_state; then
        if [[ -f "$DIR/data/PG_VERSION" ]]; then
            if [[ -z "$BIN" ]]; then
                ensure_postgres
            fi
            if ready "$PORT"; then
                say "$URL"
                return 0
            fi
            if server_running; then
                log "the server in $DIR runs but does not accept connections yet; waiting"
            else
                log "the cluster in $DIR is down; starting it again on port $PORT"
                pg_start || return 1
            fi
            wait_ready || return 1
            say "$URL"
            return 0
        fi
        log "the state file names $DIR, which holds no cluster; creating a new one"
        if [[ -d "$DIR" ]]; then remove_dir "$DIR" || true; fi
        rm -f "$STATE"
    fi
    create_cluster
    say "$URL"
}

cmd_restart() {
    if ! read_state || [[ ! -f "$DIR/data/PG_VERSION" ]]; then
        log "no cluster to restart (state file $STATE); run 'scripts/postgres.sh start'"
        return 1
    fi
    [[ -n "$BIN" ]] || ensure_postgres
    if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -o "$(server_opts "$DIR" "$PORT")" \
        -m fast -w -t "$START_TIMEOUT" restart >/dev/null; then
        log "the server did not restart on port $PORT; last lines of $DIR/log:"
        tail -n 30 "$DIR/log" >&2 || true
        return 1
    fi
    wait_ready || return 1
    log "restarted: $URL"
    say "$URL"
}

cmd_url() {
    if read_state && [[ -f "$DIR/data/PG_VERSION" ]] && ready "$PORT"; then
        say "$URL"
        return 0
    fi
    log "no running cluster (state file $STATE)"
    return 1
}

cmd_kill() {
    if ! read_state || [[ ! -f "$DIR/data/PG_VERSION" ]]; then
        log "no cluster to kill (state file $STATE)"
        return 1
    fi
    if ! server_running; then
        log "the server in $DIR is not running"
        return 0
    fi
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null
    log "killed the server on port $PORT (pg_ctl stop -m immediate); $DIR is kept"
}

cmd_stop() {
    if ! read_state; then
        log "nothing to stop (no usable state file $STATE)"
        rm -f "$STATE"
        return 0
    fi
    if server_running; then
        if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null; then
            log "fast shutdown failed; stopping immediately"
            as_pg "$BIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null || true
        fi
        log "stopped the server on port $PORT"
    fi
    if [[ -d "$DIR" ]] && remove_dir "$DIR"; then
        log "removed $DIR"
    fi
    rm -f "$STATE"
}

cmd="${1:-}"
case "$cmd" in
    start | restart | url | kill | stop)
        [[ $# -eq 1 ]] || { log "'$cmd' takes no arguments"; exit 2; }
        # One call at a time per state file; servers do not inherit the lock (as_pg).
        exec 9>"$STATE.lock"
        flock 9
        "cmd_$cmd"
        ;;
    *)
        echo "usage: $0 start | restart | url | kill | stop" >&2
        echo "  (state file: \${NAS_PG_STATE:-/tmp/nas-pg.state}; see the comment at the top)" >&2
        exit 2
        ;;
esac
