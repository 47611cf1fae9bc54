"""What the RESP tests run against: a real redis-server, or a real 3-node paxkv cluster serving
the Redis protocol; and a raw RESP connection for the assertions redis-py cannot make (exact
error strings with their code, protocol errors, connections closed by the server).

The same tests run against both targets: the redis target proves that what they expect is what
Redis answers. Where paxkv answers differently on purpose, the difference lives in the methods
of `Target` under "Where paxkv differs from Redis", each with the reason.
"""

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import redis

PASSWORD = "resp-test-password-0123456789"
CLUSTER_SECRET = "resp-test-cluster-secret-0123456789"
# How long a server may take to come up (a paxkv cluster must also elect a leader).
START_SECONDS = 30
# How long a stopped server may take to exit before it is killed.
STOP_SECONDS = 10

# Ports come from below Linux's range for outgoing connections (32768..61000): a port the OS
# picked and released could go to a client's outgoing connection before the server binds it.
# Each is handed out once per test run and checked free on both loopback addresses.
PORT_FIRST = 20_000
PORT_COUNT = 12_000
_next_port = itertools.count((os.getpid() * 7) % PORT_COUNT)


def free_port() -> int:
    for _ in range(PORT_COUNT):
        port = PORT_FIRST + next(_next_port) % PORT_COUNT
        if _bindable(socket.AF_INET, "127.0.0.1", port) and _bindable(socket.AF_INET6, "::1", port):
            return port
    raise RuntimeError(f"no free port in {PORT_FIRST}..{PORT_FIRST + PORT_COUNT}")


def _bindable(family: int, host: str, port: int) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def wait_for(what: str, check: Callable[[], Any], seconds: float, pause: float = 0.02) -> Any:
    """Polls `check` until it returns something true (and returns that), or fails after `seconds`
    with `what` and the last exception `check` raised."""
    deadline = time.monotonic() + seconds
    last_error: Optional[BaseException] = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # noqa: BLE001 - polled again until the deadline
            last_error = error
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {seconds} s (last error: {last_error!r})")
        time.sleep(pause)


# ---------------------------------------------------------------- raw RESP


class RespError:
    """An error reply, kept whole (redis-py strips the ERR code from its exceptions)."""

    def __init__(self, message: str):
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RespError) and other.message == self.message

    def __repr__(self) -> str:
        return f"RespError({self.message!r})"


class Push(list):
    """A RESP3 push (out-of-band) message."""


class Closed(Exception):
    """The server closed the connection."""


