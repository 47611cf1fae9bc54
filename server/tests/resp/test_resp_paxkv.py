"""What only paxkv's Redis port has to do: keep every acknowledged write when the leader dies,
serve any command on any node, READONLY stale reads, its flags (password file, flush refused
unless allowed, no password needed when allowed) and one database only."""

import threading
import time
from typing import Dict, Iterator, List

import pytest
import redis

from resp_support import PASSWORD, PaxkvTarget, RespError, Target, paxkv_binary, wait_for


@pytest.fixture
def own_cluster() -> Iterator[PaxkvTarget]:
    """A 3-node cluster of the test's own, for a test that kills a node."""
    running = PaxkvTarget(paxkv_binary())
    yield running
    running.stop()


@pytest.fixture
def strict_open_node() -> Iterator[PaxkvTarget]:
    """A 1-node cluster with neither --resp-allow-flush nor a password
    (--resp-allow-unauthenticated)."""
    running = PaxkvTarget(paxkv_binary(), size=1, allow_flush=False, password=None)
    yield running
    running.stop()


def test_no_acknowledged_write_lost_when_leader_killed(own_cluster: PaxkvTarget, prefix: str):
    leader = own_cluster.leader()
    assert leader is not None
    follower, other = [node for node in sorted(own_cluster.processes) if node != leader]
    writers = 3
    acknowledged: List[Dict[bytes, bytes]] = [{} for _ in range(writers)]
    acknowledged_after_kill = [0] * writers
    errors = [0] * writers
    killed = threading.Event()
    stop = threading.Event()
    failures: List[BaseException] = []

    def write(index: int) -> None:
        try:
            # Through the follower's RESP port: it forwards to whoever leads.
            with own_cluster.client(own_cluster.index_of(follower), socket_timeout=5,
                                    socket_connect_timeout=2) as client:
                i = 0
                while not stop.is_set():
                    key, value = f"{prefix}{index}-{i}".encode(), f"value-{index}-{i}".encode()
                    try:
                        client.set(key, value)
                    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                        # During the failover a write may fail (and may or may not be applied):
                        # the same write is tried again.
                        errors[index] += 1
                        time.sleep(0.01)
                        continue
                    acknowledged[index][key] = value
                    if killed.is_set():
                        acknowledged_after_kill[index] += 1
                    i += 1
        except BaseException as failure:  # noqa: BLE001 - reported by the main thread
            failures.append(failure)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    try:
        # A second of writes, then the kill, then two more seconds at least: writes must go on
        # under a new leader, and for a while after it took over.
        started = time.monotonic()
        wait_for("every writer has written for a second",
                 lambda: time.monotonic() - started >= 1 and all(len(done) >= 20 for done in acknowledged), 10)
        own_cluster.kill(leader)
        killed.set()
        killed_at = time.monotonic()
        wait_for("every writer has written 50 keys after the kill, for two seconds",
                 lambda: time.monotonic() - killed_at >= 2 and all(count >= 50 for count in acknowledged_after_kill),
                 15)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not failures, failures
    assert not any(thread.is_alive() for thread in threads)

    expected = {key: value for done in acknowledged for key, value in done.items()}
    for reader in (other, follower):
        with own_cluster.client(own_cluster.index_of(reader)) as client:
            keys = list(expected)
            values = client.mget(keys)
        lost = {key: (expected[key], got) for key, got in zip(keys, values) if got != expected[key]}
        assert not lost, (f"node {reader}: {len(lost)} of {len(expected)} acknowledged writes lost "
                          f"or wrong (key: (acknowledged, read)), some: {dict(list(lost.items())[:10])}")


def test_any_node_serves_every_command(paxkv_target: PaxkvTarget, prefix: str):
    key = prefix + "k"
    nodes = range(len(paxkv_target.endpoints))
    for node in nodes:
        with paxkv_target.client(node) as client:
            assert client.incr(key) == node + 1
            assert client.hset(prefix + "h", f"f{node}", node) == 1
    for node in nodes:
        with paxkv_target.client(node) as client:
            assert client.get(key) == str(len(nodes)).encode()
            assert client.hlen(prefix + "h") == len(nodes)


def test_watch_sees_writes_through_other_nodes(paxkv_target: PaxkvTarget, prefix: str):
    key = prefix + "k"
    leader = paxkv_target.leader()
    assert leader is not None
    on_follower = paxkv_target.index_of(next(node for node in paxkv_target.processes if node != leader))
    with paxkv_target.client(paxkv_target.index_of(leader)) as elsewhere:
        elsewhere.set(key, "start")
        with paxkv_target.raw(on_follower) as watcher:
            assert watcher.call("WATCH", key) == "OK"
            elsewhere.set(key, "changed on the leader")
            assert watcher.call("MULTI") == "OK"
            assert watcher.call("SET", key, "mine") == "QUEUED"
            assert watcher.call("EXEC") is None
        assert elsewhere.get(key) == b"changed on the leader"


