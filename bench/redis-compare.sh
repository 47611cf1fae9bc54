#!/usr/bin/env bash
# paxkv's Redis port next to redis-server on this machine, measured by redis-benchmark: a
# 3-node paxkv cluster (fsync on every commit) and redis-server twice, with appendfsync always
# (fsync before replying, like paxkv) and appendfsync everysec (Redis's default durability:
# up to a second of acknowledged writes lost on a crash). One server runs at a time; the data of
# all is in one directory, so on one disk.
#
#   bench/redis-compare.sh                       # about a minute or two
#   REQUESTS=20000 PIPELINES=16 bench/redis-compare.sh
#   TARGETS=always,everysec bench/redis-compare.sh   # Redis only
#
# Settings (environment): REQUESTS (100000 per test with a pipeline), REQUESTS_P1 (20000 per
# test without one), CLIENTS (50 connections), KEYSPACE (100000 random keys, redis-benchmark
# -r), TESTS (set,get,incr,mset), PIPELINES (1 16: the -P depths), VIA (leader, or follower:
# which paxkv node redis-benchmark talks to), TARGETS
# (paxkv,always,everysec), KV_SERVER (target/release/kv-server: build it first with
# `cargo build --release --bin kv-server`), WORK (the directory for data and results; default a
# new one under /var/tmp, not /tmp, which may be in memory; KEEP=1 keeps it).
# Results: a Markdown table on standard output and in $WORK/results.md; the raw CSV of every
# run in $WORK/results/.
set -euo pipefail

REQUESTS=${REQUESTS:-100000}
REQUESTS_P1=${REQUESTS_P1:-20000}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
TESTS=${TESTS:-set,get,incr,mset}
PIPELINES=${PIPELINES:-1 16}
TARGETS=${TARGETS:-paxkv,always,everysec}
KEEP=${KEEP:-0}

cd "$(dirname "$0")/.."
KV_SERVER=${KV_SERVER:-$(pwd)/target/release/kv-server}

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'redis-compare.sh: %s\n' "$*" >&2; exit 1; }
want() { [[ ",$TARGETS," == *",$1,"* ]]; }

# ---------------------------------------------------------------- tools
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo > /dev/null; then sudo "$@"; else die "need root (or sudo) to run: $*"; fi; }
if ! command -v redis-server > /dev/null || ! command -v redis-benchmark > /dev/null || ! command -v redis-cli > /dev/null; then
    command -v apt-get > /dev/null || die "redis-server, redis-cli and redis-benchmark are needed: install Redis yourself"
    log "installing redis-server and redis-tools (Debian packages)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server redis-tools > /dev/null
fi
command -v python3 > /dev/null || die "python3 is needed to build the table"
if want paxkv; then
    [ -x "$KV_SERVER" ] || die "no kv-server at $KV_SERVER: build it (cargo build --release --bin kv-server) or set KV_SERVER"
    "$KV_SERVER" --help | grep -q -- '--resp-addr' ||
        die "$KV_SERVER has no --resp-addr flag, so it serves no Redis protocol; build a newer one, or measure Redis alone with TARGETS=always,everysec"
fi

# ---------------------------------------------------------------- processes
WORK=${WORK:-$(mktemp -d /var/tmp/paxkv-redis-compare.XXXXXX)}
RESULTS="$WORK/results"
mkdir -p "$RESULTS" "$WORK/pids"

