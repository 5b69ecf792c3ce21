# shellcheck shell=bash
# Redis (Debian package redis-server). Sourced by engines/lib.sh.
# Own config in $ENGINES_DIR/redis, bound to 127.0.0.1, default RDB snapshots into that dir.

redis_start() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        apt_install redis-server redis-tools || return 1
    fi
    local dir="$ENGINES_DIR/redis"
    mkdir -p "$dir"
    cat > "$dir/redis.conf" <<CONF
# written by engines/up
bind $ENGINES_HOST
port $REDIS_PORT
protected-mode yes
daemonize no
dir $dir
dbfilename dump.rdb
save 3600 1 300 100 60 10000
appendonly no
maxmemory ${REDIS_MAXMEMORY:-512mb}
maxmemory-policy noeviction
loglevel notice
# SIGTERM (engines/down): save the RDB, and exit even if that save fails
shutdown-on-sigterm save force
logfile ""
CONF
    # run in the foreground under spawn: the pid file is ours, the log is stdout
    spawn redis redis-server "$dir/redis.conf"
}

redis_query() {
    local secs="$1" pid="${2:-}" deadline out
    deadline=$(( $(now) + secs ))
    while true; do
        out="$(redis-cli -h "$ENGINES_HOST" -p "$REDIS_PORT" PING 2>&1 || true)"
        if [[ "$out" == PONG ]]; then
            log "redis: PING -> PONG ($(redis-cli -h "$ENGINES_HOST" -p "$REDIS_PORT" INFO server | grep -m1 redis_version | tr -d '\r'))"
            return 0
        fi
        [[ -n "$pid" ]] && ! pid_is_engine redis "$pid" && { log "redis: server gone: $out"; return 1; }
        (( $(now) >= deadline )) && { log "redis: last answer: $out"; return 1; }
        sleep 0.3
    done
}
