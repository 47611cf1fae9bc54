"""paxkv.AsyncClient: the same commands as coroutines, on one event loop."""

import asyncio

import pytest

import paxkv


def run(coroutine):
    return asyncio.run(coroutine)


def test_every_command_as_a_coroutine(cluster, prefix):
    async def scenario():
        async with cluster.async_client() as kv:
            revision = await kv.put(prefix + "k", "v", ttl=60)
            assert await kv.get(prefix + "k") == b"v"
            assert await kv.get(prefix + "k", consistency="session") == b"v"
            entry = await kv.get_with_meta(prefix + "k")
            assert entry.revision == revision and entry.version == 1
            assert 50 < await kv.ttl(prefix + "k") <= 60
            assert await kv.persist(prefix + "k") is True
            assert await kv.expire(prefix + "k", 30) is True
            # (the revision moved with persist and expire: compare against the current one)
            current = (await kv.get_with_meta(prefix + "k")).revision
            assert await kv.compare_and_set(prefix + "k", current, "w", keep_ttl=True) is True
            assert 0 < await kv.ttl(prefix + "k") <= 30
            assert (await kv.put(prefix + "k", "x", prev_kv=True)).previous.value == b"w"
            await kv.create(prefix + "new", "n")
            with pytest.raises(paxkv.ConflictError):
                await kv.create(prefix + "new", "again")
            assert [key async for key, _ in kv.scan(prefix)] == [
                (prefix + "k").encode(), (prefix + "new").encode()
            ]
            stale = await kv.delete(prefix + "new", expected_revision=1, prev_kv=True)
            assert stale.deleted is False and stale.previous.value == b"n"
            assert await kv.delete(prefix + "new") is True
            async with await kv.lease_grant(30) as lease:
                await kv.put(prefix + "leased", "v", lease=lease)
                status = await lease.time_to_live(keys=True)
                assert status.keys == [(prefix + "leased").encode()]
                assert await lease.keep_alive() == 30
            assert await kv.get(prefix + "leased") is None
            statuses = await kv.status()
            assert sorted(statuses) == sorted(cluster.endpoints)
        with pytest.raises(paxkv.Error, match="closed"):
            await kv.get(prefix + "k")

    run(scenario())


def test_many_calls_in_flight_at_once(cluster, prefix):
    async def scenario():
        async with cluster.async_client() as kv:
            revisions = await asyncio.gather(*(kv.put(f"{prefix}{index:03}", str(index)) for index in range(200)))
            assert len(set(revisions)) == 200
            values = await asyncio.gather(*(kv.get(f"{prefix}{index:03}") for index in range(200)))
            assert values == [str(index).encode() for index in range(200)]
            pairs = [pair async for pair in kv.scan(prefix, page_size=50)]
            assert len(pairs) == 200

    run(scenario())


def test_errors_are_raised_by_the_awaited_call(cluster):
    async def scenario():
        async with cluster.async_client() as kv:
            with pytest.raises(paxkv.InvalidArgument, match="empty"):
                await kv.put("", "v")
            with pytest.raises(paxkv.NotFound):
                await kv.ttl("no-such-key-anywhere")
        wrong = paxkv.AsyncClient(cluster.endpoints, cluster_secret="not-this-clusters-secret", timeout=5)
        with pytest.raises(paxkv.AuthenticationError):
            await wrong.get("k")

    run(scenario())


def test_a_cancelled_call_leaves_the_client_usable(cluster, prefix):
    async def scenario():
        async with cluster.async_client() as kv:
            calls = [asyncio.ensure_future(kv.put(f"{prefix}{index}", "v")) for index in range(20)]
            for call in calls[::2]:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            assert await kv.put(prefix + "after", "v") > 0
            assert await kv.get(prefix + "after") == b"v"

    run(scenario())


def test_the_event_loop_keeps_running_while_calls_wait(cluster, prefix):
    async def scenario():
        async with cluster.async_client() as kv:
            ticks = 0
            done = asyncio.Event()

            async def ticker():
                nonlocal ticks
                while not done.is_set():
                    ticks += 1
                    await asyncio.sleep(0)

            task = asyncio.ensure_future(ticker())
            for index in range(20):
                await kv.put(f"{prefix}{index}", "v")
            done.set()
            await task
            assert ticks >= 20

    run(scenario())
