# shellcheck shell=bash
# shellcheck source-path=SCRIPTDIR
# engines/lib.sh: shared by engines/up, engines/status and engines/down.
# Sourced, not run. See engines/README.md.

set -euo pipefail

ENGINES_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ALL_ENGINES=(postgres redis cassandra neo4j opensearch)

# ---------------------------------------------------------------- settings
# Everything the engines write (data, logs, pids, classpath files) lives here.
ENGINES_DIR="$(realpath -m "${ENGINES_DIR:-./.engines}")"
export ENGINES_DIR
RUN_DIR="$ENGINES_DIR/run"      # pid files
LOG_DIR="$ENGINES_DIR/logs"     # one log per engine (+ maven logs)
CP_DIR="$ENGINES_DIR/cp"        # cached Maven classpaths

ENGINES_HOST=127.0.0.1
PG_PORT="${PG_PORT:-5432}"
REDIS_PORT="${REDIS_PORT:-6379}"
CASSANDRA_PORT="${CASSANDRA_PORT:-9042}"                  # CQL native transport
CASSANDRA_STORAGE_PORT="${CASSANDRA_STORAGE_PORT:-7000}"  # internode (unused by a single node, still bound)
NEO4J_BOLT_PORT="${NEO4J_BOLT_PORT:-7687}"
OPENSEARCH_PORT="${OPENSEARCH_PORT:-9200}"                # HTTP
OPENSEARCH_TRANSPORT_PORT="${OPENSEARCH_TRANSPORT_PORT:-9300}"

ENGINES_TIMEOUT="${ENGINES_TIMEOUT:-180}"            # seconds for one engine to answer its query
ENGINES_STOP_TIMEOUT="${ENGINES_STOP_TIMEOUT:-60}"   # seconds between TERM and KILL

CASSANDRA_HEAP="${CASSANDRA_HEAP:-1G}"
NEO4J_HEAP="${NEO4J_HEAP:-768m}"
NEO4J_PAGECACHE="${NEO4J_PAGECACHE:-64m}"
OPENSEARCH_HEAP_MIN="${OPENSEARCH_HEAP_MIN:-512m}"
OPENSEARCH_HEAP_MAX="${OPENSEARCH_HEAP_MAX:-1g}"

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
ENGINES_JAVA_HOME="${ENGINES_JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}"

# ---------------------------------------------------------------- helpers
log() { printf '[engines] %s\n' "$*" >&2; }
die() { printf '[engines] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s; }

is_engine() {
    local e
    for e in "${ALL_ENGINES[@]}"; do [[ "$e" == "$1" ]] && return 0; done
    return 1
}

# names from the command line, or all five in order
select_engines() {
    if [[ $# -eq 0 ]]; then
        SELECTED=("${ALL_ENGINES[@]}")
    else
        SELECTED=()
        local n
        for n in "$@"; do
            is_engine "$n" || die "unknown engine '$n' (known: ${ALL_ENGINES[*]})"
            SELECTED+=("$n")
        done
    fi
}

engine_port() {
    case "$1" in
        postgres) echo "$PG_PORT" ;;
        redis) echo "$REDIS_PORT" ;;
        cassandra) echo "$CASSANDRA_PORT" ;;
        neo4j) echo "$NEO4J_BOLT_PORT" ;;
        opensearch) echo "$OPENSEARCH_PORT" ;;
    esac
}

engine_log() { echo "$LOG_DIR/$1.log"; }
pid_file() { echo "$RUN_DIR/$1.pid"; }

# true when something accepts TCP connections on 127.0.0.1:PORT
port_open() {
    (exec 3<>"/dev/tcp/$ENGINES_HOST/$1") 2>/dev/null
}

# pid recorded for an engine (postgres: falls back to the first line of postmaster.pid)
read_pid() {
    local f
    f="$(pid_file "$1")"
    if [[ ! -s "$f" && "$1" == postgres ]]; then
        f="$ENGINES_DIR/postgres/data/postmaster.pid"
    fi
    [[ -s "$f" ]] || return 1
    head -n1 "$f" | tr -dc '0-9'
}

# true when PID is alive and is really that engine (guards against pid reuse)
pid_is_engine() {
    local name="$1" pid="$2"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    local cmd
    cmd="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
    # a zombie has an empty cmdline
    [[ -n "$cmd" ]] || return 1
    case "$name" in
        postgres) [[ "$cmd" == *postgres* && "$cmd" == *"$ENGINES_DIR/postgres/data"* ]] ;;
        redis) [[ "$cmd" == *redis-server* ]] ;;
        *) [[ "$cmd" == *"-Dplaypulse.engine=$name "* ]] ;;
    esac
}

