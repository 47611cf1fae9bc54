#!/usr/bin/env bash
# kv-top in a real terminal (tmux) against a real 3-node cluster: the screen must show three
# nodes and a leader; after kill -9 of the leader it must show that node as DOWN and a new
# leader. Usage: tui/tests/tmux_e2e.sh DIR (the folder holding kv-server and kv-top).
set -euo pipefail
bin=$(cd "${1:?usage: tmux_e2e.sh DIR-WITH-kv-server-AND-kv-top}" && pwd)

if ! command -v tmux > /dev/null; then
    echo "tmux is missing: installing it"
    if [ "$(id -u)" = 0 ]; then apt-get install -y -qq tmux > /dev/null; else sudo apt-get install -y -qq tmux > /dev/null; fi
fi

dir=$(mktemp -d)
session="kv-top-e2e-$$"
declare -A pids
cleanup() {
    tmux kill-session -t "$session" 2> /dev/null || true
    for pid in "${pids[@]}"; do kill -9 "$pid" 2> /dev/null || true; done
    wait 2> /dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

read -r -a ports < <(python3 -c '
import socket
sockets = [socket.socket(socket.AF_INET6) for _ in range(6)]
for s in sockets: s.bind(("::1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))')
echo "kv-top-e2e-secret-0123456789abcdef" > "$dir/secret"
peers="1=[::1]:${ports[3]},2=[::1]:${ports[4]},3=[::1]:${ports[5]}"
endpoints="[::1]:${ports[0]},[::1]:${ports[1]},[::1]:${ports[2]}"
for id in 1 2 3; do
    "$bin/kv-server" --id "$id" --client-addr "[::1]:${ports[$((id - 1))]}" \
        --peer-addr "[::1]:${ports[$((id + 2))]}" --peers "$peers" --data-dir "$dir/node-$id" \
        --cluster-secret-file "$dir/secret" --election-timeout-ms 500 --heartbeat-interval-ms 50 \
        > "$dir/node-$id.log" 2>&1 &
    pids[$id]=$!
done

tmux new-session -d -s "$session" -x 120 -y 36 \
    "$bin/kv-top --endpoints '$endpoints' --cluster-secret-file '$dir/secret' --refresh-ms 200"

screen() { tmux capture-pane -p -t "$session"; }
# Polls the screen (a terminal cannot be awaited) until `grep -E "$1"` matches, for $2 seconds.
wait_for() {
    local deadline=$((SECONDS + $2))
    while [ $SECONDS -lt $deadline ]; do
        if screen | grep -qE "$1"; then return 0; fi
        sleep 0.2
    done
    echo "kv-top never showed /$1/ within $2 s; the screen was:"
    screen
    exit 1
}

wait_for "leader n[123] " 30
leader=$(screen | grep -oE "leader n[123] " | head -1 | tr -dc 1-3)
for id in 1 2 3; do wait_for "│n$id +\[::1\]:${ports[$((id - 1))]} +(leader|follower)" 10; done
echo "kv-top shows three nodes, n$leader leading"

{ kill -9 "${pids[$leader]}" && wait "${pids[$leader]}"; } 2> /dev/null || true
unset "pids[$leader]"
wait_for "│n$leader +\[::1\]:[0-9]+ +DOWN" 20
wait_for "leader n[^$leader] " 30
wait_for "n$leader +lost|unreachable" 5
echo "kv-top shows n$leader down and a new leader:"
screen
tmux send-keys -t "$session" q
