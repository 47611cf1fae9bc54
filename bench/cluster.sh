# shellcheck shell=bash
# Shared by bench/compare.sh and bench/curves.sh (sourced, not run): the tools they need, the
# release build, and a paxkv cluster and an etcd cluster of NODES nodes each on loopback, with
# every process started here recorded in $WORK/pids and stopped by cleanup at exit.
#
# The sourcing script sets ROOT (the repository), WORK (data and results), KEEP (1 keeps $WORK at
# exit) and defines log and die; then it calls ensure_tools, build_binaries and
# cluster_setup [NODES] (3 unless given) before it starts anything. set_nodes N changes the size
# of the clusters started next (stop the running ones first: the ports depend on it).
#
# Ports: paxkv node i serves clients on [::1]:17000+i and its peers on [::1]:17100+i; etcd member
# i serves clients on 127.0.0.1:12377+2i and peers on 127.0.0.1:12378+2i (member 1: 12379 and
# 12380). Nodes numbered above NODES join the running cluster: paxkv with --join (the cluster
# picks its id), etcd as an existing member with ETCD_JOINED as its initial cluster (etcdctl
# member add first). ETCD_EXTRA_ARGS, if set, is added to every etcd command line,
# PAXKV_EXTRA_ARGS to every paxkv node's that starts a cluster.

# ---------------------------------------------------------------- tools
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root (or sudo) to run: $*"; fi; }
install_debian() { # command package
    command -v apt-get >/dev/null || die "$1 is missing and this is not a Debian-like system: install $2 yourself"
    log "installing $2 (Debian package)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$2" >/dev/null
}
ensure_tools() {
    command -v etcd >/dev/null || install_debian etcd etcd-server
    command -v etcdctl >/dev/null || install_debian etcdctl etcd-client
    command -v protoc >/dev/null || install_debian protoc protobuf-compiler
}

# Sets SERVER, BENCH and KVCTL.
# shellcheck disable=SC2034 # they are used by the scripts that source this one
build_binaries() {
    log "building kv-server and kv-bench (with etcd support), release"
    cargo build --release --locked -q -p paxkv-server -p paxkv-cli -p paxkv-bench --features paxkv-bench/etcd \
        --bin kv-server --bin kv-bench --bin kvctl
    SERVER="$ROOT/target/release/kv-server"
    BENCH="$ROOT/target/release/kv-bench"
    KVCTL="$ROOT/target/release/kvctl"
}

# ---------------------------------------------------------------- clusters
set_nodes() { # count: the members of the clusters started next
    local i
    NODES=$1
    PAXKV_ENDPOINTS=$(for i in $(seq "$NODES"); do echo "[::1]:$((17000 + i))"; done | paste -sd,)
    PAXKV_PEERS=$(for i in $(seq "$NODES"); do echo "$i=[::1]:$((17100 + i))"; done | paste -sd,)
    ETCD_ENDPOINTS=$(for i in $(seq "$NODES"); do echo "127.0.0.1:$((12377 + 2 * i))"; done | paste -sd,)
    ETCD_PEERS=$(for i in $(seq "$NODES"); do echo "e$i=http://127.0.0.1:$((12378 + 2 * i))"; done | paste -sd,)
}

