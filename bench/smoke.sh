#!/usr/bin/env bash
# A few seconds of every kv-bench workload against a local 3-node cluster, so the benchmark
# keeps working: fails if any request fails, a read misses, or a workload completes nothing.
#   bench/smoke.sh [DIR_WITH_RELEASE_BINARIES]   (default target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release}
work=$(mktemp -d)
cluster=
cleanup() {
    if [ -n "$cluster" ]; then
        kill -INT "$cluster" 2>/dev/null || true
        wait "$cluster" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Six free ports on [::1]: BASE..BASE+2 for clients, BASE+100..BASE+102 for peers.
base=$(python3 - <<'EOF'
import random, socket
for _ in range(200):
    base = random.randrange(20000, 60000)
    ports = [base + i for i in (0, 1, 2, 100, 101, 102)]
    try:
        sockets = []
        for port in ports:
            s = socket.socket(socket.AF_INET6)
            s.bind(("::1", port))
            sockets.append(s)
        for s in sockets:
            s.close()
        print(base)
        break
    except OSError:
        for s in sockets:
            s.close()
EOF
)
[ -n "$base" ] || { echo "smoke.sh: no free ports found" >&2; exit 1; }

# local-cluster keeps a secret it finds, so the file exists before any node does.
mkdir -p "$work/cluster"
od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$work/cluster/cluster-secret"
"$bin/kv-server" local-cluster --nodes 3 --dir "$work/cluster" --base-port "$base" >"$work/cluster.log" 2>&1 &
cluster=$!
bench() {
    "$bin/kv-bench" --endpoints "[::1]:$base,[::1]:$((base + 1)),[::1]:$((base + 2))" \
        --cluster-secret-file "$work/cluster/cluster-secret" "$@"
}
# The first put waits (up to the client's 10 s) for the cluster to elect a leader.
bench --workload put --keys 1 --concurrency 1 --warmup 0s --duration 100ms --quiet --strict >/dev/null ||
    { cat "$work/cluster.log" >&2; exit 1; }
bench --workload put,get,get-stale,mixed,ttl-churn,lease,txn,watch --keys 1000 --concurrency 16 \
    --connections 2 --watchers 20 --put-rate 50 --warmup 200ms --duration 1s --quiet --strict \
    --json "$work/smoke.json"
python3 - "$work/smoke.json" <<'EOF'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
names = [run["workload"] for run in runs]
assert names == ["put", "get", "get-stale", "mixed", "ttl-churn", "lease", "txn", "watch"], names
for run in runs:
    latency = run["latency_us"]
    assert run["ops"] > 0 and run["ops_per_sec"] > 0, run
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"], run
print(f"kv-bench smoke: {len(runs)} workloads, {sum(run['ops'] for run in runs)} requests, no errors")
EOF
