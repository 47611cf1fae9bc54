"""Fixtures of the RESP tests. The suite runs once per target: RESP_TARGET=redis or
RESP_TARGET=paxkv picks one, unset runs both (redis is skipped when no redis-server is
installed). The paxkv target needs PAXKV_SERVER, the path of a kv-server binary.

    PAXKV_SERVER=target/release/kv-server target/py-venv/bin/python -m pytest -q server/tests/resp
"""

import re
from typing import Iterator

import pytest
import redis

from resp_support import PaxkvTarget, RedisTarget, Target, chosen_targets, paxkv_binary, redis_server_binary

@pytest.fixture(scope="session")
def redis_target() -> Iterator[Target]:
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server binary on PATH (apt-get install redis-server), so the "
                    "expectations are not checked against Redis")
    running = RedisTarget(binary)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def paxkv_target() -> Iterator[Target]:
    """One 3-node cluster shared by the tests that do not harm it (flush allowed, so a test can
    check FLUSHDB)."""
    running = PaxkvTarget(paxkv_binary())
    yield running
    running.stop()


@pytest.fixture(scope="session", params=chosen_targets())
def target(request) -> Target:
    return request.getfixturevalue(f"{request.param}_target")


@pytest.fixture
def r(target: Target) -> Iterator[redis.Redis]:
    """A RESP2 client on the target's default node (on paxkv a follower)."""
    with target.client() as client:
        yield client


@pytest.fixture
def r3(target: Target) -> Iterator[redis.Redis]:
    """A RESP3 client (HELLO 3) on the target's default node."""
    with target.client(protocol=3) as client:
        yield client


@pytest.fixture
def prefix(request) -> str:
    """A key prefix no other test uses, with no glob characters (it goes into MATCH patterns)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", request.node.name) + ":"
