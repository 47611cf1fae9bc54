"""What a new user runs into first: connecting from a URL or the environment, reads at a
revision, scans with metadata, leases kept alive by a ``with`` block, per-call timeouts, named
errors for timeouts and closed clients, logging, fork() and the type stubs."""

import asyncio
import logging
import multiprocessing
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

import paxkv
from conftest import SECRET


def test_a_client_from_a_url_or_from_the_environment(cluster, prefix, monkeypatch):
    secret = urllib.parse.quote(SECRET, safe="")
    url = f"paxkv://{secret}@{','.join(cluster.endpoints)}?timeout=7"
    with paxkv.Client.from_url(url) as kv:
        assert kv.endpoints == cluster.endpoints
        kv.put(prefix + "k", "from a URL")
    monkeypatch.setenv("PAXKV_ENDPOINTS", ",".join(cluster.endpoints))
    monkeypatch.setenv("PAXKV_CLUSTER_SECRET_FILE", cluster.secret_file)
    with paxkv.Client() as kv:
        assert kv.get(prefix + "k") == b"from a URL"
    monkeypatch.delenv("PAXKV_CLUSTER_SECRET_FILE")
    monkeypatch.setenv("PAXKV_CLUSTER_SECRET", SECRET)
    with paxkv.Client() as kv:
        assert kv.get(prefix + "k") == b"from a URL"
    # A URL without a secret takes the environment's too.
    with paxkv.Client.from_url("paxkv://" + ",".join(cluster.endpoints)) as kv:
        assert kv.get(prefix + "k") == b"from a URL"
    monkeypatch.delenv("PAXKV_ENDPOINTS")
    with pytest.raises(paxkv.InvalidArgument, match="PAXKV_ENDPOINTS"):
        paxkv.Client()
    for bad in ["http://[::1]:7001", "paxkv://[::1]:7001?colour=red", "paxkv://[::1]:7001?timeout=soon"]:
        with pytest.raises(paxkv.InvalidArgument):
            paxkv.Client.from_url(bad)


def test_a_read_at_a_revision_and_scans_with_metadata(kv, prefix):
    revision = kv.put(prefix + "a", "1", ttl=60)
    assert kv.get(prefix + "a", min_revision=revision) == b"1"
    assert kv.get_with_meta(prefix + "a", consistency="session", min_revision=revision).revision == revision
    with pytest.raises(paxkv.InvalidArgument, match="stale"):
        kv.get(prefix + "a", consistency="stale", min_revision=revision)
    # A revision nobody wrote yet is waited for, then the read gives up.
    with pytest.raises(paxkv.Timeout):
        kv.get(prefix + "a", min_revision=revision + 1_000_000, timeout=0.5)
    kv.put(prefix + "b", "2")
    items = list(kv.scan(prefix))
    # Items unpack as (key, value), as scans always did ...
    assert [(key, value) for key, value in items] == [((prefix + "a").encode(), b"1"), ((prefix + "b").encode(), b"2")]
    # ... and carry the key's metadata.
    first, second = items
    assert first.key == (prefix + "a").encode() and first.revision == revision and first.version == 1
    assert 50 < first.ttl <= 60 and second.ttl is None and second.lease is None
    assert second.revision > revision
    keys = list(kv.scan(prefix, keys_only=True))
    assert [item.key for item in keys] == [first.key, second.key]
    assert all(item.value is None for item in keys)


def test_a_lease_is_kept_alive_while_its_block_runs(kv, prefix):
    with kv.lease_grant(1) as lease:
        kv.put(prefix + "held", "v", lease=lease)
        # Three times its time to live: it would be long gone without the renewals.
        time.sleep(3)
        assert lease.lost is None
        assert kv.get(prefix + "held") == b"v"
        assert lease.time_to_live().remaining > 0
    # Revoked at the end of the block, with its key.
    assert kv.get(prefix + "held") is None


