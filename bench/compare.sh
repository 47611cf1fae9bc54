#!/usr/bin/env bash
# Measures paxkv and etcd side by side on this machine: a 3-node paxkv and a 3-member etcd on
# loopback, data of both in one directory (so on one disk), fsync on every commit for both.
#
#   bench/compare.sh                     # everything: about 15 minutes
#   ROUNDS=1 DURATION=3s MEMORY_KEYS=100000 FAILOVERS=1 bench/compare.sh   # a quick look
#   PHASES=replace,memory bench/compare.sh      # only the membership change and the memory
#
# Settings (environment): ROUNDS (3), DURATION (10s per workload and round), WARMUP (2s),
# CONCURRENCY (64 requests in flight), CONNECTIONS (1,8: connections per client; the workloads
# run at each, every round, so no ratio rests on one setting that suits one store), KEYS (10000), WORKLOADS
# (put,get,get-stale,mixed,ttl-churn,lease,txn), WATCHERS (1,100,10000: one watch run with each
# count), PUT_RATE (50 puts a second under the watchers), FAILOVERS (5 tries of each: kill and freeze of the
# leader, each with 10 s and with 300 ms request deadlines), MEMORY_KEYS (1000000), RESTARTS (3),
# CATCH_UP (1; 0 skips the new member, whose memory a large MEMORY_KEYS may not leave room
# for), CATCH_UP_PUTS (15s of puts while a new member catches up on the MEMORY_KEYS keys),
# IDLE (15s: memory is taken right after the fill and again this long after it, idle),
# OVERWRITES (0s: off; puts over the MEMORY_KEYS keys for this long after the fill, CONCURRENCY
# in flight, then each node's memory again: 10m for memory after ten minutes of overwrites),
# PHASES (load,watch,failover,replace,memory: which parts to run),
# WORK (the directory for data and results; default a new one under /var/tmp; KEEP=1 keeps it).
# Results: a table on standard output, and $WORK/results.md with the same table.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-64}
CONNECTIONS=${CONNECTIONS:-1,8}
KEYS=${KEYS:-10000}
WORKLOADS=${WORKLOADS:-put,get,get-stale,mixed,ttl-churn,lease,txn}
WATCHERS=${WATCHERS:-1,100,10000}
PUT_RATE=${PUT_RATE:-50}
FAILOVERS=${FAILOVERS:-5}
CATCH_UP_PUTS=${CATCH_UP_PUTS:-15s}
OVERWRITES=${OVERWRITES:-0s}
CATCH_UP=${CATCH_UP:-1}
MEMORY_KEYS=${MEMORY_KEYS:-1000000}
RESTARTS=${RESTARTS:-3}
IDLE=${IDLE:-15s}
KEEP=${KEEP:-0}
PHASES=${PHASES:-load,watch,failover,replace,memory}
want() { [[ ",$PHASES," == *",$1,"* ]]; }

cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${WORK:-$(mktemp -d /var/tmp/paxkv-compare.XXXXXX)}
mkdir -p "$WORK/results"
RESULTS="$WORK/results"

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

# The tools, the build and the clusters (start_node, stop_node, start_cluster, bench, ready,
# cleanup ...): shared with bench/curves.sh.
# shellcheck source=bench/cluster.sh
source "$ROOT/bench/cluster.sh"
ensure_tools
command -v python3 >/dev/null || die "python3 is needed to build the tables"
build_binaries

# ---------------------------------------------------------------- clusters
# paxkv on [::1]:17001-17003 (peers 17101-17103); etcd on 127.0.0.1:12379,12381,12383.
cluster_setup 3

rss_mb() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

# ---------------------------------------------------------------- throughput and latency
log "starting a 3-node paxkv and a 3-member etcd in $WORK"
start_cluster paxkv
start_cluster etcd
for store in paxkv etcd; do
    bench "$store" --workload load --keys "$KEYS" --concurrency "$CONCURRENCY" --quiet --strict >/dev/null