# pid of the running engine, or fail
running_pid() {
    local pid
    pid="$(read_pid "$1")" || return 1
    pid_is_engine "$1" "$pid" || return 1
    echo "$pid"
}

tail_log() {
    local f
    f="$(engine_log "$1")"
    echo "----- last 60 lines of $f -----" >&2
    if [[ -f "$f" ]]; then tail -n 60 "$f" >&2; else echo "(no log file)" >&2; fi
    echo "----- end of $f -----" >&2
}

# Start a command in its own session, in the background, with stdout/stderr to
# the engine's log; the pid of the exec'd command is written to the pid file.
spawn() {
    local name="$1"; shift
    local pf log
    pf="$(pid_file "$name")"
    log="$(engine_log "$name")"
    rm -f "$pf"
    {
        echo
        echo "===== $(date -u '+%Y-%m-%dT%H:%M:%SZ') engines/up $name ====="
    } >> "$log"
    # shellcheck disable=SC2016
    setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' spawn "$pf" "$@" >> "$log" 2>&1 < /dev/null &
    for _ in $(seq 1 50); do
        [[ -s "$pf" ]] && return 0
        sleep 0.1
    done
    die "$name: no pid file written"
}

# apt-get install, running `apt-get update` once first
APT_UPDATED=0
apt_install() {
    log "apt-get install $*"
    if [[ $APT_UPDATED -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

# ---------------------------------------------------------------- java + maven
java_bin() {
    if [[ -x "$ENGINES_JAVA_HOME/bin/java" ]]; then
        echo "$ENGINES_JAVA_HOME/bin/java"
        return
    fi
    local j
    for j in /usr/lib/jvm/java-17-openjdk-*/bin/java; do
        [[ -x "$j" ]] && { echo "$j"; return; }
    done
    apt_install openjdk-17-jdk-headless
    for j in /usr/lib/jvm/java-17-openjdk-*/bin/java; do
        [[ -x "$j" ]] && { echo "$j"; return; }
    done
    die "no JDK 17 found (set ENGINES_JAVA_HOME)"
}

ensure_maven() {
    command -v mvn >/dev/null 2>&1 || apt_install maven
}

# Echo the path of a file holding the Maven classpath of engines/DIR/pom.xml.
# It is resolved once and reused while the pom's hash is unchanged and every
# jar in it still exists (the jars live in the local Maven repository ~/.m2).
MVN_DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
classpath_file() {
    local dir="$1"
    local pom="$ENGINES_HOME/$dir/pom.xml"
    local cp="$CP_DIR/$dir.cp"
    local hash
    hash="$(sha256sum "$pom" | cut -d' ' -f1)"
    if [[ -s "$cp" && -s "$cp.sha256" && "$(cat "$cp.sha256")" == "$hash" ]]; then
        local ok=1 jar
        while IFS= read -r jar; do
            [[ -f "$jar" ]] || { ok=0; break; }
        done < <(tr ':' '\n' < "$cp")
        if [[ $ok -eq 1 ]]; then
            echo "$cp"
            return 0
        fi
    fi
    ensure_maven
    mkdir -p "$CP_DIR" "$LOG_DIR"
    log "$dir: resolving the classpath with Maven (first time downloads into ~/.m2; see $LOG_DIR/mvn-$dir.log)"
    local t0
    t0="$(now)"
    if ! mvn -B -f "$pom" "$MVN_DEP_PLUGIN:build-classpath" \
            -Dmdep.outputFile="$cp.tmp" -Dmdep.pathSeparator=: \
            > "$LOG_DIR/mvn-$dir.log" 2>&1; then
        tail -n 60 "$LOG_DIR/mvn-$dir.log" >&2
        die "$dir: Maven could not resolve $pom"
    fi
    mv "$cp.tmp" "$cp"
    echo "$hash" > "$cp.sha256"
    log "$dir: classpath resolved in $(( $(now) - t0 )) s"
    echo "$cp"
}

# run engines/probe/Probe.java (cql|bolt) against PORT until DEADLINE_S, watching PID
run_probe() {
    local kind="$1" port="$2" secs="$3" pid="${4:-}"
    local cp java
    cp="$(classpath_file probe)" || return 1
    java="$(java_bin)" || return 1
    "$java" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
        -cp "$(cat "$cp")" "$ENGINES_HOME/probe/Probe.java" "$kind" "$ENGINES_HOST" "$port" "$secs" ${pid:+"$pid"}
}

# ---------------------------------------------------------------- engines
# shellcheck source=postgres.sh
source "$ENGINES_HOME/postgres.sh"
# shellcheck source=redis.sh
source "$ENGINES_HOME/redis.sh"
# shellcheck source=cassandra/cassandra.sh
source "$ENGINES_HOME/cassandra/cassandra.sh"
# shellcheck source=neo4j/neo4j.sh
source "$ENGINES_HOME/neo4j/neo4j.sh"
# shellcheck source=opensearch/opensearch.sh
source "$ENGINES_HOME/opensearch/opensearch.sh"

# Each engine file defines:
#   <e>_start             prepare (install / config / classpath) and spawn; pid file written
#   <e>_query  SECS PID   run the engine's real query until it answers (0) or SECS pass / PID dies
#   <e>_stop_signal       signal for a graceful stop (default TERM)

# ---------------------------------------------------------------- up / status / down
engine_up() {
    local name="$1" port pid t0 left
    port="$(engine_port "$name")"
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    t0="$(now)"
    if pid="$(running_pid "$name")"; then
        # already running: a no-op when it answers
        log "$name: already running (pid $pid), checking it answers"
        if "${name}_query" "$ENGINES_TIMEOUT" "$pid"; then
            log "$name: up (pid $pid, port $port), nothing to do"
            return 0
        fi
        log "$name: running but not answering within ${ENGINES_TIMEOUT}s"
        tail_log "$name"
        return 1
    fi
    if port_open "$port"; then
        log "$name: port $ENGINES_HOST:$port is already taken by another process (not started from $ENGINES_DIR)"
        log "$name: stop it or choose another port ($(port_var "$name")=...)"
        return 1
    fi
    log "$name: starting on $ENGINES_HOST:$port (log $(engine_log "$name"))"
    if ! "${name}_start"; then
        log "$name: failed to start"
        tail_log "$name"
        return 1
    fi
    pid="$(cat "$(pid_file "$name")" 2>/dev/null || true)"
    # wait for the TCP port first (cheap), then for the real query. The deadline
    # starts once the server is spawned: apt / Maven downloads don't count.
    local deadline=$(( $(now) + ENGINES_TIMEOUT ))
    while ! port_open "$port"; do
        if ! pid_is_engine "$name" "$pid"; then
            log "$name: process $pid exited during start-up"
            tail_log "$name"
            return 1
        fi
        if (( $(now) >= deadline )); then
            log "$name: port $port not open after ${ENGINES_TIMEOUT}s"
            tail_log "$name"
            engine_down "$name" >/dev/null 2>&1 || true
            return 1
        fi
        sleep 0.5
    done
    left=$(( deadline - $(now) )); (( left < 5 )) && left=5
    if ! "${name}_query" "$left" "$pid"; then
        log "$name: did not answer its query within ${ENGINES_TIMEOUT}s"
        tail_log "$name"
        engine_down "$name" >/dev/null 2>&1 || true
        return 1
    fi
    log "$name: up in $(( $(now) - t0 )) s (pid $pid, port $port)"
}

port_var() {
    case "$1" in
        postgres) echo PG_PORT ;;
        redis) echo REDIS_PORT ;;
        cassandra) echo CASSANDRA_PORT ;;
        neo4j) echo NEO4J_BOLT_PORT ;;
        opensearch) echo OPENSEARCH_PORT ;;
    esac
}

