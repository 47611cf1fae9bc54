"""redis-cli, Redis's own command-line client, against both targets: the same session must
print the same thing."""

import shutil
import subprocess
from typing import List

import pytest

from resp_support import Target

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is missing")


def cli(target: Target, *args: str, stdin: str = "") -> List[str]:
    host, port = target.endpoint()
    command = ["redis-cli", "-h", host, "-p", str(port), "--no-auth-warning"]
    if target.password is not None:
        command += ["-a", target.password]
    done = subprocess.run(command + list(args), input=stdin, capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout.splitlines()


def test_redis_cli_commands_pipes_and_scan(target: Target, prefix: str):
    key = prefix + "k"
    assert cli(target, "SET", key, "hello world") == ["OK"]
    assert cli(target, "GET", key) == ["hello world"]
    assert cli(target, "APPEND", key, "!") == ["12"]
    assert cli(target, "HSET", prefix + "h", "a", "1", "b", "2") == ["2"]
    assert cli(target, "HGETALL", prefix + "h") == ["a", "1", "b", "2"]
    # redis-cli prints an error reply and an empty line.
    assert cli(target, "GET", prefix + "h")[0] == (
        "WRONGTYPE Operation against a key holding the wrong kind of value")
    # Commands read from standard input, answered in order.
    session = f"SET {prefix}n 10\nINCRBY {prefix}n 5\nGET {prefix}n\nDEL {prefix}n\nEXISTS {prefix}n\n"
    assert cli(target, stdin=session) == ["OK", "15", "15", "1", "0"]
    # --scan pages through with SCAN until the cursor comes back as 0.
    for index in range(25):
        cli(target, "SET", f"{prefix}scan:{index}", "v")
    found = cli(target, "--scan", "--pattern", f"{prefix}scan:*")
    assert sorted(found) == sorted(f"{prefix}scan:{index}" for index in range(25))
    # --pipe: the raw protocol for bulk loading.
    lines = "".join(f"SET {prefix}pipe:{index} {index}\r\n" for index in range(100))
    report = "\n".join(cli(target, "--pipe", stdin=lines))
    assert "errors: 0, replies: 100" in report, report
    assert cli(target, "GET", f"{prefix}pipe:99") == ["99"]
