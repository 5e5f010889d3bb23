#!/usr/bin/env bash
# A Redis Cluster and independent Redlock masters on fixed 127.0.0.1 ports, for development
# and the compose smoke test (tests/cluster/test_compose_smoke.py):
#
#   scripts/cluster.sh up       # start; returns once cluster_state:ok on every node
#   scripts/cluster.sh status   # each port's role, then the cluster state (exit 1 unless ok)
#   scripts/cluster.sh down     # stop what `up` started
#
# Ports: 7000-7005 cluster (3 masters + 3 replicas, bus 17000-17005), 7100-7104 Redlock.
# With a Docker engine that answers and docker-compose (or `docker compose`) it runs
# docker-compose.cluster.yml, image ${FLEETCACHE_REDIS_IMAGE:-redis:7.2}; where no registry
# is reachable use FLEETCACHE_REDIS_IMAGE=$(.venv/bin/python -m fleetcache.testing.image).
# Otherwise it starts local redis-server processes on the same ports (the cluster made by
# `redis-cli --cluster create`, or by `python -m fleetcache.testing.cluster` without
# redis-cli), stopped by PID on `down`; PID files, logs and node configs live in
# ${XDG_RUNTIME_DIR:-/tmp}/fleetcache-cluster/. FLEETCACHE_CLUSTER_MODE=compose|local forces
# a way; FLEETCACHE_CLUSTER_TIMEOUT (seconds, default 120) bounds the wait of `up`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER_PORTS=(7000 7001 7002 7003 7004 7005)
REDLOCK_PORTS=(7100 7101 7102 7103 7104)
NODE_TIMEOUT_MS=3000
STATE_DIR="${XDG_RUNTIME_DIR:-/tmp}/fleetcache-cluster"
COMPOSE_FILE=docker-compose.cluster.yml
PROJECT=fleetcache-cluster
UP_TIMEOUT="${FLEETCACHE_CLUSTER_TIMEOUT:-120}"

say() { echo "[cluster] $*" >&2; }

# -- helpers ------------------------------------------------------------------------------

python_bin() { if [ -x .venv/bin/python ]; then echo .venv/bin/python; else echo python3; fi; }
pycluster() {
    PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$(python_bin)" -m fleetcache.testing.cluster \
        --state-dir "$STATE_DIR" --node-timeout-ms "$NODE_TIMEOUT_MS" "$@"
}
has_cli() { command -v redis-cli >/dev/null 2>&1; }
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
# Both print nothing (and succeed) when the node does not answer.
cli() { timeout 5 redis-cli -h 127.0.0.1 -p "$1" "${@:2}" 2>/dev/null | tr -d '\r' || true; }
field() { cli "$1" info "$2" | sed -n "s/^$3://p"; } # field PORT SECTION NAME

engine_answers() { command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; }
compose_cmd() {
    if docker compose version >/dev/null 2>&1; then
        echo "docker compose"
    elif command -v docker-compose >/dev/null 2>&1; then
        echo docker-compose
    fi
}
compose() {
    local cmd
    cmd="$(compose_cmd)"
    [ -n "$cmd" ] || { say "error: neither docker-compose nor 'docker compose' is installed"; return 1; }
    $cmd -p "$PROJECT" -f "$COMPOSE_FILE" "$@"
}

choose_mode() {
    case "${FLEETCACHE_CLUSTER_MODE:-auto}" in
        compose | local) echo "$FLEETCACHE_CLUSTER_MODE" ;;
        auto) if engine_answers && [ -n "$(compose_cmd)" ]; then echo compose; else echo local; fi ;;
        *)
            say "error: FLEETCACHE_CLUSTER_MODE must be compose, local or auto"
            return 2
            ;;
    esac
}

# -- health -------------------------------------------------------------------------------

cluster_problem() {
    # Empty output when every node says cluster_state:ok and every Redlock master answers.
    local p state
    for p in "${CLUSTER_PORTS[@]}"; do
        state="$(cli "$p" cluster info | sed -n 's/^cluster_state://p')"
        [ "$state" = ok ] || { echo "127.0.0.1:$p cluster_state:${state:-down}"; return; }
    done
    for p in "${REDLOCK_PORTS[@]}"; do
        [ "$(cli "$p" ping)" = PONG ] || { echo "127.0.0.1:$p does not answer"; return; }
    done
}

wait_ok() {
    # Until the cluster is ok (redis-cli, else the Python helper's stricter check).
    local deadline=$((SECONDS + UP_TIMEOUT)) problem
    if ! has_cli; then
        pycluster status --wait "$UP_TIMEOUT" >/dev/null
        return
    fi
    while problem="$(cluster_problem)" && [ -n "$problem" ]; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "error: not ok after ${UP_TIMEOUT}s: $problem"
            return 1
        fi
        sleep 0.5
    done
}

describe() {
    local p=$1 role kind=standalone
    role="$(field "$p" replication role)"
    if [ -z "$role" ]; then
        echo "127.0.0.1:$p down"
        return
    fi
    [ "$(field "$p" cluster cluster_enabled)" = 1 ] && kind=cluster
    if [ "$role" = slave ]; then
        echo "127.0.0.1:$p replica of $(field "$p" replication master_host):$(field "$p" \
            replication master_port) ($kind, link $(field "$p" replication master_link_status))"
    else
        echo "127.0.0.1:$p master ($kind)"
    fi
}

