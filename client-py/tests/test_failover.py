"""kill -9 of the leader while writes go on: the client keeps working and no acknowledged write
is lost."""

import threading

import paxkv

WRITES_BEFORE_KILL = 100
WRITES_AFTER_KILL = 200
WRITERS = 4


def test_writes_survive_the_leader_being_killed(own_cluster):
    acknowledged = {}  # key -> (value, revision)
    unknown = []
    failures = []
    progress = threading.Condition()
    killed = threading.Event()
    after_kill = [0]

    with own_cluster.client(timeout=15) as kv:
        leader = own_cluster.leader(kv)
        assert leader is not None

        def writer(number: int) -> None:
            index = 0
            try:
                while True:
                    with progress:
                        if after_kill[0] >= WRITES_AFTER_KILL:
                            return
                    key, value = f"failover/{number}/{index}", f"{number}:{index}"
                    index += 1
                    try:
                        revision = kv.put(key, value)
                    except paxkv.Timeout:
                        unknown.append(key)  # May or may not have been applied: not judged.
                        continue
                    with progress:
                        acknowledged[key] = (value, revision)
                        if killed.is_set():
                            after_kill[0] += 1
                        progress.notify_all()
            except BaseException as error:  # Reported by the main thread.
                failures.append(error)
                with progress:
                    progress.notify_all()

        writers = [threading.Thread(target=writer, args=(number,)) for number in range(WRITERS)]
        for thread in writers:
            thread.start()
        with progress:
            assert progress.wait_for(lambda: len(acknowledged) >= WRITES_BEFORE_KILL or failures, timeout=60)
        own_cluster.kill(leader)  # Writes are in flight on the other threads.
        killed.set()
        for thread in writers:
            thread.join(timeout=120)
            assert not thread.is_alive(), "a writer is stuck"

        assert failures == []
        assert len(unknown) <= WRITERS, unknown
        new_leader = own_cluster.leader(kv)
        assert new_leader not in (None, leader)
        for key, (value, revision) in acknowledged.items():
            entry = kv.get_with_meta(key)
            assert entry is not None, f"acknowledged write {key} was lost"
            assert (entry.value, entry.revision) == (value.encode(), revision)
