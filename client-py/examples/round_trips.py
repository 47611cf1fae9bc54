"""Put and get round trips per second from one Python thread (a measurement, not a test).

    python client-py/examples/round_trips.py --endpoints [::1]:7001,[::1]:7002,[::1]:7003 \
        --cluster-secret-file paxkv-local/cluster-secret --seconds 5

Each put is acknowledged only once a quorum has synced it to disk, so put round trips measure
the cluster's commit latency; linearizable gets go to the leader; stale gets to any node.
"""

import argparse
import time

import paxkv


def rate(call, seconds: float) -> float:
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        call(done)
        done += 1
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", default="[::1]:7001,[::1]:7002,[::1]:7003")
    parser.add_argument("--cluster-secret-file", default="paxkv-local/cluster-secret")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--value-bytes", type=int, default=100)
    options = parser.parse_args()
    value = b"v" * options.value_bytes
    with paxkv.Client(options.endpoints, cluster_secret_file=options.cluster_secret_file) as kv:
        key = lambda done: f"round-trips/{done % options.keys}"  # noqa: E731
        for done in range(options.keys):
            kv.put(key(done), value)
        results = {
            "put": rate(lambda done: kv.put(key(done), value), options.seconds),
            "get (linearizable)": rate(lambda done: kv.get(key(done)), options.seconds),
            "get (stale)": rate(lambda done: kv.get(key(done), consistency="stale"), options.seconds),
            "put + get": rate(lambda done: (kv.put(key(done), value), kv.get(key(done))), options.seconds),
        }
    for name, per_second in results.items():
        print(f"{name:>20}: {per_second:8.0f} round trips/s ({1000 / per_second:.3f} ms each)")


if __name__ == "__main__":
    main()