def test_a_lease_that_ends_during_its_block_says_so(kv, cluster, prefix, caplog):
    caplog.set_level(logging.WARNING, logger="paxkv")
    with pytest.raises(paxkv.LeaseLost, match="ended while the block ran"):
        with kv.lease_grant(1) as lease:
            kv.put(prefix + "held", "v", lease=lease)
            with cluster.client() as other:
                other._execute(other._native.lease, "revoke", lease.id)
            assert lease._stopped.wait(5), "the keep-alive noticed within 5 s"
            assert isinstance(lease.lost, paxkv.NotFound)
    assert any("is gone" in record.getMessage() for record in caplog.records), caplog.text


def test_an_async_lease_is_kept_alive_in_a_task(cluster, prefix):
    async def scenario():
        async with cluster.async_client() as kv:
            lease = await kv.lease_grant(1)
            assert isinstance(lease, paxkv.AsyncLease)
            async with lease:
                await kv.put(prefix + "held", "v", lease=lease)
                await asyncio.sleep(3)
                assert lease.lost is None
                assert (await lease.time_to_live()).remaining > 0
            assert await kv.get(prefix + "held") is None

    asyncio.run(scenario())


class SilentNode:
    """Accepts connections and never answers."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET6)
        self.listener.bind(("::1", 0))
        self.listener.listen(16)
        self.endpoint = f"[::1]:{self.listener.getsockname()[1]}"


def test_per_call_timeouts_and_reads_that_run_out_of_time_are_timeouts():
    silent = SilentNode()
    kv = paxkv.Client(silent.endpoint, timeout=30)
    started = time.monotonic()
    with pytest.raises(paxkv.Timeout) as raised:
        kv.get("k", timeout=0.3)
    assert time.monotonic() - started < 3
    assert isinstance(raised.value, TimeoutError)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        kv.put("k", "v", timeout=0.3)
    assert time.monotonic() - started < 3
    with pytest.raises(paxkv.InvalidArgument):
        kv.get("k", timeout=0)
    silent.listener.close()


def test_a_closed_client_raises_a_named_error(cluster):
    kv = cluster.client()
    kv.close()
    with pytest.raises(paxkv.ClientClosed, match="closed"):
        kv.get("k")
    with pytest.raises(paxkv.ClientClosed):
        list(kv.scan("p"))


def test_retries_and_leader_changes_are_logged_at_debug(cluster, caplog):
    caplog.set_level(logging.DEBUG, logger="paxkv")
    silent = SilentNode()
    # The silent node first: the client gives up on it, retries elsewhere and finds the leader.
    with paxkv.Client([silent.endpoint] + cluster.endpoints, cluster_secret_file=cluster.secret_file) as kv:
        kv.put("logged", "v")
    messages = [record.getMessage() for record in caplog.records if record.name == "paxkv"]
    assert any("paxkv call retrying" in message and silent.endpoint in message for message in messages), messages
    assert any("paxkv leader changed" in message for message in messages), messages
    assert all(record.levelno == logging.DEBUG for record in caplog.records if record.name == "paxkv")
    silent.listener.close()


def _in_child(inherited, endpoints, secret_file, results):
    """Runs in a forked child: the parent's client and a new one."""
    try:
        results.put(("inherited", inherited.get("fork-key", timeout=10)))
        with paxkv.Client(endpoints, cluster_secret_file=secret_file) as fresh:
            fresh.put("fork-child", "written in the child", timeout=10)
            results.put(("fresh", fresh.get("fork-key", timeout=10)))
    except BaseException as error:  # the parent reports it
        results.put(("error", repr(error)))


def test_a_forked_child_gets_a_runtime_of_its_own(kv, cluster):
    kv.put("fork-key", "from the parent")
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_in_child, args=(kv, cluster.endpoints, cluster.secret_file, results))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    answers = dict(results.get(timeout=1) for _ in range(2))
    assert answers == {"inherited": b"from the parent", "fresh": b"from the parent"}, answers
    # The parent's client still works, on its own connections.
    assert kv.get("fork-child") == b"written in the child"


