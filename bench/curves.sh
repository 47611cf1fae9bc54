#!/usr/bin/env bash
# Curves of paxkv next to etcd on this machine: throughput and p99 latency as one thing changes
# (requests in flight, value size, key count, cluster size, read share), and the latency of a
# single request next to what the machine allows at best. Each point is measured on paxkv and
# then on etcd, both on loopback with their data in one directory (so on one disk) and fsync on
# every commit, with the clusters of bench/compare.sh (bench/cluster.sh, shared). One PNG per
# sweep, titled with the date and the machine.
#
#   bench/curves.sh                  # every sweep: about 13 minutes on 2 cores (build not counted)
#   QUICK=1 bench/curves.sh          # 1 s points, the two smallest values of each axis: about 3 minutes
#   SWEEPS=inflight,latency DURATION=10s bench/curves.sh
#   KEYCOUNTS=10000,100000,1000000,10000000 SWEEPS=keys bench/curves.sh   # 10^7 keys: 30-40 minutes more
# (Estimated from QUICK runs on 2 cores: 72 points of 1 s warm-up and 5 s each make 8 minutes,
# 17 cluster starts 1.5, writing the keys 3: 10^6 keys take paxkv about 40 s and etcd about 2
# minutes, 10^7 ten times that or more.)
#
# Sweeps (SWEEPS: a comma-separated list, default inflight,value,keys,nodes,reads,latency):
#   inflight  put and get with 1, 4, 16, 64, 256, 1024 requests in flight (INFLIGHT)
#   value     put with values of 16 B, 256 B, 4 KiB, 64 KiB, 256 KiB (VALUE_SIZES, bytes), 16 in
#             flight; new clusters for every size, so big values do not pile up
#   keys      put and get at 64 in flight over 10^4, 10^5, 10^6 keys (KEYCOUNTS), written first
#             with --workload load; new clusters for every count, one store's at a time (10^7 keys
#             need about 18 GB of memory for etcd's three members)
#   nodes     put and get at 64 in flight on clusters of 3, 5, 7 nodes (NODE_COUNTS)
#   reads     the mixed workload at 64 in flight with 0, 50, 90, 99, 100 % gets (READ_SHARES)
#   latency   put and get with 1 request in flight, next to the floor measured here: the median
#             of FLOOR_SAMPLES (1000) fdatasyncs of a small append to a file in $WORK, plus the
#             median TCP round trip over ::1 (a get's floor is the round trip alone)
# Every sweep but keys runs over KEYS keys (10000) written first; each sweep starts new clusters.
#
# Settings (environment): SWEEPS, DURATION (5s measured per point), WARMUP (1s before each),
# QUICK (1: DURATION 1s and WARMUP 500ms unless given, and only the two smallest values of each
# axis), INFLIGHT, VALUE_SIZES, KEYCOUNTS, NODE_COUNTS, READ_SHARES, KEYS, CONNECTIONS (1),
# FLOOR_SAMPLES, OUTDIR (bench/curves), WORK (data and results; default a new directory under
# /var/tmp, not /tmp, which may be in memory; KEEP=1 keeps it).
# etcd runs as in compare.sh, with a backend quota of 8 GiB (its default of 2 GiB is too small
# for 10^7 keys; the quota is only a limit).
# Results: $WORK/results/SWEEP-WORKLOAD-VALUE-STORE.json (kv-bench --json), machine.json and
# floor.json, copied to $OUTDIR/results; one plot per sweep, $OUTDIR/SWEEP.png, drawn by
# bench/plot_curves.py with matplotlib from a venv this script makes in target/plot-venv. To draw
# them again: target/plot-venv/bin/python bench/plot_curves.py bench/curves/results bench/curves
# Any point that fails is listed at the end (and in results/failed.txt); the script then exits 1.
set -euo pipefail

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    DURATION=${DURATION:-1s}
    WARMUP=${WARMUP:-500ms}
