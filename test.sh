#!/usr/bin/env bash
# Runs every test of the workspace. Needs only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --workspace --locked
# The real server code in the deterministic simulator: partitions, crashes, clock skew, with
# every history checked for linearizability. Its own target dir keeps the normal build intact.
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/madsim \
    cargo run --locked --quiet -p paxkv-sim --bin kv-sim -- run --seeds 1..9 --nodes 3 --sim-secs 10
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/madsim \
    cargo run --locked --quiet -p paxkv-sim --bin kv-sim -- run --seeds 100..103 --nodes 5 --sim-secs 10
