#!/usr/bin/env bash
# Runs every test of the workspace. Needs the Rust toolchain and Python 3.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --workspace --locked

# Release binaries for the tests against real clusters below.
cargo build --release --locked --bin kv-server --bin kv-top --bin kv-bench

# kv-bench: a few seconds of every workload against a real 3-node cluster (the comparison with
# etcd, bench/compare.sh, is run by hand: see the README's Performance section).
bench/smoke.sh target/release

# kv-top in a real terminal (tmux, installed if missing) against a real 3-node cluster.
tui/tests/tmux_e2e.sh target/release

# The Python client: built and installed into a new virtual environment (pip fetches maturin
# for the build), then its tests against a real 3-node cluster of release kv-servers (mypy
# checks a program against the package's type stubs).
python3 -m venv --clear target/py-venv
target/py-venv/bin/python -m pip install --quiet --disable-pip-version-check ./client-py pytest \
    'mypy>=1.10,<3'
PAXKV_SERVER=target/release/kv-server target/py-venv/bin/python -m pytest -q client-py/tests

# The Redis protocol port: redis-py and raw sockets against a real redis-server and against a
# real 3-node cluster's RESP ports, the same tests for both (redis-server and redis-tools are
# installed if missing, redis-py into the same virtual environment).
server/tests/resp/run.sh target/release

# The real server code in the deterministic simulator (its own target dir keeps the normal
# build intact; release, because seeds run several times faster).
sim() {
    RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/madsim \
        cargo run --locked --quiet --release -p paxkv-sim --features planted-bugs --bin kv-sim -- "$@"
}
# Every seed that ever failed.
sim regressions sim/regression-seeds.txt
# The same seed twice in one process gives the same trace hash.
sim determinism --seeds 0..3
# Fresh seeds (a new range every run): at least 200 of 30 simulated seconds, more if time allows.
sim run --seeds fresh:2000 --sim-secs 30 --min-seeds 200 --time-limit 420
# Every planted bug is caught within 200 seeds.
sim teeth --max-seeds 200