fi
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
SWEEPS=${SWEEPS:-inflight,value,keys,nodes,reads,latency}
INFLIGHT=${INFLIGHT:-1,4,16,64,256,1024}
VALUE_SIZES=${VALUE_SIZES:-16,256,4096,65536,262144}
KEYCOUNTS=${KEYCOUNTS:-10000,100000,1000000}
NODE_COUNTS=${NODE_COUNTS:-3,5,7}
READ_SHARES=${READ_SHARES:-0,50,90,99,100}
KEYS=${KEYS:-10000}
CONNECTIONS=${CONNECTIONS:-1}
FLOOR_SAMPLES=${FLOOR_SAMPLES:-1000}
KEEP=${KEEP:-0}
want() { [[ ",$SWEEPS," == *",$1,"* ]]; }

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'curves.sh: %s\n' "$*" >&2; exit 1; }

for sweep in ${SWEEPS//,/ }; do
    case "$sweep" in inflight | value | keys | nodes | reads | latency) ;; *) die "unknown sweep $sweep" ;; esac
done

[ -z "${OUTDIR:-}" ] || OUTDIR=$(realpath -m "$OUTDIR")  # relative to where it was started
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUTDIR=${OUTDIR:-$ROOT/bench/curves}
WORK=${WORK:-$(mktemp -d /var/tmp/paxkv-curves.XXXXXX)}
RESULTS="$WORK/results"
mkdir -p "$RESULTS" "$OUTDIR"
VENV="$ROOT/target/plot-venv"
STARTED=$SECONDS

# An axis: its values in ascending order; with QUICK=1 the two smallest.
axis() { # comma-separated values
    tr ',' '\n' <<<"$1" | sort -n | { if [ "$QUICK" = 1 ]; then sed -n 1,2p; else cat; fi; } | paste -sd' '
}

# shellcheck source=bench/cluster.sh
source "$ROOT/bench/cluster.sh"
# The exit trap first, so that $WORK goes even when the build fails or is interrupted.
cluster_setup 3

# Whatever happens, what was measured is kept: partial results go to $OUTDIR/results-partial.
finish() {
    local status=$?
    if [ "$status" != 0 ] && compgen -G "$RESULTS/*-*.json" >/dev/null; then
        rm -rf "$OUTDIR/results-partial"
        cp -r "$RESULTS" "$OUTDIR/results-partial"
        log "stopped early ($status); what was measured is in $OUTDIR/results-partial"
    fi
    cleanup
}
trap finish EXIT

ensure_tools
command -v python3 >/dev/null || die "python3 is needed to measure the floor and draw the plots"

# matplotlib in a venv of our own, made before the measurements so a failure shows at once.
if ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    log "making a Python venv with matplotlib in $VENV"
    python3 -c 'import ensurepip' 2>/dev/null || install_debian python3-venv python3-venv
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q matplotlib
fi

build_binaries
ETCD_EXTRA_ARGS="--quota-backend-bytes=8589934592"

# The run's date, the machine and the settings, for the plots' titles.
python3 - "$RESULTS/machine.json" <<EOF
import datetime, json, os, platform, sys
cpu = "unknown CPU"
with open("/proc/cpuinfo") as f:
    for line in f:
        name, _, value = line.partition(":")
        if name.strip() in ("model name", "Model", "Hardware", "cpu model"):
            cpu = " ".join(value.split())
            break
memory_kib = 0
with open("/proc/meminfo") as f:
    for line in f:
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
json.dump({
    "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    "cpu": cpu,
    "cores": os.cpu_count(),
    "memory_gib": round(memory_kib / 2**20, 1),
    "kernel": platform.release(),
    "etcd": "$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')",
    "paxkv": "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)",
    "duration": "$DURATION",
    "warmup": "$WARMUP",
    "connections": $CONNECTIONS,
    "keys": $KEYS,
    "quick": "$QUICK" == "1",
}, open(sys.argv[1], "w"), indent=1)
EOF