def test_the_stubs_type_check_a_program_that_uses_every_method():
    program = Path(__file__).with_name("typed_usage.py")
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(program)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_scan_over_many_pages_shows_one_revision(kv, prefix):
    for name in "abcdef":
        kv.put(prefix + name, name)
    seen = []
    scan = kv.scan(prefix, page_size=2)
    for item in scan:
        seen.append((item.key.decode()[-1], item.value.decode()))
        if len(seen) == 1:
            # While the first page is read: an overwrite, a delete and a new key, all in pages
            # still to come.
            kv.put(prefix + "e", "changed")
            kv.delete(prefix + "f")
            kv.put(prefix + "d2", "new")
    assert seen == [(name, name) for name in "abcdef"]
    # A new scan shows the changes.
    assert [item.value for item in kv.scan(prefix)] == [b"a", b"b", b"c", b"d", b"new", b"changed"]


def test_a_watch_delivers_every_change_of_a_prefix_in_order(kv, cluster, prefix):
    with kv.watch_prefix(prefix, prev_kv=True) as watch:
        first = kv.put(prefix + "a", "1")
        kv.put(prefix + "a", "2")
        kv.put("elsewhere/" + prefix, "not watched")
        kv.delete(prefix + "a")
        kv.put(prefix + "t", "3", ttl=0.3)
        events = [next(watch) for _ in range(5)]
    assert [(event.kind, event.key.decode()[len(prefix):]) for event in events] == [
        ("put", "a"), ("put", "a"), ("delete", "a"), ("put", "t"), ("expire", "t")
    ]
    assert [event.revision for event in events][0] == first
    assert all(a.revision < b.revision for a, b in zip(events, events[1:]))
    assert events[1].value == b"2" and events[1].previous.value == b"1"
    assert events[2].value is None and events[2].previous.value == b"2"
    # From a past revision: the same changes again, from the history.
    with kv.watch_prefix(prefix, start_revision=first) as replay:
        assert [next(replay).revision for _ in range(5)] == [event.revision for event in events]


def test_a_watch_asked_for_progress_says_how_far_it_got_while_nothing_changes(kv, prefix):
    written = kv.put(prefix + "k", "v")
    started = time.monotonic()
    # Should no notice come, a change after 3 s ends the wait (and fails the test) rather
    # than leaving it hanging.
    fallback = threading.Timer(3, lambda: kv.put(prefix + "quiet", "late"))
    fallback.start()
    try:
        with kv.watch(prefix + "quiet", progress=0.2) as watch:
            event = next(watch)
    finally:
        fallback.cancel()
    assert event.kind == "progress" and event.key == b""
    assert event.revision >= written
    assert time.monotonic() - started < 3
    # Without progress= a quiet stream yields nothing: the first item is the change itself.
    with kv.watch(prefix + "quiet") as watch:
        changed = kv.put(prefix + "quiet", "now")
        event = next(watch)
    assert (event.kind, event.revision) == ("put", changed)


def test_an_async_watch_is_an_async_iterator(cluster, prefix):
    async def scenario():
        async with cluster.async_client() as kv:
            revision = await kv.put(prefix + "k", "v")
            seen = []
            async for event in kv.watch(prefix + "k", start_revision=revision):
                seen.append((event.kind, event.value))
                if len(seen) == 1:
                    await kv.delete(prefix + "k")
                else:
                    break
            assert seen == [("put", b"v"), ("delete", None)]

    asyncio.run(scenario())


def test_delete_prefix_removes_every_key_under_it(kv, prefix):
    for name in "abc":
        kv.put(prefix + name, name)
    kv.put(prefix.rstrip("/") + "-other", "stays")
    assert kv.delete_prefix(prefix) == 3
    assert list(kv.scan(prefix)) == []
    assert kv.get(prefix.rstrip("/") + "-other") == b"stays"
    assert kv.delete_prefix(prefix) == 0
    with pytest.raises(paxkv.InvalidArgument, match="empty prefix"):
        kv.delete_prefix("")
