#!/usr/bin/env bash
# Runs every test of the workspace. Needs only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --workspace --locked