# ---------------------------------------------------------------- running points
# New clusters of a size: whatever ran before is stopped and its data removed.
fresh() { # nodes store...
    local nodes=$1 store
    shift
    stop_cluster paxkv
    stop_cluster etcd
    rm -rf "$WORK/paxkv" "$WORK/etcd"
    set_nodes "$nodes"
    for store in "$@"; do
        log "starting a $nodes-node $store cluster"
        start_cluster "$store"
    done
}

# One measurement: kv-bench with ARGS, its JSON in $RESULTS/SWEEP-WORKLOAD-VALUE-STORE.json
# (--keys and --connections default to KEYS and CONNECTIONS). It runs in the background with
# its pid recorded, so an interrupt stops it at once. A failure is noted and the sweep goes on.
point() { # sweep value workload store args...
    local sweep=$1 value=$2 workload=$3 store=$4 pid status=0 defaults=()
    shift 4
    [[ " $* " == *" --keys "* ]] || defaults+=(--keys "$KEYS")
    [[ " $* " == *" --connections "* ]] || defaults+=(--connections "$CONNECTIONS")
    local json="$RESULTS/$sweep-$workload-$value-$store.json"
    bench "$store" --workload "$workload" "${defaults[@]}" --duration "$DURATION" --warmup "$WARMUP" \
        --no-preload --quiet --label "$sweep=$value" --json "$json" "$@" >/dev/null &
    pid=$!
    echo "$pid" >"$WORK/pids/kv-bench"
    wait "$pid" || status=$?
    rm -f "$WORK/pids/kv-bench"
    if [ "$status" != 0 ]; then
        rm -f "$json"
        echo "$sweep $value $workload $store: kv-bench exited with $status" >>"$RESULTS/failed.txt"
        log "$sweep $value: $workload on $store FAILED (kv-bench exited with $status)"
        return 0
    fi
    python3 - "$json" "$sweep $value: $workload on $store" <<'EOF' >&2
import json, sys
for run in json.load(open(sys.argv[1]))["runs"]:
    latency = run["latency_us"]
    errors = run["errors"] + run["misses"]
    print(f"== {sys.argv[2]}: {run['ops_per_sec']:,.0f} ops/s, p50 {latency['p50'] / 1000:.2f} ms,"
          f" p99 {latency['p99'] / 1000:.2f} ms" + (f", {errors} errors" if errors else "")
          + (f" ({run['keys']:,} keys in {run['seconds']:.1f} s)" if run["workload"] == "load" else ""))
EOF
}

# Writes the keys that the get workloads read (KEYS, or ARGS' --keys): every key once, 256 in
# flight over 4 connections. Its JSON is preload-load-TAG-STORE.json.
preload() { # tag store [args...]
    local tag=$1 store=$2
    shift 2
    point preload "$tag" load "$store" --concurrency 256 --connections 4 "$@"
}

# ---------------------------------------------------------------- the sweeps
if want inflight; then
    fresh 3 paxkv etcd
    for store in paxkv etcd; do preload inflight "$store"; done
    for inflight in $(axis "$INFLIGHT"); do
        for workload in put get; do
            for store in paxkv etcd; do
                point inflight "$inflight" "$workload" "$store" --concurrency "$inflight"
            done
        done
    done
fi

if want value; then
    for size in $(axis "$VALUE_SIZES"); do
        fresh 3 paxkv etcd
        for store in paxkv etcd; do
            point value "$size" put "$store" --concurrency 16 --value-size "$size"
        done
    done
fi

if want keys; then
    # One store's cluster at a time: two stores' worth of many keys may not fit in memory.
    for keys in $(axis "$KEYCOUNTS"); do
        for store in paxkv etcd; do
            fresh 3 "$store"
            preload "keys$keys" "$store" --keys "$keys"
            for workload in put get; do
                point keys "$keys" "$workload" "$store" --concurrency 64 --keys "$keys"
            done
        done
    done