done
IFS=, read -r -a workload_list <<<"$WORKLOADS"
IFS=, read -r -a connection_list <<<"$CONNECTIONS"
# The watch runs use the first setting.
WATCH_CONNECTIONS=${connection_list[0]}
want load || ROUNDS=0
for round in $(seq "$ROUNDS"); do
    for workload in "${workload_list[@]}"; do
        for connections in "${connection_list[@]}"; do
            for store in paxkv etcd; do
                log "round $round/$ROUNDS: $workload over $connections connection(s) on $store"
                bench "$store" --workload "$workload" --concurrency "$CONCURRENCY" --connections "$connections" \
                    --keys "$KEYS" --duration "$DURATION" --warmup "$WARMUP" --no-preload --quiet \
                    --label "$round" --json "$RESULTS/load-$round-$workload-$connections-$store.json" >/dev/null
            done
        done
    done
done

# ---------------------------------------------------------------- watch
# N watchers on one prefix (spread over the nodes the client picks), one writer at PUT_RATE;
# events delivered per second and put-to-delivery latency. Each node's resident memory is
# taken idle and again in the middle of the measured window (the sum over the 3 nodes).
seconds_of() { # 10s, 500ms, 2m -> seconds
    case "$1" in
        *ms) awk -v v="${1%ms}" 'BEGIN { print v / 1000 }' ;;
        *s) echo "${1%s}" ;;
        *m) awk -v v="${1%m}" 'BEGIN { print v * 60 }' ;;
        *) echo "$1" ;;
    esac
}
nodes_rss_mb() { # store
    local total=0 i
    for i in 1 2 3; do total=$((total + $(rss_mb "$(cat "$WORK/pids/$1-$i")"))); done
    echo "$total"
}
leaders_seen() { # store -> how many leaders each of nodes 1-3 has seen so far, one per line
    local i
    for i in 1 2 3; do
        if [ "$1" = paxkv ]; then
            # A node logs "leader changed" each time it learns of a leader, with its ballot: a
            # new ballot is an election, the same one again a node that restarted and relearnt it.
            grep -o 'leader changed leader=[0-9]* ballot=[0-9.]*' "$WORK/paxkv/$i.log" | sort -u | wc -l || true
        else
            python3 - "http://127.0.0.1:$((12377 + 2 * i))/metrics" <<'EOF'
import sys, urllib.request
try:
    lines = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().splitlines()
except OSError as error:
    print(f"etcd metrics: {error}", file=sys.stderr)
    lines = []
for line in lines:
    if line.startswith("etcd_server_leader_changes_seen_total "):
        print(int(float(line.split()[1])))
        break
else:
    print("unknown")
EOF
        fi
    done
}
elections_since() { # store, the output of leaders_seen before -> the most new leaders a node saw
    # (null if a count could not be read)
    paste <(echo "$2") <(leaders_seen "$1") | awk '
        $1 !~ /^[0-9]+$/ || $2 !~ /^[0-9]+$/ { unknown = 1 }
        { d = $2 - $1; if (d > most) most = d }
        END { if (unknown || NR != 3) print "null"; else print most + 0 }'
}
IFS=, read -r -a watcher_list <<<"$WATCHERS"
want watch || watcher_list=()
for watchers in "${watcher_list[@]}"; do
    for store in paxkv etcd; do
        log "watch: $watchers watchers, $PUT_RATE puts/s: $store"
        idle=$(nodes_rss_mb "$store")
        bench "$store" --workload watch --watchers "$watchers" --put-rate "$PUT_RATE" \
            --connections "$WATCH_CONNECTIONS" --duration "$DURATION" --warmup "$WARMUP" --quiet \
            --json "$RESULTS/watch-$watchers-$store.json" >/dev/null &
        bench_pid=$!
        # Opening 10,000 watches takes a while; sample once the writer has run half the window.
        sleep "$(awk -v w="$(seconds_of "$WARMUP")" -v d="$(seconds_of "$DURATION")" -v n="$watchers" \
            'BEGIN { print w + d / 2 + n / 2000 }')"
        watched=$(nodes_rss_mb "$store")
        wait "$bench_pid"
        echo "$idle / $watched" >"$RESULTS/watch-rss-$watchers-$store.txt"
    done
done

