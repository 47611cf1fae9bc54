"""A real 3-node paxkv cluster for the tests: the built kv-server, on free [::1] ports, in a
temporary directory; every process is stopped at teardown.

The kv-server binary is PAXKV_SERVER if set, else built by cargo (release, like the README's
local cluster) from this repository.
"""

import itertools
import json
import os
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import paxkv

REPOSITORY = Path(__file__).resolve().parents[2]
SECRET = "python-client-test-secret-0123456789"
# How long a stopped node may take to exit before it is killed.
STOP_SECONDS = 10


def _build_server() -> str:
    command = [
        "cargo", "build", "--release", "--locked", "--quiet", "-p", "paxkv-server",
        "--bin", "kv-server", "--message-format=json-render-diagnostics",
    ]
    built = subprocess.run(command, cwd=REPOSITORY, stdout=subprocess.PIPE, text=True, check=True)
    for line in built.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            if Path(message["executable"]).name == "kv-server":
                return message["executable"]
    raise RuntimeError("cargo built no kv-server executable")


@pytest.fixture(scope="session")
def server_binary() -> str:
    return os.environ.get("PAXKV_SERVER") or _build_server()


# Node ports come from below Linux's range for outgoing connections (32768..61000): a port the
# OS picked and released could go to a client's outgoing connection before the node binds it,
# and the node would fail to start. Each is handed out once per test run and checked free.
PORT_FIRST = 20_000
PORT_COUNT = 12_000
_next_port = itertools.count(os.getpid() % PORT_COUNT)


def free_port() -> int:
    for _ in range(PORT_COUNT):
        port = PORT_FIRST + next(_next_port) % PORT_COUNT
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("::1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_FIRST}..{PORT_FIRST + PORT_COUNT}")


class LocalCluster:
    """Nodes 1..size of one cluster, each a kv-server process."""

    def __init__(self, binary: str, size: int = 3):
        self.binary = binary
        self.dir = tempfile.TemporaryDirectory(prefix="paxkv-py-")
        root = Path(self.dir.name)
        self.secret_file = str(root / "secret")
        Path(self.secret_file).write_text(SECRET)
        self.client_addrs = {node: f"[::1]:{free_port()}" for node in range(1, size + 1)}
        self.peer_addrs = {node: f"[::1]:{free_port()}" for node in range(1, size + 1)}
        self.processes: Dict[int, subprocess.Popen] = {}
        for node in self.client_addrs:
            self.start(node)

    @property
    def endpoints(self) -> List[str]:
        return list(self.client_addrs.values())

    def client(self, **options) -> paxkv.Client:
        return paxkv.Client(self.endpoints, cluster_secret_file=self.secret_file, **options)

    def async_client(self, **options) -> paxkv.AsyncClient:
        return paxkv.AsyncClient(self.endpoints, cluster_secret_file=self.secret_file, **options)

    def start(self, node: int) -> None:
        root = Path(self.dir.name)
        peers = ",".join(f"{other}={address}" for other, address in self.peer_addrs.items())
        log = open(root / f"node-{node}.log", "ab")
        self.processes[node] = subprocess.Popen(
            [
                self.binary, "--id", str(node),
                "--client-addr", self.client_addrs[node],
                "--peer-addr", self.peer_addrs[node],
                "--peers", peers,
                "--data-dir", str(root / f"node-{node}"),
                "--cluster-secret-file", self.secret_file,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def leader(self, client: paxkv.Client) -> Optional[int]:
        """The node that says it leads, if one does."""
        for status in client.status().values():
            if status.get("role") == "leader":
                return status["node_id"]
        return None

    def kill(self, node: int) -> None:
        """kill -9: no chance to flush or say goodbye."""
        process = self.processes.pop(node)
        process.kill()
        process.wait(timeout=STOP_SECONDS)

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        self.dir.cleanup()


def _started(binary: str) -> LocalCluster:
    cluster = LocalCluster(binary)
    try:
        # A write goes through once a leader is elected; the client retries until then.
        with cluster.client(timeout=30) as client:
            client.put("cluster-ready", "yes")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def cluster(server_binary: str):
    """One cluster shared by the tests that do not harm it."""
    running = _started(server_binary)
    yield running
    running.stop()


@pytest.fixture
def own_cluster(server_binary: str):
    """A cluster of the test's own, for tests that kill nodes."""
    running = _started(server_binary)
    yield running
    running.stop()


@pytest.fixture
def kv(cluster: LocalCluster):
    with cluster.client() as client:
        yield client


@pytest.fixture
def prefix(request) -> str:
    """A key prefix no other test uses."""
    return f"{request.node.name}/"
