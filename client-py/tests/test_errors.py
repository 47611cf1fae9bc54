"""Bad input gets a clear exception of the right class, quickly, and leaves data intact."""

import signal
import socket
import threading
import time

import pytest

import paxkv


def test_error_classes_are_also_the_builtin_ones_python_expects():
    assert issubclass(paxkv.Unavailable, ConnectionError)
    assert issubclass(paxkv.Timeout, TimeoutError)
    assert issubclass(paxkv.InvalidArgument, ValueError)
    assert issubclass(paxkv.AuthenticationError, PermissionError)
    assert issubclass(paxkv.NotFound, LookupError)
    for error in (paxkv.Unavailable, paxkv.Timeout, paxkv.InvalidArgument,
                  paxkv.AuthenticationError, paxkv.NotFound, paxkv.ConflictError):
        assert issubclass(error, paxkv.Error)


def test_bad_keys_and_values_are_refused_and_stored_data_stays(kv, prefix):
    kv.put(prefix + "keep", "intact")
    with pytest.raises(paxkv.InvalidArgument, match="empty"):
        kv.put("", "v")
    with pytest.raises(paxkv.InvalidArgument, match="limit is 4096"):
        kv.put("k" * (paxkv.KEY_BYTES_MAX + 1), "v")
    with pytest.raises(paxkv.InvalidArgument, match="limit is 1048576"):
        kv.put(prefix + "keep", b"v" * (paxkv.VALUE_BYTES_MAX + 1))
    started = time.monotonic()
    with pytest.raises(paxkv.InvalidArgument, match="frame"):
        kv.put(prefix + "keep", b"v" * (3 << 20))
    assert time.monotonic() - started < 1, "an oversized request must fail at once, not retry"
    with pytest.raises(TypeError, match="str or bytes"):
        kv.put(42, "v")
    with pytest.raises(TypeError, match="str or bytes"):
        kv.get(None)
    assert kv.get(prefix + "keep") == b"intact"
    assert kv.put(prefix + "max", b"x" * paxkv.VALUE_BYTES_MAX) > 0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda kv: kv.put("k", "v", ttl=0), "positive"),
        (lambda kv: kv.put("k", "v", ttl=-1), "positive"),
        (lambda kv: kv.put("k", "v", ttl=float("nan")), "positive"),
        (lambda kv: kv.put("k", "v", ttl=5, keep_ttl=True), "not both"),
        (lambda kv: kv.put("k", "v", ttl=10**12), "out of range"),
        (lambda kv: kv.get("k", consistency="eventual"), "consistency"),
        (lambda kv: kv.expire("k", 5, condition="sometimes"), "condition"),
        (lambda kv: kv.compare_and_set("k", -1, "v"), "at least 0"),
        (lambda kv: list(kv.scan("p", page_size=0)), "page_size"),
        (lambda kv: list(kv.scan("p", page_size=5000)), "page_size"),
        (lambda kv: kv.lease_grant(0), "positive"),
    ],
)
def test_bad_options_raise_invalid_argument(kv, call, message):
    with pytest.raises(paxkv.InvalidArgument, match=message):
        call(kv)


@pytest.mark.parametrize("endpoints", ["", "::1:7001", "localhost", "[::1]:port", ["[::1]:70000"]])
def test_bad_endpoints_are_refused_with_the_form_they_need(endpoints):
    with pytest.raises(paxkv.InvalidArgument):
        paxkv.Client(endpoints)


def test_a_wrong_cluster_secret_is_an_authentication_error(cluster):
    wrong = paxkv.Client(cluster.endpoints, cluster_secret="not-the-secret-of-this-cluster", timeout=5)
    with pytest.raises(paxkv.AuthenticationError, match="cluster_secret"):
        wrong.get("cluster-ready")
    no_secret = paxkv.Client(cluster.endpoints, timeout=5)
    with pytest.raises(paxkv.AuthenticationError, match="requires the cluster secret"):
        no_secret.put("k", "v")
    with pytest.raises(paxkv.InvalidArgument, match="not both"):
        paxkv.Client(cluster.endpoints, cluster_secret="a", cluster_secret_file=cluster.secret_file)


def test_no_cluster_is_unavailable_after_the_timeout():
    with socket.socket(socket.AF_INET6) as closed:
        closed.bind(("::1", 0))
        port = closed.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(paxkv.Unavailable, match="most nodes are running") as raised:
        paxkv.Client(f"[::1]:{port}", timeout=1).get("k")
    assert 0.9 < time.monotonic() - started < 5
    assert "Connection refused" in str(raised.value)


class SilentNode:
    """Accepts connections and never answers: calls to it wait until their timeout."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET6)
        self.listener.bind(("::1", 0))
        self.listener.listen(16)
        self.endpoint = f"[::1]:{self.listener.getsockname()[1]}"

    def close(self):
        self.listener.close()


def test_a_blocked_call_releases_the_gil_and_gives_way_to_ctrl_c():
    silent = SilentNode()
    try:
        client = paxkv.Client(silent.endpoint, timeout=2)
        finished = threading.Event()

        def blocked_call():
            with pytest.raises(paxkv.Unavailable):
                client.get("k")
            finished.set()

        caller = threading.Thread(target=blocked_call)
        caller.start()
        turns = 0
        while not finished.is_set():
            turns += 1  # Runs only while the other thread does not hold the GIL.
        caller.join()
        assert turns > 10_000

        # A shell starts background jobs with SIGINT ignored, and Python then leaves it so:
        # Ctrl-C (and interrupt_main) would do nothing. Python's own handler is what a user has.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            interrupter = threading.Timer(0.2, lambda: __import__("_thread").interrupt_main())
            started = time.monotonic()
            interrupter.start()
            with pytest.raises(KeyboardInterrupt):
                paxkv.Client(silent.endpoint, timeout=60).get("k")
            assert time.monotonic() - started < 5
        finally:
            signal.signal(signal.SIGINT, previous)
    finally:
        silent.close()