# ---------------------------------------------------------------- failover
# The leader fails while 16 workers put; time to the first put sent after the failure that
# succeeds. Two failures: kill -9 (the kernel resets the leader's connections, so clients learn
# at once) and SIGSTOP (a frozen process, a VM pause or a stalled disk: its connections stay
# open and nothing answers, so clients learn only from their own deadlines; it gets SIGCONT once
# the measurement is done). Each twice: with each client giving a request up to 10 s (what an
# application without its own deadline sees; etcd holds a proposal made to a follower that still
# believes in the dead leader for 7 s), and with both giving up after 300 ms and sending a new
# one (the servers' election alone). A killed node comes back, and a thawed one catches up,
# before the next try.
# signal-leader SIGNAL ENDPOINT: sends SIGNAL to the node serving ENDPOINT and writes the name of
# its pid file to $WORK/signalled.
cat >"$WORK/signal-leader" <<EOF
#!/bin/sh
port=\${2##*:}
for file in "$WORK"/pids/*; do
    name=\${file##*/}
    node=\${name##*-}
    case "\$name" in
        paxkv-*) [ "\$port" = \$((17000 + node)) ] || continue ;;
        etcd-*) [ "\$port" = \$((12377 + 2 * node)) ] || continue ;;
        *) continue ;;
    esac
    kill -"\$1" "\$(cat "\$file")" && echo "\$file" > "$WORK/signalled" && exit 0
