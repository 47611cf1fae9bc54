"""Not a test: a program that mypy --strict checks against paxkv's stubs
(test_usability.test_the_stubs_type_check_a_program_that_uses_every_method). Each
``assert_type`` fails the check if a method's stub says something else."""

import asyncio
from typing import List, Optional, assert_type

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
    with kv.watch_prefix("config/", prev_kv=True) as watch:
        for event in watch:
            assert_type(event, paxkv.Event)
            assert_type(event.value, Optional[bytes])
            assert_type(event.previous, Optional[paxkv.Entry])
            assert_type(watch.revision, int)
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
    await kv.close()


if __name__ == "__main__":
    asyncio.run(asynchronous(paxkv.AsyncClient.from_url("paxkv://[::1]:7001")))
