# shellcheck shell=bash
# PostgreSQL 15 (Debian package). Sourced by engines/lib.sh.
# Runs as the `postgres` system user (the server refuses root) with its own
# cluster in $ENGINES_DIR/postgres/data: trust auth on 127.0.0.1, database `playpulse`.


postgres_install() {
    if [[ ! -x "$PG_BIN/postgres" || ! -x "$PG_BIN/initdb" ]]; then
        # policy-rc.d on these machines keeps apt from starting Debian's own cluster;
        # if one does run on 5432, engines/up reports the port as taken.
        apt_install postgresql-15 postgresql-client-15
    fi
    command -v psql >/dev/null 2>&1 || apt_install postgresql-client-15
    id postgres >/dev/null 2>&1 || { log "postgres: no 'postgres' system user after install"; return 1; }
}

postgres_start() {
    postgres_install || return 1
    local base data sock
    base="$ENGINES_DIR/postgres"
    data="$base/data"
    sock="$base/socket"
    mkdir -p "$base" "$sock"
    # the postgres user must be able to reach its directories
    chown postgres:postgres "$base" "$sock"
    chmod 0755 "$base"
    runuser -u postgres -- test -w "$base" || {
        log "postgres: the postgres user cannot reach $base (a parent directory lacks o+x); use another ENGINES_DIR"
        return 1; }
    touch "$(engine_log postgres)"
    if [[ ! -s "$data/PG_VERSION" ]]; then
        log "postgres: initdb $data"
        rm -rf "$data"
        runuser -u postgres -- "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >> "$(engine_log postgres)" 2>&1 ||
        runuser -u postgres -- "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C >> "$(engine_log postgres)" 2>&1 || return 1
        cat > "$data/pg_hba.conf" <<'HBA'
# written by engines/up: trust for local tests only
local   all   all                 trust
host    all   all   127.0.0.1/32  trust
host    all   all   ::1/128       trust
HBA
        chown postgres:postgres "$data/pg_hba.conf"
    fi
    # a stale postmaster.pid from a killed server would block the start
    if [[ -f "$data/postmaster.pid" ]]; then
        local old
        old="$(head -n1 "$data/postmaster.pid" | tr -dc '0-9')"
        if ! pid_is_engine postgres "$old"; then rm -f "$data/postmaster.pid"; fi
    fi
    # setpriv execs the server directly, so the pid file holds the postmaster's pid
    spawn postgres setpriv --reuid=postgres --regid=postgres --init-groups \
        "$PG_BIN/postgres" -D "$data" \
        -c listen_addresses="$ENGINES_HOST" -c port="$PG_PORT" \
        -c unix_socket_directories="$sock" \
        -c max_connections="${PG_MAX_CONNECTIONS:-200}" \
        -c shared_buffers="${PG_SHARED_BUFFERS:-128MB}" \
        -c fsync="${PG_FSYNC:-on}" \
        -c logging_collector=off
}

postgres_psql() {
    psql -X -q -h "$ENGINES_HOST" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -tA "$@"
}

postgres_query() {
    local secs="$1" pid="${2:-}" deadline out
    deadline=$(( $(now) + secs ))
    while true; do
        if out="$(postgres_psql -d postgres -c 'SELECT 1' 2>&1)" && [[ "$out" == 1 ]]; then
            break
        fi
        [[ -n "$pid" ]] && ! pid_is_engine postgres "$pid" && { log "postgres: server gone: $out"; return 1; }
        (( $(now) >= deadline )) && { log "postgres: last error: $out"; return 1; }
        sleep 0.5
    done
    if [[ "$(postgres_psql -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'playpulse'")" != 1 ]]; then
        log "postgres: CREATE DATABASE playpulse"
        postgres_psql -d postgres -c 'CREATE DATABASE playpulse' || return 1
    fi
    out="$(postgres_psql -d playpulse -c 'SELECT 1')" || return 1
    log "postgres: SELECT 1 on playpulse -> $out ($(postgres_psql -d playpulse -c 'SHOW server_version'))"
    [[ "$out" == 1 ]]
}

# SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would wait for every client to leave.
postgres_stop_signal() { echo INT; }