done
echo "no process serves \$2" >&2
exit 1
EOF
chmod +x "$WORK/signal-leader"
want failover || FAILOVERS=0
for mode in kill freeze; do
  for timeout in 10s 300ms; do
    for attempt in $(seq "$FAILOVERS"); do
      for store in paxkv etcd; do
        log "failover ($mode) $attempt/$FAILOVERS, requests time out after $timeout: $store"
        if [ "$mode" = kill ]; then
            how=(--kill-command "$WORK/signal-leader KILL \"\$1\"")
        else
            how=(--freeze-command "$WORK/signal-leader STOP \"\$1\""
                 --thaw-command "$WORK/signal-leader CONT \"\$1\"")
        fi
        bench "$store" failover --mode "$mode" --request-timeout "$timeout" "${how[@]}" \
            --json "$RESULTS/failover-$mode-$timeout-$attempt-$store.json" >&2
        signalled=$(cat "$WORK/signalled")
        rm -f "$WORK/signalled"
        node=${signalled##*-}
        if [ "$mode" = kill ]; then
            pid=$(cat "$signalled")
            while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
            start_node "$store" "$node"
        fi
        ready "$store" "$node" k000000000000000 >/dev/null
      done
    done
  done
done

# ---------------------------------------------------------------- replace a dead member
# A follower is killed (-9) while 16 workers put; a fresh node is added and the dead member
# removed, each store in its documented order: paxkv adds first (the new node joins with
# --join, catches up as a learner and is promoted) and then removes the dead one; etcd removes
# the dead member first (its strict reconfiguration check refuses to add a member while one of
# three is down) and then adds the new one. Reported: the longest time without an acknowledged
# put over the whole change, how long the change took, and when the new node served a local
# read of a key written before the change.
ETCD_JOINED="e1=http://127.0.0.1:12380,e2=http://127.0.0.1:12382,e4=http://127.0.0.1:12386"
follower_of() { # store -> one of nodes 1-3 that does not lead (paxkv: 3 unless it leads)
    if [ "$1" = paxkv ]; then
        local leader
        leader=$("$KVCTL" --endpoints "$PAXKV_ENDPOINTS" --cluster-secret-file "$SECRET" --json \
            member list | python3 -c 'import json, sys; print(json.load(sys.stdin)["leader"])')
        if [ "$leader" = 3 ]; then echo 2; else echo 3; fi
    else
        local port
        port=$(etcdctl --endpoints "$ETCD_ENDPOINTS" endpoint status | awk -F', ' '$5 == "false" { print $1 }' \
            | tail -1 | sed 's/.*://')
        echo $(((port - 12377) / 2))
    fi
}
replace_step() { # store: the change, run by kv-bench write-gap while it puts
    local store=$1 started dead live
    # A follower dies (the leader's death is the failover measurement).
    dead=$(follower_of "$store")
    live=$(for i in 1 2 3; do [ "$i" = "$dead" ] || endpoint_of "$store" "$i"; done | paste -sd,)
    started=$(date +%s%N)
    stop_node "$store" "$dead" KILL
    if [ "$store" = paxkv ]; then
        start_node paxkv 4
        until "$KVCTL" --endpoints "$live,[::1]:17004" --cluster-secret-file "$SECRET" \
            member list 2>/dev/null | grep -qE '^4 +voter '; do sleep 0.02; done
        "$KVCTL" --endpoints "$live" --cluster-secret-file "$SECRET" member remove "$dead" >/dev/null
    else
        local id
        id=$(etcdctl --endpoints "$live" member list | awk -F', ' -v name="e$dead" '$3 == name { print $1 }')
        etcdctl --endpoints "$live" member remove "$id" >/dev/null
        etcdctl --endpoints "$live" member add e4 --peer-urls=http://127.0.0.1:12386 >/dev/null
        ETCD_JOINED=$(for i in 1 2 3; do [ "$i" = "$dead" ] || echo "e$i=http://127.0.0.1:$((12378 + 2 * i))"; done | paste -sd,)
        ETCD_JOINED="$ETCD_JOINED,e4=http://127.0.0.1:12386"
        start_node etcd 4
    fi
    ready "$store" 4 k000000000000000 >/dev/null
    printf '%s\n' $((($(date +%s%N) - started) / 1000000)) >"$WORK/replace-served-ms"
}
# kv-bench runs the change through sh: give it a script with what the change needs.
{
    echo '#!/usr/bin/env bash'
    echo 'set -euo pipefail'
    declare -p WORK SERVER BENCH KVCTL SECRET RESULTS NODES PAXKV_ENDPOINTS PAXKV_PEERS ETCD_ENDPOINTS \
        ETCD_PEERS ETCD_JOINED
    declare -f replace_step follower_of stop_node start_node ready bench endpoints endpoint_of client_port log die
    echo 'replace_step "$1"'
} >"$WORK/replace-step"
chmod +x "$WORK/replace-step"
if want replace; then
    for store in paxkv etcd; do
        log "replace a killed follower under 16 writers: $store"
        bench "$store" write-gap --concurrency 16 --command "$WORK/replace-step $store" \
            --json "$RESULTS/replace-$store.json" >&2
        served=$(cat "$WORK/replace-served-ms")
        python3 - "$RESULTS/replace-$store.json" "$served" <<'EOF'
import json, sys
path, served = sys.argv[1], int(sys.argv[2])
result = json.load(open(path))
result["new_node_served_ms"] = served
json.dump(result, open(path, "w"))
EOF
        stop_node "$store" 4
    done
fi

# ---------------------------------------------------------------- memory and restart
# Fresh clusters, MEMORY_KEYS keys of 100 bytes, resident memory of every node, then restarts of
# one follower (stop, start, time to its first local read of the last key).
stop_cluster paxkv
stop_cluster etcd
rm -rf "$WORK/paxkv" "$WORK/etcd"
last_key=$(printf 'k%015d' $((MEMORY_KEYS - 1)))
want memory || MEMORY_STORES=""
for store in ${MEMORY_STORES-paxkv etcd}; do
    start_cluster "$store"
    log "$store: writing $MEMORY_KEYS keys of 100 bytes"
    leaders=$(leaders_seen "$store")
    bench "$store" --workload load --keys "$MEMORY_KEYS" --concurrency 256 --connections 4 \
        --json "$RESULTS/fill-$store.json" --quiet >/dev/null
    # Every node must have applied the last key before its memory means anything.
    for i in 1 2 3; do
        ready "$store" "$i" "$last_key" >/dev/null
    done
    # A stall longer than the election timeout (a snapshot written in the node loop) shows as a
    # new leader.
    fill_elections=$(elections_since "$store" "$leaders")
    rss=()
    for i in 1 2 3; do rss+=("$(rss_mb "$(cat "$WORK/pids/$store-$i")")"); done
    # Again once idle: right after the fill a node may be writing a snapshot (its bytes held
    # until written) or hold memory its allocator has yet to give back.
    sleep "$(seconds_of "$IDLE")"
    rss_idle=()
    for i in 1 2 3; do rss_idle+=("$(rss_mb "$(cat "$WORK/pids/$store-$i")")"); done
    du_mb=$(du -sm "$WORK/$store/1" | cut -f1)
    overwritten=()
    if [ "$(seconds_of "$OVERWRITES")" != 0 ]; then
        log "$store: overwriting the $MEMORY_KEYS keys for $OVERWRITES"
        bench "$store" --workload put --keys "$MEMORY_KEYS" --concurrency "$CONCURRENCY" --warmup 0s \
            --duration "$OVERWRITES" --json "$RESULTS/overwrite-$store.json" --quiet >/dev/null
        for i in 1 2 3; do
            ready "$store" "$i" "$last_key" >/dev/null
        done
        for i in 1 2 3; do overwritten+=("$(rss_mb "$(cat "$WORK/pids/$store-$i")")"); done
    fi
    restarts=()
    restarts_caught_up=()
    for attempt in $(seq "$RESTARTS"); do
        # A follower (node 3 unless it leads): the common case, and no election to wait for.
        node=$(follower_of "$store")
        stop_node "$store" "$node"
        started=$(date +%s%N)
        start_node "$store" "$node"
        ready "$store" "$node" "$last_key" >/dev/null
        restarts+=($((($(date +%s%N) - started) / 1000000)))
        # A node answers local reads between the slices of the log it applies at its start:
        # the time to have applied it all, and to know its leader, is measured too (and the
        # next phase starts only then, so that it measures what it is for).
        ready "$store" "$node" "$last_key" --caught-up >/dev/null
        restarts_caught_up+=($((($(date +%s%N) - started) / 1000000)))
    done
    catch_up_ms=null
    catch_up_elections=null
    if [ "$CATCH_UP" != 0 ]; then
        leaders=$(leaders_seen "$store")
        # A new member catching up on the whole state: added (paxkv: --join, as a learner; etcd:
        # member add, then started), timed to its first local read of the last key.
        started=$(date +%s%N)
        if [ "$store" = etcd ]; then
            ETCD_JOINED="e1=http://127.0.0.1:12380,e2=http://127.0.0.1:12382,e3=http://127.0.0.1:12384,e4=http://127.0.0.1:12386"
            # etcd refuses a member add while a member it restarted a moment ago looks unhealthy.
            for _ in $(seq 60); do
                etcdctl --endpoints 127.0.0.1:12379 member add e4 --learner \
                    --peer-urls=http://127.0.0.1:12386 >/dev/null 2>&1 && break
                sleep 0.5
            done
        fi
        # Puts go on meanwhile (CONCURRENCY in flight, on their own keys): their latency shows
        # whether sending the state to the new member holds up the leader.
        bench "$store" --workload put --keys 10000 --concurrency "$CONCURRENCY" --warmup 0s \
            --duration "$CATCH_UP_PUTS" --json "$RESULTS/catch-up-puts-$store.json" --quiet >/dev/null &
        puts_pid=$!
        start_node "$store" 4
        ready "$store" 4 "$last_key" >/dev/null
        catch_up_ms=$((($(date +%s%N) - started) / 1000000))
        wait "$puts_pid"
        catch_up_elections=$(elections_since "$store" "$leaders")
        stop_node "$store" 4
    fi
    printf '{"backend":"%s","keys":%s,"rss_mb":[%s],"rss_idle_mb":[%s],"idle":"%s","rss_overwritten_mb":[%s],"overwrites":"%s","disk_mb":%s,"restart_ms":[%s],"restart_caught_up_ms":[%s],"catch_up_ms":%s,"fill_elections":%s,"catch_up_elections":%s}\n' \
        "$store" "$MEMORY_KEYS" "$(IFS=,; echo "${rss[*]}")" "$(IFS=,; echo "${rss_idle[*]}")" "$IDLE" \
        "$(IFS=,; echo "${overwritten[*]}")" "$OVERWRITES" \
        "$du_mb" "$(IFS=,; echo "${restarts[*]}")" "$(IFS=,; echo "${restarts_caught_up[*]}")" "$catch_up_ms" "$fill_elections" \
        "$catch_up_elections" >"$RESULTS/memory-$store.json"
    stop_cluster "$store"
done

# ---------------------------------------------------------------- the table
python3 "$ROOT/bench/tabulate.py" "$RESULTS" | tee "$WORK/results.md"
