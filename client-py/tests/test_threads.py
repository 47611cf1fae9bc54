"""One Client shared by many threads."""

import threading

import paxkv

THREADS = 16
WRITES_PER_THREAD = 40


def test_many_threads_share_one_client(kv, prefix):
    failures = []
    start = threading.Barrier(THREADS)

    def worker(number: int) -> None:
        try:
            start.wait()
            for index in range(WRITES_PER_THREAD):
                key = f"{prefix}{number}/{index}"
                kv.put(key, f"{number}:{index}")
                assert kv.get(key) == f"{number}:{index}".encode()
            counter = f"{prefix}counter"
            while True:  # Every thread adds one, by compare-and-set.
                entry = kv.get_with_meta(counter)
                current = 0 if entry is None else int(entry.value)
                if kv.compare_and_set(counter, 0 if entry is None else entry.revision, str(current + 1)):
                    break
        except BaseException as error:  # Reported by the main thread.
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(list(kv.scan(prefix, page_size=1000))) == THREADS * WRITES_PER_THREAD + 1
    assert kv.get(f"{prefix}counter") == str(THREADS).encode()


def test_clients_in_threads_each_with_their_own_connections(cluster, prefix):
    failures = []

    def worker(number: int) -> None:
        try:
            with cluster.client() as client:
                client.put(f"{prefix}{number}", "v")
        except paxkv.Error as error:
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with cluster.client() as client:
        assert len(list(client.scan(prefix))) == 8