status() {
    local p problem
    if ! has_cli; then
        pycluster status
        return
    fi
    for p in "${CLUSTER_PORTS[@]}" "${REDLOCK_PORTS[@]}"; do describe "$p"; done
    problem="$(cluster_problem)"
    if [ -z "$problem" ]; then
        echo "cluster_state: ok"
    else
        echo "cluster not ok: $problem"
        return 1
    fi
}

# -- local processes ----------------------------------------------------------------------

start_server() {
    local p=$1
    shift
    redis-server --port "$p" --bind 127.0.0.1 --protected-mode no --save '' --appendonly no \
        "$@" --dir "$STATE_DIR" --daemonize yes \
        --pidfile "$STATE_DIR/redis-$p.pid" --logfile "$STATE_DIR/redis-$p.log"
}

local_up_with_cli() {
    local p deadline addresses=()
    for p in "${CLUSTER_PORTS[@]}"; do
        start_server "$p" --cluster-enabled yes --cluster-config-file "nodes-$p.conf" \
            --cluster-node-timeout "$NODE_TIMEOUT_MS" --cluster-announce-ip 127.0.0.1 \
            --repl-diskless-sync yes --repl-diskless-sync-delay 0 --repl-diskless-load on-empty-db
        addresses+=("127.0.0.1:$p")
    done
    for p in "${REDLOCK_PORTS[@]}"; do start_server "$p"; done
    deadline=$((SECONDS + 30))
    for p in "${CLUSTER_PORTS[@]}" "${REDLOCK_PORTS[@]}"; do
        until [ "$(cli "$p" ping)" = PONG ]; do
            [ "$SECONDS" -lt "$deadline" ] || { say "error: 127.0.0.1:$p did not start"; return 1; }
            sleep 0.05
        done
    done
    redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes \
        >"$STATE_DIR/create.log" 2>&1 || { cat "$STATE_DIR/create.log" >&2; return 1; }
}

local_down() {
    # Stop every server with a PID file here: TERM, KILL after 10 s; only PIDs that are
    # still a redis-server on the recorded port are signalled.
    local f p pid i cmd
    for f in "$STATE_DIR"/redis-*.pid; do
        [ -e "$f" ] || continue
        p="${f##*/redis-}"
        p="${p%.pid}"
        pid="$(cat "$f" 2>/dev/null || true)"
        cmd="$(tr '\0' ' ' <"/proc/${pid:-0}/cmdline" 2>/dev/null || true) "
        if [[ "$cmd" == *redis-* && ("$cmd" == *":$p "* || "$cmd" == *"--port $p "*) ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            for i in $(seq 1 100); do
                port_open "$p" || break
                [ "$i" -lt 100 ] || kill -KILL "$pid" 2>/dev/null || true
                sleep 0.1
            done
        fi
        rm -f "$f"
    done
    rm -f "$STATE_DIR"/nodes-*.conf
}

local_up() {
    local p busy=()
    for p in "${CLUSTER_PORTS[@]}" "${REDLOCK_PORTS[@]}"; do port_open "$p" && busy+=("$p"); done
    for p in "${CLUSTER_PORTS[@]}"; do port_open $((p + 10000)) && busy+=($((p + 10000))); done
    if [ "${#busy[@]}" -gt 0 ]; then
        say "error: ports in use: ${busy[*]} (scripts/cluster.sh down first?)"
        return 1
    fi
    local_down # leftovers of a crashed run
    rm -f "$STATE_DIR"/redis-*.log "$STATE_DIR"/*.rdb "$STATE_DIR/create.log"
    if has_cli && command -v redis-server >/dev/null 2>&1; then
        say "local redis-server processes; cluster made by redis-cli --cluster create"
        local_up_with_cli || { local_down; return 1; }
    else
        say "local redis-server processes; cluster made by python -m fleetcache.testing.cluster"
        pycluster up --ports-from "${CLUSTER_PORTS[0]}" --redlock-ports-from "${REDLOCK_PORTS[0]}" \
            --redlock-masters "${#REDLOCK_PORTS[@]}" >&2 || { local_down; return 1; }
    fi
    wait_ok || { local_down; return 1; }
}

# -- commands -----------------------------------------------------------------------------

is_up() {
    if has_cli; then
        [ -z "$(cluster_problem)" ]
    else
        pycluster status >/dev/null 2>&1
    fi
}

up() {
    local mode start=$SECONDS
    if is_up; then
        say "already up"
        status
        return
    fi
    mode="$(choose_mode)"
    mkdir -p "$STATE_DIR"
    echo "$mode" >"$STATE_DIR/mode"
    if [ "$mode" = compose ]; then
        say "docker-compose -f $COMPOSE_FILE (image ${FLEETCACHE_REDIS_IMAGE:-redis:7.2})"
        compose up -d
        if ! wait_ok; then
            compose logs --tail=30 >&2 || true
            compose down -v --remove-orphans -t 5 >&2 || true
            return 1
        fi
    else
        local_up
    fi
    say "up ($mode) in $((SECONDS - start))s"
    status
}

down() {
    local mode=""
    [ -f "$STATE_DIR/mode" ] && mode="$(cat "$STATE_DIR/mode")"
    if [ "$mode" = compose ] || { [ -z "$mode" ] && engine_answers && [ -n "$(compose_cmd)" ]; }; then
        compose down -v --remove-orphans -t 5 || say "warning: docker-compose down failed"
    fi
    local_down
    rm -f "$STATE_DIR/mode"
    say "down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit 2
        ;;
esac
