"""The lock and the election (the Rust client's recipes under Python): fenced writes through a
leader kill, timeouts, release on exceptions, a lost lease, and leadership passing on."""

import asyncio
import multiprocessing
import threading
import time

import pytest

import paxkv
from paxkv import Compare, Op

# Bounds every wait of these tests.
PATIENCE_SECONDS = 30
WORKERS = 3
INCREMENTS_PER_WORKER = 5
INCREMENTS_BEFORE_KILL = 3


def wait_until(condition, what: str) -> None:
    """Polls `condition` (something with nothing to await) until it holds, or fails."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {PATIENCE_SECONDS} s"
        time.sleep(0.05)


def counter(kv: paxkv.Client) -> int:
    value = kv.get("counter")
    return 0 if value is None else int(value)


def queue(kv: paxkv.Client, name: str) -> list:
    """The contenders' keys under a lock's or election's name."""
    return [item.key for item in kv.scan(name + "/")]


def test_fenced_increments_under_a_lock_survive_a_leader_kill(own_cluster):
    written = []  # (revision, token) of every fenced write that succeeded
    unknown = []  # fenced writes that timed out: applied or not
    failures = []
    progress = threading.Condition()
    inside = [0]
    overlaps = [0]

    with own_cluster.client(timeout=15) as kv:
        leader = own_cluster.leader(kv)
        assert leader is not None

        def worker() -> None:
            try:
                for _ in range(INCREMENTS_PER_WORKER):
                    with kv.lock("locks/counter", ttl=3, timeout=PATIENCE_SECONDS) as lock:
                        with progress:
                            inside[0] += 1
                            overlaps[0] += inside[0] > 1
                        following = counter(kv) + 1
                        with progress:
                            inside[0] -= 1
                        try:
                            done = kv.transaction(compare=[lock.held], success=[Op.put("counter", str(following))])
                        except paxkv.Timeout as error:
                            unknown.append(error)
                            continue
                        if done.succeeded:
                            with progress:
                                written.append((done.revision, lock.token))
                                progress.notify_all()
            except BaseException as error:  # Reported by the main thread.
                failures.append(error)
                with progress:
                    progress.notify_all()

        workers = [threading.Thread(target=worker) for _ in range(WORKERS)]
        for thread in workers:
            thread.start()
        with progress:
            assert progress.wait_for(
                lambda: len(written) >= INCREMENTS_BEFORE_KILL or failures, timeout=PATIENCE_SECONDS
            )
        own_cluster.kill(leader)  # Holders are waiting, holding or writing on the other threads.
        written_at_kill = len(written)
        for thread in workers:
            thread.join(timeout=PATIENCE_SECONDS * 2)
            assert not thread.is_alive(), "a worker is stuck"

        assert failures == []
        print(f"{len(written)} fenced increments, {len(unknown)} unknown, {overlaps[0]} overlapping holders seen")
        assert len(written) > written_at_kill, "no fenced write went through after the kill"
        assert len(written) >= WORKERS * INCREMENTS_PER_WORKER - len(unknown) - 2
        # Every fenced write that succeeded counts once (one that timed out may have).
        assert len(written) <= counter(kv) <= len(written) + len(unknown)
        written.sort()
        tokens = [token for _, token in written]
        assert tokens == sorted(set(tokens)), f"fencing tokens do not grow with the writes: {written}"
        # Every holder released: nobody is left in the queue.
        assert queue(kv, "locks/counter") == []


def test_a_lock_not_had_in_time_raises_timeout_and_leaves_nothing_behind(kv, prefix):
    name = prefix + "busy"
    with kv.lock(name) as held:
        started = time.monotonic()
        with pytest.raises(paxkv.Timeout, match="could not be taken before the timeout"):
            kv.lock(name, timeout=0.5)
        assert time.monotonic() - started < 5
        assert queue(kv, name) == [held.key]
        token = held.token
    assert queue(kv, name) == []
    with kv.lock(name, timeout=5) as following:
        assert following.token > token


def test_a_lock_is_released_when_its_block_raises(kv, prefix):
    name = prefix + "lock"
    with pytest.raises(RuntimeError, match="job failed"):
        with kv.lock(name, timeout=5) as lock:
            assert queue(kv, name) == [lock.key]
            raise RuntimeError("job failed")
    assert queue(kv, name) == []
    # Released by the revoke at once, not when its lease runs out (10 s).
    started = time.monotonic()
    with kv.lock(name, timeout=5):
        assert time.monotonic() - started < 5
    lock = kv.lock(name)
    lock.unlock()
    lock.unlock()  # A second unlock does nothing.
    with pytest.raises(paxkv.InvalidArgument, match="name"):
        kv.lock("")