def encode(*args: Any) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RawConnection:
    """One TCP connection speaking RESP by hand: reads every RESP2 and RESP3 reply type; error
    replies come back as RespError values, not exceptions."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> "RawConnection":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def call(self, *args: Any) -> Any:
        self.send(encode(*args))
        return self.reply()

    def _line(self) -> bytes:
        line = self.file.readline()
        if not line:
            raise Closed()
        if not line.endswith(b"\r\n"):
            raise AssertionError(f"reply line not ended by CRLF: {line!r}")
        return line[:-2]

    def _exact(self, length: int) -> bytes:
        data = self.file.read(length + 2)
        if len(data) < length + 2:
            raise Closed()
        assert data[-2:] == b"\r\n", f"bulk not ended by CRLF: {data!r}"
        return data[:-2]

    def reply(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"(":
            return int(rest)
        if kind == b",":
            return float(rest)
        if kind == b"#":
            return rest == b"t"
        if kind == b"_":
            return None
        if kind in (b"$", b"=", b"!"):
            length = int(rest)
            if length < 0:
                return None
            data = self._exact(length)
            if kind == b"=":
                return data[4:]  # "txt:" or "mkd:"
            if kind == b"!":
                return RespError(data.decode(errors="replace"))
            return data
        if kind in (b"*", b"~", b">"):
            count = int(rest)
            if count < 0:
                return None
            items = [self.reply() for _ in range(count)]
            if kind == b"~":
                return set(items)
            return Push(items) if kind == b">" else items
        if kind == b"%":
            return {self._key(self.reply()): self.reply() for _ in range(int(rest))}
        if kind == b"|":
            for _ in range(int(rest)):  # attributes: read and dropped
                self.reply(), self.reply()
            return self.reply()
        raise AssertionError(f"unknown reply type: {line!r}")

    @staticmethod
    def _key(key: Any) -> Any:
        return key.decode() if isinstance(key, bytes) else key

    def read_all_until_closed(self, seconds: float = 5.0) -> Tuple[bytes, bool]:
        """Every byte the server sends until it closes the connection (True) or goes quiet for
        `seconds` (False)."""
        self.sock.settimeout(seconds)
        data = b""
        try:
            while True:
                # Bytes the buffered reader already took from the socket come first.
                chunk = self.file.read1(65536) if hasattr(self.file, "read1") else self.sock.recv(65536)
                if not chunk:
                    return data, True
                data += chunk
        except (socket.timeout, TimeoutError):
            return data, False
        except ConnectionResetError:
            return data, True


# ---------------------------------------------------------------- targets


class Target:
    """A running server (or cluster) speaking RESP, and how to reach it."""

    name = ""
    is_paxkv = False

    def __init__(self, endpoints: List[Tuple[str, int]], password: Optional[str]):
        self.endpoints = endpoints
        self.password = password
        # The node the tests talk to by default.
        self.default_node = 0

    def endpoint(self, node: Optional[int] = None) -> Tuple[str, int]:
        return self.endpoints[self.default_node if node is None else node]

    def client(self, node: Optional[int] = None, protocol: int = 2, **options: Any) -> redis.Redis:
        host, port = self.endpoint(node)
        options.setdefault("socket_timeout", 20)
        options.setdefault("socket_connect_timeout", 5)
        options.setdefault("password", self.password)
        return redis.Redis(
            host=host, port=port, protocol=protocol,
            decode_responses=False, **options,
        )

    def raw(self, node: Optional[int] = None, auth: bool = True) -> RawConnection:
        host, port = self.endpoint(node)
        connection = RawConnection(host, port)
        if auth and self.password is not None:
            assert connection.call("AUTH", self.password) == "OK"
        return connection

    def stop(self) -> None:
        raise NotImplementedError

    # ---------------------------------------------------- where paxkv differs from Redis

    def enable_keyspace_events(self, client: redis.Redis) -> None:
        """Redis sends keyspace notifications only once configured to. paxkv always sends them
        (they come from its change stream, which is always on), and may refuse to be
        configured: an error is ignored there only."""
        try:
            client.config_set("notify-keyspace-events", "KEA")
        except redis.ResponseError:
            if not self.is_paxkv:
                raise


class RedisTarget(Target):
    """One redis-server with a password, no persistence, in a temporary directory."""

    name = "redis"

    def __init__(self, binary: str):
        self.dir = tempfile.TemporaryDirectory(prefix="resp-redis-")
        port = free_port()
        super().__init__([("127.0.0.1", port)], PASSWORD)
        log = open(Path(self.dir.name) / "redis.log", "ab")
        self.process = subprocess.Popen(
            [
                binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--requirepass", PASSWORD, "--dir", self.dir.name,
            ],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.dir.name,
        )
        log.close()
        try:
            with self.client(socket_timeout=1) as client:
                wait_for("redis-server answers PING", lambda: self._ping(client), START_SECONDS)
        except BaseException:
            self.stop()
            raise

    def _ping(self, client: redis.Redis) -> bool:
        if self.process.poll() is not None:
            log = (Path(self.dir.name) / "redis.log").read_text(errors="replace")
            raise RuntimeError(f"redis-server exited ({self.process.returncode}):\n{log}")
        return bool(client.ping())

    def stop(self) -> None:
        _stop_processes([self.process])
        self.dir.cleanup()


def server_supports_resp(binary: str) -> bool:
    shown = subprocess.run([binary, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, check=False, timeout=30)
    return "--resp-addr" in shown.stdout


class PaxkvTarget(Target):
    """Nodes 1..size of one paxkv cluster, each a kv-server process with a RESP port, in a
    temporary directory; RESP clients authenticate with a password file.

    Any node serves every command (a follower forwards what needs the leader), so the tests
    talk to a follower when there is one, the path a client that picked a node at random takes.
    """

    name = "paxkv"
    is_paxkv = True

    def __init__(self, binary: str, size: int = 3, allow_flush: bool = True,
                 password: Optional[str] = PASSWORD, extra_flags: Tuple[str, ...] = ()):
        if not server_supports_resp(binary):
            raise RuntimeError(f"{binary} has no --resp-addr flag: it serves no Redis protocol")
        self.binary = binary
        self.dir = tempfile.TemporaryDirectory(prefix="resp-paxkv-")
        root = Path(self.dir.name)
        self.secret_file = str(root / "cluster-secret")
        Path(self.secret_file).write_text(CLUSTER_SECRET)
        self.password_file = str(root / "resp-password")
        Path(self.password_file).write_text(password or "")
        nodes = range(1, size + 1)
        self.client_addrs = {node: f"[::1]:{free_port()}" for node in nodes}
        self.peer_addrs = {node: f"[::1]:{free_port()}" for node in nodes}
        self.resp_ports = {node: free_port() for node in nodes}
        self.flags: List[str] = list(extra_flags)
        if allow_flush:
            self.flags.append("--resp-allow-flush")
        if password is None:
            self.flags.append("--resp-allow-unauthenticated")
        super().__init__([("::1", self.resp_ports[node]) for node in nodes], password)
        self.processes: Dict[int, subprocess.Popen] = {}
        try:
            for node in nodes:
                self.start(node)
            self.wait_ready()
            self.default_node = self.index_of(self.a_follower())
        except BaseException:
            self.stop()
            raise

    def index_of(self, node_id: int) -> int:
        """The index in `endpoints` of node `node_id` (1-based ids, 0-based list)."""
        return node_id - 1

    def start(self, node: int) -> None:
        root = Path(self.dir.name)
        peers = ",".join(f"{other}={address}" for other, address in self.peer_addrs.items())
        command = [
            self.binary, "--id", str(node),
            "--client-addr", self.client_addrs[node],
            "--peer-addr", self.peer_addrs[node],
            "--peers", peers,
            "--data-dir", str(root / f"node-{node}"),
            "--cluster-secret-file", self.secret_file,
            "--resp-addr", f"[::1]:{self.resp_ports[node]}",
        ]
        if self.password is not None:
            command += ["--resp-password-file", self.password_file]
        log = open(root / f"node-{node}.log", "ab")
        self.processes[node] = subprocess.Popen(command + self.flags, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def wait_ready(self) -> None:
        """A leader is elected once a write through node 1 is acknowledged; then every node must
        answer PING on its RESP port."""

        def write_once(client: redis.Redis) -> bool:
            self._check_running()
            return client.set("ready", "1") is True

        with self.client(0, socket_timeout=2) as client:
            wait_for("a write through node 1's RESP port", lambda: write_once(client), START_SECONDS, 0.05)
        for node in self.processes:
            with self.client(self.index_of(node), socket_timeout=2) as client:
                wait_for(f"node {node} answers PING", client.ping, START_SECONDS, 0.05)

    def _check_running(self) -> None:
        for node, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"kv-server node {node} exited ({process.returncode}):\n{self.log(node)}")

    def log(self, node: int) -> str:
        return (Path(self.dir.name) / f"node-{node}.log").read_text(errors="replace")[-4000:]

    def native_client(self) -> Any:
        import paxkv  # only the paxkv target needs the native client

        return paxkv.Client(list(self.client_addrs[node] for node in self.processes),
                            cluster_secret_file=self.secret_file, timeout=5)

    def leader(self) -> Optional[int]:
        """The id of the node that says it leads, if one does (the native status, which every
        node answers itself)."""
        with self.native_client() as client:
            for status in client.status().values():
                if status.get("role") == "leader":
                    return int(status["node_id"])
        return None

    def a_follower(self) -> int:
        if len(self.processes) == 1:
            return next(iter(self.processes))
        leader = wait_for("a node says it leads", self.leader, START_SECONDS, 0.05)
        return next(node for node in sorted(self.processes) if node != leader)

    def kill(self, node: int) -> None:
        """kill -9: no chance to flush or say goodbye."""
        process = self.processes.pop(node)
        process.kill()
        process.wait(timeout=STOP_SECONDS)

    def stop(self) -> None:
        _stop_processes(list(self.processes.values()))
        self.processes.clear()
        self.dir.cleanup()


def _stop_processes(processes: List[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def redis_server_binary() -> Optional[str]:
    return os.environ.get("REDIS_SERVER") or shutil.which("redis-server")


TARGETS = ("redis", "paxkv")


def chosen_targets() -> List[str]:
    """RESP_TARGET=redis or paxkv picks one target; unset, the suite runs against both."""
    chosen = os.environ.get("RESP_TARGET")
    if chosen is None:
        return list(TARGETS)
    if chosen not in TARGETS:
        raise pytest.UsageError(f"RESP_TARGET must be one of {TARGETS}, not {chosen!r}")
    return [chosen]


def paxkv_binary() -> str:
    """PAXKV_SERVER, the kv-server to test; skips the paxkv tests if it is unset (fails if
    RESP_TARGET=paxkv asked for them)."""
    if "paxkv" not in chosen_targets():
        pytest.skip("RESP_TARGET=redis")
    binary = os.environ.get("PAXKV_SERVER")
    if not binary:
        reason = ("the paxkv target needs PAXKV_SERVER, the path of a kv-server binary "
                  "(RESP_TARGET=redis tests against redis-server only)")
        if os.environ.get("RESP_TARGET") == "paxkv":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary
