#!/usr/bin/env bash
# Several hosts on one machine: a redis-server on loopback, two agents (hosts gpu-1 and
# gpu-2, each with its own configuration) and two replicas serving every process of both.
#
#   bash examples/cluster/run.sh          # then open http://127.0.0.1:8081/ or :8082/
#
# Ctrl-C (or SIGTERM) stops everything this script started, by process group: the agents
# first (they stop their children), then the replicas, then redis-server. Nothing else is
# touched. One of them exiting meanwhile is reported and the others keep running. Settings
# from the environment:
#   REDIS_PORT (6390)  REPLICA_PORTS ("8081 8082")  KEEP=1 keeps the data and logs folder
#   LOGCAST: the command that runs logcast (default `logcast`, else `python3 -m logcast`)
set -euo pipefail
set -m  # job control: every background job gets a process group of its own (pgid = pid)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
redis_port="${REDIS_PORT:-6390}"
read -r -a replica_ports <<<"${REPLICA_PORTS:-8081 8082}"
redis_url="redis://127.0.0.1:${redis_port}/0"

if [[ -n "${LOGCAST:-}" ]]; then
    read -r -a logcast <<<"$LOGCAST"
elif command -v logcast >/dev/null; then
    logcast=(logcast)
else
    export PYTHONPATH="$here/../../src${PYTHONPATH:+:$PYTHONPATH}"
    logcast=(python3 -m logcast)
fi
command -v redis-server >/dev/null || { echo "run.sh: redis-server is not installed" >&2; exit 1; }
command -v curl >/dev/null || { echo "run.sh: curl is needed" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/logcast-cluster.XXXXXX")"
mkdir -p "$work/redis"
pids=()   # every process group this script started, in start order
names=()
stopping=0
sleeper=

# The descendants of a pid (an agent's children run in process groups of their own).
descendants() {
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

# The pids of $1 that still run (a zombie does not count); false if none.
alive() {
    local pid state found=1
    for pid in $1; do
        state=$(ps -o stat= -p "$pid" 2>/dev/null) || continue
        [[ $state == Z* ]] && continue
        echo "$pid"
        found=0
    done
    return $found
}

# stop_groups GRACE PID...: TERM to each process group at once, up to GRACE s for their
# leaders to exit, then KILL to any group left.
stop_groups() {
    local grace=$1 pid i
    shift
    for pid in "$@"; do kill -TERM -- "-$pid" 2>/dev/null; done
    for ((i = 0; i < grace * 10; i++)); do
        alive "$*" >/dev/null || break
        sleep 0.1
    done
    for pid in "$@"; do
        kill -KILL -- "-$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
}

cleanup() {
    local code=$? i pid agents=() replicas=() redis=() left
    ((stopping)) && return
    stopping=1
    set +e +m  # stop everything whatever fails; no job notices ("Terminated")
    trap - INT TERM EXIT
    [[ -n ${sleeper:-} ]] && kill "$sleeper" 2>/dev/null
    echo >&2
    echo "run.sh: stopping" >&2
    for i in "${!pids[@]}"; do
        case ${names[i]} in
            agent-*) agents+=("${pids[i]}") ;;
            replica-*) replicas+=("${pids[i]}") ;;
            *) redis+=("${pids[i]}") ;;
        esac
    done
    # the agents first: each stops its children (stop_timeout, 10 s by default) and writes
    # what it still holds to Redis; their children run in process groups of their own
    left=$(for pid in "${agents[@]}"; do descendants "$pid"; done)
    stop_groups 15 "${agents[@]}"
    for ((i = 0; i < 30; i++)); do  # a child dies with its agent (or its orphan guard)
        alive "$left" >/dev/null || break
        sleep 0.1
    done
    for pid in $(alive "$left"); do
        echo "run.sh: an agent left pid $pid running: killing it" >&2
        kill -KILL "$pid" 2>/dev/null
    done
    # then the replicas, then redis-server
    stop_groups 10 "${replicas[@]}"
    stop_groups 10 "${redis[@]}"
    if [[ "${KEEP:-}" == 1 ]]; then
        echo "run.sh: data and logs kept in $work" >&2
    else
        rm -rf "$work"
    fi
    echo "run.sh: stopped ${#pids[@]} process group(s): ${pids[*]:-none}" >&2
    exit "$code"
}
trap 'exit 130' INT
trap 'exit 143' TERM
trap cleanup EXIT