def test_a_holder_whose_lease_is_gone_learns_it_and_its_fenced_writes_are_refused(kv, prefix):
    with kv.lock(prefix + "lock", ttl=0.9) as lock:
        assert not lock.lost
        assert kv.transaction([lock.held], [Op.put(prefix + "state", "1")]).succeeded
        assert lock.held == (Compare.create_revision(lock.key) == lock.token)
        # Someone ends the holder's lease (as a long pause of the holder would let it run out).
        paxkv.Lease(kv, kv.get_with_meta(lock.key).lease, 0.9).revoke()
        wait_until(lambda: lock.lost, "the holder learns its lease is gone")
        refused = kv.transaction([lock.held], [Op.put(prefix + "state", "2")], [Op.get(prefix + "state")])
        assert not refused.succeeded and refused.results[0].value == b"1"
    # Leaving the block after the loss is no error.
    assert kv.get(prefix + "state") == b"1"


def _unlock_in_child(lock: paxkv.Lock, results) -> None:
    try:
        lock.unlock()
        results.put("unlocked")
    except BaseException as error:  # the parent reports it
        results.put(repr(error))


def test_a_forked_child_does_not_release_the_parents_lock(kv, prefix):
    name = prefix + "lock"
    with kv.lock(name) as lock:
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        child = context.Process(target=_unlock_in_child, args=(lock, results))
        child.start()
        child.join(PATIENCE_SECONDS)
        assert child.exitcode == 0
        assert results.get(timeout=1) == "unlocked"
        assert queue(kv, name) == [lock.key]
        assert kv.transaction([lock.held]).succeeded
    assert queue(kv, name) == []


def test_leadership_passes_to_the_next_campaigner_and_observers_follow(kv, prefix):
    name = prefix + "leader"
    election = kv.election(name)
    assert election.leader() is None
    first = election.campaign(b"10.0.0.7", ttl=10)
    with election.observe() as observer:
        seen = next(observer)
        assert (seen.value, seen.key) == (b"10.0.0.7", first.key)
        assert election.leader().value == b"10.0.0.7"

        second = []
        failures = []

        def campaign() -> None:
            try:
                second.append(kv.election(name).campaign("10.0.0.8", timeout=PATIENCE_SECONDS))
            except BaseException as error:  # Reported by the main thread.
                failures.append(error)

        contender = threading.Thread(target=campaign)
        contender.start()
        try:
            wait_until(lambda: len(queue(kv, name)) == 2 or failures, "the second campaigner queues")
            # The first still leads: the second waits its turn.
            assert second == [] and failures == []
            assert first.proclaim("10.0.0.7:8080") is True
            assert next(observer).value == b"10.0.0.7:8080"
            first.resign()
        finally:
            contender.join(PATIENCE_SECONDS)
        assert not contender.is_alive() and failures == []
        with second[0] as leadership:
            assert leadership.token > first.token
            assert next(observer).value == b"10.0.0.8"
            assert election.leader().key == leadership.key
            # The old leader's fence no longer holds, and it proclaims nothing.
            assert not kv.transaction([first.held], [Op.put(prefix + "state", "old")]).succeeded
            assert first.proclaim("late") is False
        assert next(observer) is None
    assert election.leader() is None
    assert queue(kv, name) == []


def test_a_campaign_not_won_in_time_raises_timeout(kv, prefix):
    election = kv.election(prefix + "leader")
    with election.campaign("a"):
        with pytest.raises(paxkv.Timeout, match="leadership"):
            election.campaign("b", timeout=0.3)
        assert len(queue(kv, prefix + "leader")) == 1


def test_the_recipes_on_the_async_client(cluster, prefix):
    async def scenario():
        async with cluster.async_client() as kv:
            async with kv.lock(prefix + "lock", timeout=5) as lock:
                assert isinstance(lock, paxkv.AsyncLock) and not lock.lost
                assert (await kv.transaction([lock.held], [Op.put(prefix + "state", "1")])).succeeded
                with pytest.raises(paxkv.Timeout):
                    await kv.lock(prefix + "lock", timeout=0.3)
            second = await kv.lock(prefix + "lock", timeout=5)
            assert second.token > lock.token
            await second.unlock()

            election = kv.election(prefix + "leader")
            observer = election.observe()
            assert await observer.__anext__() is None
            leading = await election.campaign("a")
            assert (await observer.__anext__()).value == b"a"
            waiting = asyncio.ensure_future(election.campaign("b", timeout=PATIENCE_SECONDS))
            deadline = time.monotonic() + PATIENCE_SECONDS
            while len([item async for item in kv.scan(prefix + "leader/")]) < 2 and not waiting.done():
                assert time.monotonic() < deadline, "the second campaigner never queued"
                await asyncio.sleep(0.05)
            assert await leading.proclaim("a2")
            assert (await observer.__anext__()).value == b"a2"
            assert not waiting.done()  # queued behind the leader
            await leading.resign()
            async with await waiting as following:
                assert following.token > leading.token
                assert (await election.leader()).value == b"b"
                async for leader in observer:
                    assert leader.value == b"b"
                    break
            assert await observer.__anext__() is None
            await observer.aclose()

    asyncio.run(scenario())