fi

if want nodes; then
    for nodes in $(axis "$NODE_COUNTS"); do
        fresh "$nodes" paxkv etcd
        for store in paxkv etcd; do preload "nodes$nodes" "$store"; done
        for workload in put get; do
            for store in paxkv etcd; do
                point nodes "$nodes" "$workload" "$store" --concurrency 64
            done
        done
    done
fi

if want reads; then
    fresh 3 paxkv etcd
    for store in paxkv etcd; do preload reads "$store"; done
    for share in $(axis "$READ_SHARES"); do
        for store in paxkv etcd; do
            point reads "$share" mixed "$store" --concurrency 64 --read-share "$share"
        done
    done
fi

if want latency; then
    stop_cluster paxkv
    stop_cluster etcd
    samples=$FLOOR_SAMPLES
    [ "$QUICK" = 1 ] && samples=$((samples < 200 ? samples : 200))
    log "the floor: $samples fdatasyncs in $WORK, $samples round trips over ::1"
    python3 - "$WORK/floor-probe" "$RESULTS/floor.json" "$samples" <<'EOF'
import json, os, signal, socket, statistics, sys, time

path, out, samples = sys.argv[1], sys.argv[2], int(sys.argv[3])

# fdatasync: a small record appended to a file in the directory that holds the stores' data, and
# synced, as a store's log does for every commit.
record = b"r" * 64
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
try:
    syncs = []
    for i in range(samples + 10):
        began = time.perf_counter_ns()
        os.write(fd, record)
        os.fdatasync(fd)
        if i >= 10:
            syncs.append((time.perf_counter_ns() - began) / 1000)
finally:
    os.close(fd)
    os.unlink(path)

# A TCP round trip over ::1: one byte to an echoing process and back, Nagle off on both ends.
listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
listener.bind(("::1", 0))
listener.listen(1)
port = listener.getsockname()[1]
child = os.fork()
if child == 0:
    try:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(64):
            conn.sendall(data)
    finally:
        os._exit(0)
listener.close()
trips = []
try:
    client = socket.create_connection(("::1", port))
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(samples + 100):
        began = time.perf_counter_ns()
        client.sendall(b"p")
        if client.recv(64) != b"p":
            raise SystemExit("the echo process answered something else")
        if i >= 100:
            trips.append((time.perf_counter_ns() - began) / 1000)
    client.close()
finally:
    try:
        os.kill(child, signal.SIGTERM)
    except ProcessLookupError:
        pass
    os.waitpid(child, 0)

floor = {
    "samples": samples,
    "fdatasync_us": statistics.median(syncs),
    "round_trip_us": statistics.median(trips),
}
floor["floor_us"] = floor["fdatasync_us"] + floor["round_trip_us"]
json.dump(floor, open(out, "w"), indent=1)
print(f"== the floor: fdatasync {floor['fdatasync_us']:.0f} us (median), round trip "
      f"{floor['round_trip_us']:.0f} us (median): {floor['floor_us'] / 1000:.3f} ms", file=sys.stderr)
EOF
    fresh 3 paxkv etcd
    for store in paxkv etcd; do preload latency "$store"; done
    for workload in put get; do
        for store in paxkv etcd; do
            point latency 1 "$workload" "$store" --concurrency 1
        done
    done
fi

stop_cluster paxkv
stop_cluster etcd

# ---------------------------------------------------------------- the plots
rm -rf "$OUTDIR/results"
cp -r "$RESULTS" "$OUTDIR/results"
"$VENV/bin/python" "$ROOT/bench/plot_curves.py" "$RESULTS" "$OUTDIR"
minutes=$(((SECONDS - STARTED + 30) / 60))
log "done in $minutes min; results in $OUTDIR/results"
if [ -f "$RESULTS/failed.txt" ]; then
    log "some points failed:"
    cat "$RESULTS/failed.txt" >&2
    exit 1
fi