def test_readonly_reads_locally(paxkv_target: PaxkvTarget, prefix: str):
    key = prefix + "k"
    with paxkv_target.client() as writer:
        writer.set(key, "v")
    with paxkv_target.raw() as connection:
        assert connection.call("READONLY") == "OK"
        # A stale read may lag a little behind the write just acknowledged.
        wait_for("the follower serves the new value to a READONLY read",
                 lambda: connection.call("GET", key) == b"v", 5)
        assert connection.call("MGET", key, prefix + "missing") == [b"v", None]
        assert connection.call("SET", key, "w") == "OK"  # writes still go to the leader
        assert connection.call("READWRITE") == "OK"
        assert connection.call("GET", key) == b"w"


def test_auth_with_the_password_file(paxkv_target: PaxkvTarget, prefix: str):
    with paxkv_target.raw(auth=False) as connection:
        assert connection.call("GET", prefix + "k") == RespError("NOAUTH Authentication required.")
        assert connection.call("AUTH", "wrong") == RespError(
            "WRONGPASS invalid username-password pair or user is disabled.")
        assert connection.call("AUTH", "default", "wrong") == RespError(
            "WRONGPASS invalid username-password pair or user is disabled.")
        assert connection.call("AUTH", PASSWORD) == "OK"
        assert connection.call("AUTH", "default", PASSWORD) == "OK"
        assert connection.call("GET", prefix + "k") is None


def test_one_database_only(paxkv_target: PaxkvTarget):
    with paxkv_target.raw() as connection:
        assert connection.call("SELECT", "0") == "OK"
        assert connection.call("SELECT", "1") == RespError("ERR DB index is out of range")
        assert connection.call("PING") == "PONG"


def test_info_replication_names_the_leader(paxkv_target: PaxkvTarget):
    leader = paxkv_target.leader()
    for node in sorted(paxkv_target.processes):
        with paxkv_target.raw(paxkv_target.index_of(node)) as connection:
            info = connection.call("INFO", "replication").decode()
        lines = info.split("\r\n")
        assert lines[0] == "# Replication"
        assert ("role:master" if node == leader else "role:slave") in lines, info
        assert f"leader_id:{leader}" in lines, info


def test_flush_refused_without_the_flag(strict_open_node: Target, prefix: str):
    # --resp-allow-unauthenticated: no AUTH needed.
    with strict_open_node.raw(auth=False) as connection:
        assert connection.call("SET", prefix + "k", "kept") == "OK"
        for command in ("FLUSHDB", "FLUSHALL"):
            refused = connection.call(command)
            assert isinstance(refused, RespError) and refused.message.startswith("ERR "), refused
        assert connection.call("GET", prefix + "k") == b"kept"
        assert connection.call("DBSIZE") >= 1


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_million_pipelined_commands_keep_memory_bounded(paxkv_target: PaxkvTarget, prefix: str):
    """A client that sends a million commands without reading a reply first: the node stops
    reading once its answers queue up (its memory does not grow with the pipeline), answers
    every one in order once the client reads, and serves everyone else meanwhile."""
    key = prefix + "k"
    with paxkv_target.raw() as connection:
        assert connection.call("SET", key, "kept") == "OK"
    node = paxkv_target.default_node
    node_id = sorted(paxkv_target.processes)[node]
    pid = paxkv_target.processes[node_id].pid
    before = _rss_kib(pid)
    count = 1_000_000
    ping = b"*1\r\n$4\r\nPING\r\n"
    with paxkv_target.raw(node) as flood:
        sent = threading.Event()
        failures: List[BaseException] = []

        def send() -> None:
            try:
                batch = ping * 10_000
                for _ in range(count // 10_000):
                    flood.send(batch)
                sent.set()
            except BaseException as failure:  # noqa: BLE001 - reported below
                failures.append(failure)

        sender = threading.Thread(target=send)
        sender.start()
        # While the flood waits for its reader, the node serves another connection.
        with paxkv_target.raw(node) as other:
            assert other.call("GET", key) == b"kept"
        peak = _rss_kib(pid)
        replies = 0
        while replies < count:
            assert flood.reply() == "PONG"
            replies += 1
            if replies % 100_000 == 0:
                peak = max(peak, _rss_kib(pid))
        sender.join(timeout=60)
        assert sent.is_set() and not failures, failures
    growth_mib = (peak - before) / 1024
    assert growth_mib < 64, f"the node grew by {growth_mib:.0f} MiB for one pipelining client"
    with paxkv_target.raw() as connection:
        assert connection.call("GET", key) == b"kept"


def test_nested_and_oversized_frames_are_refused_and_change_nothing(paxkv_target: PaxkvTarget,
                                                                   prefix: str):
    key = prefix + "k"
    with paxkv_target.raw() as connection:
        assert connection.call("SET", key, "kept") == "OK"
    cases = [
        b"*1\r\n" * 10_000,  # arrays inside arrays: a command is an array of bulk strings
        b"*99999999999\r\n",  # more arguments than any command may have
        b"*2\r\n$3\r\nSET\r\n$-5\r\n",  # a negative length
        b"*1\r\n$4\r\nPINGxx",  # a bulk string without its CRLF
    ]
    for frame in cases:
        with paxkv_target.raw() as connection:
            connection.send(frame)
            answer, closed = connection.read_all_until_closed()
            assert answer.startswith(b"-ERR Protocol error"), (frame[:20], answer)
            assert closed, frame[:20]
    with paxkv_target.raw() as connection:
        assert connection.call("GET", key) == b"kept"