# start NAME LOGFILE CMD...: in the background, its own process group, output to LOGFILE
start() {
    local name=$1 log=$2
    shift 2
    "$@" </dev/null >"$log" 2>&1 &
    pids+=("$!")
    names+=("$name")
}

# wait_up NAME PID SECONDS CHECK...: until CHECK succeeds; fail if PID exits first
wait_up() {
    local name=$1 pid=$2 seconds=$3 i
    shift 3
    for ((i = 0; i < seconds * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: $name exited while starting; its output:" >&2
            tail -n 20 "$work/$name.log" >&2
            exit 1
        fi
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "run.sh: $name not up after $seconds s; its output:" >&2
    tail -n 20 "$work/$name.log" >&2
    exit 1
}

# never share someone else's Redis or port by accident
if redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
    echo "run.sh: something already answers on port $redis_port: set REDIS_PORT" >&2
    exit 1
fi
for port in "${replica_ports[@]}"; do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
        echo "run.sh: something already answers on port $port: set REPLICA_PORTS" >&2
        exit 1
    fi
done

start redis "$work/redis.log" redis-server --port "$redis_port" --bind 127.0.0.1 \
    --protected-mode yes --dir "$work/redis" --save "" --appendonly yes
wait_up redis "${pids[-1]}" 10 redis-cli -p "$redis_port" ping

for host in gpu-1 gpu-2; do
    start "agent-$host" "$work/agent-$host.log" \
        "${logcast[@]}" agent -c "$here/$host.toml" --redis "$redis_url" --host-id "$host"
done
for port in "${replica_ports[@]}"; do
    start "replica-$port" "$work/replica-$port.log" \
        "${logcast[@]}" serve --redis "$redis_url" -c "$here/replica.toml" --host 127.0.0.1 --port "$port"
done
for i in "${!names[@]}"; do
    case ${names[i]} in
        replica-*) wait_up "${names[i]}" "${pids[i]}" 30 curl -sf "http://127.0.0.1:${names[i]#replica-}/healthz" ;;
    esac
done
# both agents alive, as the first replica sees them
first="http://127.0.0.1:${replica_ports[0]}"
for i in "${!names[@]}"; do
    case ${names[i]} in
        agent-*)
            wait_up "${names[i]}" "${pids[i]}" 30 \
                bash -c "curl -sf '$first/api/hosts' | grep -q '\"host\":\"${names[i]#agent-}\",\"alive\":true'"
            ;;
    esac
done

echo
echo "logcast cluster on this machine (Redis at $redis_url, data and logs in $work):"
echo "  agents:   gpu-1 (qwen3, worker), gpu-2 (llama)"
for port in "${replica_ports[@]}"; do
    echo "  replica:  http://127.0.0.1:$port/   (dashboard; API: /api/processes, /api/hosts)"
done
echo "  logs:     tail -f $work/*.log"
echo "Ctrl-C stops everything."

# Until Ctrl-C/TERM. One of them exiting (kill an agent to see its host lost, a replica to
# see a client resume on the other) is reported; the others keep running.
set +e
reported=()
while :; do
    sleep 1 &
    sleeper=$!
    wait "$sleeper"  # a trap runs at once, not after the sleep
    running=0
    for i in "${!pids[@]}"; do
        if alive "${pids[i]}" >/dev/null; then
            running=$((running + 1))
        elif [[ -z ${reported[i]:-} ]]; then
            reported[i]=1
            wait "${pids[i]}" 2>/dev/null
            echo "run.sh: ${names[i]} exited (status $?); the others keep running, Ctrl-C stops them." >&2
            echo "run.sh: its last output:" >&2
            tail -n 5 "$work/${names[i]}.log" >&2
        fi
    done
    ((running)) || exit 1
done