cluster_setup() { # [nodes]
    set_nodes "${1:-3}"
    SECRET="$WORK/cluster-secret"
    [ -f "$SECRET" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$SECRET"
    mkdir -p "$WORK/pids"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

# Every process started here is stopped on exit, whatever happens.
cleanup() {
    local pid
    for file in "$WORK"/pids/*; do
        [ -f "$file" ] || continue
        pid=$(cat "$file")
        kill -TERM "$pid" 2>/dev/null || true
    done
    for file in "$WORK"/pids/*; do
        [ -f "$file" ] || continue
        pid=$(cat "$file")
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$file"
    done
    if [ "$KEEP" != 1 ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}

client_port() { # store node -> client port
    if [ "$1" = paxkv ]; then echo $((17000 + $2)); else echo $((12377 + 2 * $2)); fi
}
endpoint_of() {
    if [ "$1" = paxkv ]; then echo "[::1]:$(client_port paxkv "$2")"; else echo "127.0.0.1:$(client_port etcd "$2")"; fi
}
endpoints() { if [ "$1" = paxkv ]; then echo "$PAXKV_ENDPOINTS"; else echo "$ETCD_ENDPOINTS"; fi; }

start_node() { # store node
    local store=$1 i=$2 data="$WORK/$1/$2"
    mkdir -p "$data"
    if [ "$store" = paxkv ] && [ "$i" -gt "$NODES" ]; then
        # A node added to the running cluster: it joins (the cluster picks its id).
        "$SERVER" --join "$PAXKV_ENDPOINTS" --client-addr "[::1]:$((17000 + i))" \
            --peer-addr "[::1]:$((17100 + i))" --data-dir "$data" --cluster-secret-file "$SECRET" \
            >>"$data.log" 2>&1 &
    elif [ "$store" = paxkv ]; then
        # shellcheck disable=SC2086 # PAXKV_EXTRA_ARGS is a list of flags
        "$SERVER" --id "$i" --client-addr "[::1]:$((17000 + i))" --peer-addr "[::1]:$((17100 + i))" \
            --peers "$PAXKV_PEERS" --data-dir "$data" --cluster-secret-file "$SECRET" \
            ${PAXKV_EXTRA_ARGS:-} >>"$data.log" 2>&1 &
    else
        local state=new initial=$ETCD_PEERS
        [ -d "$data/member" ] && state=existing
        local cp=$((12377 + 2 * i)) pp=$((12378 + 2 * i))
        # A member added to the running cluster (etcdctl member add first) starts as existing.
        [ "$i" -gt "$NODES" ] && { state=existing; initial=${ETCD_JOINED:?}; }
        # shellcheck disable=SC2086 # ETCD_EXTRA_ARGS is a list of flags
        etcd --name "e$i" --data-dir "$data" \
            --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
            --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
            --initial-cluster "$initial" --initial-cluster-state "$state" \
            --initial-cluster-token paxkv-compare --logger zap --log-level error ${ETCD_EXTRA_ARGS:-} \
            >>"$data.log" 2>&1 &
    fi
    echo $! > "$WORK/pids/$store-$i"
    disown  # no job-control noise when a test kills it
}

stop_node() { # store node [signal]
    local file="$WORK/pids/$1-$2" pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    kill "-${3:-TERM}" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$file"
}

bench() { # store [failover|write-gap] args...
    local store=$1 command=()
    shift
    case "${1:-}" in failover | write-gap) command=("$1"); shift ;; esac
    "$BENCH" "${command[@]}" --backend "$store" --endpoints "$(endpoints "$store")" \
        --cluster-secret-file "$SECRET" "$@"
}

# Waits until one node answers a local read of a key (with --caught-up, also until it has
# applied everything it knows committed and knows its leader); prints the milliseconds that took.
ready() { # store node key [--caught-up]
    "$BENCH" ready --backend "$1" --endpoints "$(endpoint_of "$1" "$2")" --cluster-secret-file "$SECRET" \
        --key "$3" "${@:4}"
}

# Waits until the cluster accepts a put (a leader is elected and a quorum is up).
wait_serving() {
    local store=$1 deadline=$((SECONDS + 60))
    until bench "$store" --workload put --keys 1 --concurrency 1 --warmup 0s --duration 100ms \
        --request-timeout 2s --quiet --strict >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "$store did not start serving within 60 s; logs: $WORK/$store/*.log"
        sleep 0.2
    done
}

port_in_use() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

start_cluster() { # store: nodes 1 to NODES
    local i
    for i in $(seq "$NODES"); do
        local client host=127.0.0.1 peer_offset=1
        client=$(client_port "$1" "$i")
        [ "$1" = paxkv ] && { host=::1; peer_offset=100; }
        for port in "$client" $((client + peer_offset)); do
            ! port_in_use "$host" "$port" || die "port $port is in use: stop what listens there first"
        done
    done
    for i in $(seq "$NODES"); do start_node "$1" "$i"; done
    wait_serving "$1"
    for i in $(seq "$NODES"); do
        kill -0 "$(cat "$WORK/pids/$1-$i")" 2>/dev/null || die "$1 node $i exited; see $WORK/$1/$i.log"
    done
}
stop_cluster() { # store: every node of it still running, added ones too
    local file
    for file in "$WORK/pids/$1"-*; do
        [ -f "$file" ] || continue
        stop_node "$1" "${file##*-}"
    done
}