# one line: NAME up|down|starting port=P pid=PID
engine_status() {
    local name="$1" port pid state
    port="$(engine_port "$name")"
    if pid="$(running_pid "$name")"; then
        if port_open "$port"; then state=up; else state=starting; fi
    else
        pid="-"
        if port_open "$port"; then state="down(port-taken-by-other)"; else state=down; fi
    fi
    printf '%-11s %-9s port=%-5s pid=%s\n' "$name" "$state" "$port" "$pid"
    [[ "$state" == up ]]
}

engine_down() {
    local name="$1" port pid sig t0
    port="$(engine_port "$name")"
    if ! pid="$(running_pid "$name")"; then
        log "$name: not running"
        rm -f "$(pid_file "$name")"
        return 0
    fi
    sig="TERM"
    if declare -F "${name}_stop_signal" >/dev/null; then sig="$("${name}_stop_signal")"; fi
    t0="$(now)"
    log "$name: stopping pid $pid (SIG$sig)"
    kill -s "$sig" "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && pid_is_engine "$name" "$pid"; do
        if (( $(now) - t0 >= ENGINES_STOP_TIMEOUT )); then
            log "$name: still alive after ${ENGINES_STOP_TIMEOUT}s, SIGKILL to its process group"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    # wait until the port is closed
    local t1
    t1="$(now)"
    while port_open "$port"; do
        if (( $(now) - t1 >= ENGINES_STOP_TIMEOUT )); then
            log "$name: port $port still open ${ENGINES_STOP_TIMEOUT}s after the process ended"
            return 1
        fi
        sleep 0.2
    done
    rm -f "$(pid_file "$name")"
    log "$name: stopped in $(( $(now) - t0 )) s"
}
