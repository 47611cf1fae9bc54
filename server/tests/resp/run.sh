#!/usr/bin/env bash
# The Redis protocol tests: every test once against a real redis-server (which proves the
# expected replies are Redis's) and once against a real 3-node paxkv cluster, plus the
# paxkv-only ones (failover, flags). redis-server and redis-cli are installed if missing;
# redis-py goes into the virtual environment test.sh made (target/py-venv).
# Usage: server/tests/resp/run.sh DIR (the folder holding kv-server).
set -euo pipefail
bin=$(cd "${1:?usage: run.sh DIR-WITH-kv-server}" && pwd)
cd "$(dirname "$0")/../../.."

if ! command -v redis-server > /dev/null || ! command -v redis-cli > /dev/null; then
    echo "redis-server or redis-cli is missing: installing them"
    as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server redis-tools > /dev/null
fi

python=target/py-venv/bin/python
[ -x "$python" ] || { echo "run.sh: $python is missing (test.sh creates it)" >&2; exit 1; }
"$python" -m pip install --quiet --disable-pip-version-check 'redis>=5,<7'

PAXKV_SERVER="$bin/kv-server" "$python" -m pytest -q -p no:cacheprovider server/tests/resp