# Every process started here is stopped on exit, whatever happens.
stop_pid_file() {
    local file=$1 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    kill -TERM "$pid" 2> /dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    rm -f "$file"
}
stop_all() { local file; for file in "$WORK"/pids/*; do stop_pid_file "$file"; done; }
cleanup() {
    stop_all
    if [ "$KEEP" != 1 ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free ports below the range Linux hands out for outgoing connections, checked on both
# loopback addresses.
free_ports() { # count
    python3 - "$1" << 'EOF'
import random, socket, sys
found = []
while len(found) < int(sys.argv[1]):
    port = random.randrange(20000, 32000)
    if port in found:
        continue
    try:
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(family) as probe:
                probe.bind((host, port))
    except OSError:
        continue
    found.append(port)
print(" ".join(map(str, found)))
EOF
}

# Polls until `redis-cli -p PORT ARGS...` prints OK or PONG, for at most 60 s.
wait_answer() { # what port args...
    local what=$1 port=$2 deadline=$((SECONDS + 60))
    shift 2
    until redis-cli -h 127.0.0.1 -p "$port" "$@" 2> /dev/null | grep -qxE 'OK|PONG'; do
        [ $SECONDS -lt $deadline ] || die "$what did not answer within 60 s; logs in $WORK"
        for file in "$WORK"/pids/*; do
            kill -0 "$(cat "$file")" 2> /dev/null || die "$(basename "$file") exited; see its log in $WORK"
        done
        sleep 0.1
    done
}

start_paxkv() { # sets PORT (node 1's RESP port)
    local ports peers id
    read -r -a ports < <(free_ports 9)
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/cluster-secret"
    peers="1=[::1]:${ports[3]},2=[::1]:${ports[4]},3=[::1]:${ports[5]}"
    for id in 1 2 3; do
        mkdir -p "$WORK/paxkv"
        "$KV_SERVER" --id "$id" --client-addr "[::1]:${ports[$((id - 1))]}" \
            --peer-addr "[::1]:${ports[$((id + 2))]}" --peers "$peers" --data-dir "$WORK/paxkv/node-$id" \
            --cluster-secret-file "$WORK/cluster-secret" \
            --resp-addr "127.0.0.1:${ports[$((id + 5))]}" --resp-allow-unauthenticated \
            > "$WORK/paxkv/node-$id.log" 2>&1 &
        echo $! > "$WORK/pids/paxkv-node-$id"
    done
    # Any node serves every command (a follower forwards writes to the leader): a write through
    # node 1 succeeds once a leader is elected.
    wait_answer "paxkv (a write through node 1)" "${ports[6]}" SET redis-compare-ready 1
    for id in 2 3; do wait_answer "paxkv node $id" "${ports[$((id + 5))]}" PING; done
    # The leader's port unless VIA=follower: a follower passes every write and linearizable
    # read on to the leader (one more hop), which is what a client that knows one node gets.
    local role wanted=master
    [ "${VIA:-leader}" = follower ] && wanted=slave
    PORT=
    for id in 1 2 3; do
        role=$(redis-cli -h 127.0.0.1 -p "${ports[$((id + 5))]}" INFO replication | tr -d '\r' | sed -n 's/^role://p')
        if [ "$role" = "$wanted" ]; then PORT=${ports[$((id + 5))]}; log "paxkv: measuring through node $id ($role)"; break; fi
    done
    [ -n "$PORT" ] || die "no paxkv node reports role:$wanted"
}

start_redis() { # fsync-policy; sets PORT
    local ports
    read -r -a ports < <(free_ports 1)
    mkdir -p "$WORK/redis-$1"
    redis-server --port "${ports[0]}" --bind 127.0.0.1 --save "" --appendonly yes \
        --appendfsync "$1" --dir "$WORK/redis-$1" --logfile "$WORK/redis-$1/redis.log" &
    echo $! > "$WORK/pids/redis-$1"
    wait_answer "redis-server (appendfsync $1)" "${ports[0]}" PING
    PORT=${ports[0]}
}

# ---------------------------------------------------------------- runs
run_target() { # name
    local name=$1 depth requests
    case "$name" in
        paxkv) start_paxkv ;;
        always | everysec) start_redis "$name" ;;
        *) die "unknown target $name (TARGETS takes paxkv, always, everysec)" ;;
    esac
    for depth in $PIPELINES; do
        requests=$REQUESTS
        [ "$depth" = 1 ] && requests=$REQUESTS_P1
        for test in ${TESTS//,/ }; do
            # One run per test: redis-benchmark stops at the first error reply, and a failed
            # test should cost only its own cell of the table.
            local out="$RESULTS/$name-P$depth-$test"
            log "$name: redis-benchmark -c $CLIENTS -n $requests -P $depth -r $KEYSPACE -t $test"
            if ! redis-benchmark -h 127.0.0.1 -p "$PORT" -c "$CLIENTS" -n "$requests" -P "$depth" \
                -r "$KEYSPACE" -t "$test" -q --csv > "$out.csv" 2> "$out.err" ||
                [ "$(wc -l < "$out.csv")" -le 1 ]; then
                tr '\r' '\n' < "$out.err" | grep -v '^ *$' | tail -1 > "$out.failed"
                log "$name, $test, -P $depth failed: $(cat "$out.failed")"
            fi
        done
    done
    stop_all
}

IFS=, read -r -a target_list <<< "$TARGETS"
for name in "${target_list[@]}"; do run_target "$name"; done

# ---------------------------------------------------------------- table
python3 - "$RESULTS" "$TARGETS" "$CLIENTS" "$TESTS" > "$WORK/results.md" << 'EOF'
import csv, pathlib, sys

results, targets, clients = pathlib.Path(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
titles = {"paxkv": "paxkv", "always": "redis (always)", "everysec": "redis (everysec)"}
tests = sys.argv[4].split(",")
runs = {}  # (test, depth) -> target -> row, or the error that stopped the run
failures = []
for path in sorted(results.glob("*-P*-*.csv")):
    target, rest = path.stem.rsplit("-P", 1)
    depth, test = rest.split("-", 1)
    failed = path.with_suffix(".failed")
    if failed.exists():
        runs.setdefault((test, int(depth)), {})[target] = None
        failures.append(f"{titles[target]}, {test.upper()}, -P {depth}: {failed.read_text().strip()}")
    for row in csv.DictReader(path.open()):
        runs.setdefault((test, int(depth)), {})[target] = row

def name(test, rows):
    for row in rows.values():
        if row:
            return row["test"]  # as redis-benchmark calls it: MSET (10 keys)
    return test.upper()

def rps(row):
    return f"{float(row['rps']):,.0f}" if row else "failed"

def latency(row):
    if not row or "p50_latency_ms" not in row:
        return "-"
    return f"{float(row['p50_latency_ms']):.2f} / {float(row['p99_latency_ms']):.2f}"

def ratio(a, b):
    return f"{float(a['rps']) / float(b['rps']):.2f}" if a and b and float(b["rps"]) else "-"

header = ["test", "pipeline"] + [f"{titles[t]} req/s" for t in targets]
ratios = [t for t in ("always", "everysec") if "paxkv" in targets and t in targets]
header += [f"paxkv / {titles[t]}" for t in ratios]
header += [f"{titles[t]} p50 / p99 ms" for t in targets]
print(f"redis-benchmark, {clients} clients, random keys; latencies in milliseconds.\n")
print("| " + " | ".join(header) + " |")
print("|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|")
for (test, depth), rows in sorted(runs.items(), key=lambda item: (item[0][1], tests.index(item[0][0]))):
    cells = [name(test, rows), f"-P {depth}"]
    cells += [rps(rows.get(t)) for t in targets]
    cells += [ratio(rows.get("paxkv"), rows.get(t)) for t in ratios]
    cells += [latency(rows.get(t)) for t in targets]
    print("| " + " | ".join(cells) + " |")
if failures:
    print("\nRuns stopped by an error reply (redis-benchmark stops at the first):\n")
    for failure in failures:
        print(f"- {failure}")
EOF
cat "$WORK/results.md"
