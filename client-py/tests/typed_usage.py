"""Not a test: a program that mypy --strict checks against paxkv's stubs
(test_usability.test_the_stubs_type_check_a_program_that_uses_every_method). Each
``assert_type`` fails the check if a method's stub says something else."""

import asyncio
from typing import List, Optional, Union, assert_type

import paxkv


def blocking(kv: paxkv.Client) -> None:
    assert_type(kv.put("k", "v", ttl=1.5, timeout=2), int)
    assert_type(kv.put("k", b"v", prev_kv=True), paxkv.Written)
    assert_type(kv.create("k", "v"), int)
    assert_type(kv.compare_and_set("k", 1, "v", keep_ttl=True), bool)
    assert_type(kv.get("k", min_revision=3), Optional[bytes])
    assert_type(kv.get_with_meta("k", consistency="stale"), Optional[paxkv.Entry])
    assert_type(kv.delete("k"), bool)
    assert_type(kv.delete("k", expected_revision=2, prev_kv=True), paxkv.Deleted)
    for item in kv.scan("p/", keys_only=True):
        assert_type(item, paxkv.Item)
        assert_type(item.revision, int)
        assert_type(item.ttl, Optional[float])
        key, value = item
        assert_type(value, Optional[bytes])
    assert_type(kv.ttl("k"), Optional[float])
    assert_type(kv.expire("k", 10, condition="gt"), bool)
    assert_type(kv.persist("k"), bool)
    with kv.lease_grant(10) as lease:
        assert_type(lease, paxkv.Lease)
        assert_type(lease.keep_alive(), float)
        assert_type(lease.revoke(), int)
        assert_type(lease.time_to_live(keys=True).keys, List[bytes])
        assert_type(lease.lost, Optional[paxkv.Error])
    members = kv.members()
    assert_type(members["members"][0]["voter"], bool)
    assert_type(kv.member_add("[::1]:7104")["node_id"], Optional[int])
    assert_type(kv.status()["[::1]:7001"]["reachable"], bool)
    assert_type(paxkv.Client.from_url("paxkv://s@[::1]:7001"), paxkv.Client)
    with kv.watch_prefix("config/", prev_kv=True, progress=1.0) as watch:
        for event in watch:
            assert_type(event, paxkv.Event)
            assert_type(event.value, Optional[bytes])
            assert_type(event.previous, Optional[paxkv.Entry])
            assert_type(watch.revision, int)
            break
    assert_type(kv.delete_range("a", b"c", timeout=1), int)
    compare = paxkv.Compare.value("mode") == b"on"
    assert_type(compare, paxkv.Compare)
    assert_type(paxkv.Compare.mod_revision("k") != 5, paxkv.Compare)
    assert_type(paxkv.Compare.create_revision("k") > 1, paxkv.Compare)
    assert_type(paxkv.Compare.version("k") < 3, paxkv.Compare)
    assert_type(paxkv.Compare.lease("k") == 0, paxkv.Compare)
    result = kv.transaction(
        compare=[compare, paxkv.Compare.exists("a"), paxkv.Compare.absent(b"b")],
        success=[
            paxkv.Op.put("a", "1", ttl=2.5),
            paxkv.Op.put("l", "v", lease=lease, keep_ttl=False),
            paxkv.Op.delete("b"),
            paxkv.Op.delete_prefix("p/"),
            paxkv.Op.delete_range("r/a", "r/z"),
            paxkv.Op.get("c"),
        ],
        failure=[paxkv.Op.get("a")],
        timeout=3,
    )
    assert_type(result, paxkv.TxnResult)
    assert_type(result.succeeded, bool)
    assert_type(result.revision, int)
    assert_type(result.results, List[Union[int, paxkv.Item, None]])
    with kv.lock("jobs/nightly", ttl=10, timeout=5) as lock:
        assert_type(lock, paxkv.Lock)
        assert_type(lock.token, int)
        assert_type(lock.lost, bool)
        assert_type(lock.key, bytes)
        assert_type(lock.held, paxkv.Compare)
        kv.transaction([lock.held], [paxkv.Op.put("counter", "1")])
        assert_type(lock.unlock(timeout=1), None)
    election = kv.election("svc/leader")
    assert_type(election, paxkv.Election)
    with election.campaign(b"10.0.0.7", ttl=10, timeout=None) as leadership:
        assert_type(leadership, paxkv.Leadership)
        assert_type(leadership.token, int)
        assert_type(leadership.proclaim("10.0.0.8"), bool)
        assert_type(leadership.held, paxkv.Compare)
        leadership.resign()
    assert_type(election.leader(), Optional[paxkv.Item])
    with election.observe(timeout=2) as observer:
        for leader in observer:
            assert_type(leader, Optional[paxkv.Item])
            break


async def asynchronous(kv: paxkv.AsyncClient) -> None:
    assert_type(await kv.put("k", "v"), int)
    assert_type(await kv.get("k", timeout=1), Optional[bytes])
    assert_type(await kv.delete("k", prev_kv=True), paxkv.Deleted)
    async for item in kv.scan("p/"):
        assert_type(item, paxkv.Item)
    lease = await kv.lease_grant(10)
    assert_type(lease, paxkv.AsyncLease)
    async with lease:
        assert_type(await lease.keep_alive(), float)
        assert_type(await lease.time_to_live(), paxkv.LeaseStatus)
        assert_type(await lease.revoke(), int)
    assert_type(await kv.members(), paxkv._client.Members)
    assert_type(paxkv.AsyncClient.from_url("paxkv://[::1]:7001"), paxkv.AsyncClient)
    async for event in kv.watch("config/mode", start_revision=3):
        assert_type(event, paxkv.Event)
        break
    assert_type(await kv.delete_range("a", "b"), int)
    result = await kv.transaction([paxkv.Compare.absent("k")], [paxkv.Op.put("k", "v")], timeout=1)
    assert_type(result, paxkv.TxnResult)
    async with kv.lock("jobs/nightly", ttl=10, timeout=5) as lock:
        assert_type(lock, paxkv.AsyncLock)
        assert_type(lock.token, int)
        assert_type(lock.lost, bool)
        await kv.transaction(compare=[lock.held], success=[paxkv.Op.put("counter", "1")])
    held = await kv.lock("jobs/nightly")
    assert_type(held, paxkv.AsyncLock)
    await held.unlock()
    election = kv.election("svc/leader")
    assert_type(election, paxkv.AsyncElection)
    leadership = await election.campaign("10.0.0.7", ttl=10)
    assert_type(leadership, paxkv.AsyncLeadership)
    assert_type(await leadership.proclaim(b"10.0.0.8"), bool)
    await leadership.resign()
    async with election.campaign("10.0.0.7") as leading:
        assert_type(leading, paxkv.AsyncLeadership)
    assert_type(await election.leader(), Optional[paxkv.Item])
    async for leader in election.observe():
        assert_type(leader, Optional[paxkv.Item])
        break
    await kv.close()


if __name__ == "__main__":
    asyncio.run(asynchronous(paxkv.AsyncClient.from_url("paxkv://[::1]:7001")))
