"""Transactions, range deletes and compare-and-delete, against the shared cluster."""

import asyncio

import pytest

import paxkv
from paxkv import Compare, Op


def test_compares_on_several_keys_pick_the_branch_and_it_applies_at_one_revision(kv, prefix):
    a, b, c = prefix + "a", prefix + "b", prefix + "c"
    kv.put(a, "1")
    b_revision = kv.put(b, "2")
    transfer = dict(
        compare=[Compare.value(a) == "1", Compare.mod_revision(b) == b_revision, Compare.absent(c)],
        success=[Op.put(a, "10"), Op.put(b, "20"), Op.put(c, "30"), Op.get(a), Op.delete(prefix + "none")],
        failure=[Op.get(a), Op.get(prefix + "none")],
    )
    before = kv.put(prefix + "mark", "x")
    done = kv.transaction(**transfer)
    assert done.succeeded is True and bool(done) is True
    # Three writes, one revision: the next one after the mark.
    assert done.revision == before + 1
    assert done.results[:3] == [done.revision] * 3
    read = done.results[3]
    assert isinstance(read, paxkv.Item)
    assert (read.key, read.value, read.revision) == (a.encode(), b"10", done.revision)
    assert done.results[4] == 0
    for key, value in ((a, b"10"), (b, b"20"), (c, b"30")):
        entry = kv.get_with_meta(key)
        assert (entry.value, entry.revision) == (value, done.revision)

    # The same again: a compare fails now, so the failure branch runs, changing nothing.
    again = kv.transaction(**transfer)
    assert again.succeeded is False and not again
    assert again.revision == done.revision
    assert [item.value if item else None for item in again.results] == [b"10", None]
    assert kv.get_with_meta(b).revision == done.revision


def test_every_compare_target_and_operator(kv, prefix):
    key, missing = prefix + "k", prefix + "missing"
    first = kv.put(key, "m")
    second = kv.put(key, "m2")
    with kv.lease_grant(30) as lease:
        kv.put(prefix + "leased", "v", lease=lease)
        holds = [
            Compare.value(key) == "m2",
            Compare.value(key) != b"other",
            Compare.value(key) > "m",
            Compare.value(key) < "n",
            Compare.mod_revision(key) == second,
            Compare.create_revision(key) == first,
            Compare.version(key) == 2,
            Compare.version(key) > 1,
            Compare.mod_revision(key) < second + 1,
            Compare.lease(prefix + "leased") == lease.id,
            Compare.lease(key) == 0,
            Compare.exists(key),
            Compare.absent(missing),
            Compare.version(missing) == 0,
        ]
        for compare in holds:
            assert kv.transaction([compare]).succeeded, compare
        fails = [
            Compare.value(key) == "m",
            Compare.value(missing) != "anything",  # no key, no value: a value compare fails
            Compare.mod_revision(key) != second,
            Compare.version(key) < 2,
            Compare.lease(key) > 0,
            Compare.exists(missing),
            Compare.absent(key),
        ]
        for compare in fails:
            assert not kv.transaction([compare]).succeeded, compare
        # All of them together: one failing compare is enough.
        assert not kv.transaction(holds + fails[:1]).succeeded
        assert kv.transaction(holds).succeeded


def test_a_branch_that_writes_a_key_twice_is_refused_whole(kv, prefix):
    key, other = prefix + "k", prefix + "other"
    kv.put(key, "before")
    for branch in (
        [Op.put(other, "x"), Op.put(key, "1"), Op.delete(key)],
        [Op.put(other, "x"), Op.put(key, "1"), Op.put(key, "2")],
        [Op.put(other, "x"), Op.put(key, "1"), Op.delete_prefix(prefix)],
    ):
        with pytest.raises(paxkv.InvalidArgument, match="writes each key once"):
            kv.transaction(success=branch)
    # The failure branch is checked too, even when it would not run.
    with pytest.raises(paxkv.InvalidArgument, match="failure branch"):
        kv.transaction([Compare.exists(key)], [Op.get(key)], [Op.put(key, "1"), Op.delete(key)])
    assert kv.get(key) == b"before"
    assert kv.get(other) is None


def test_a_put_with_a_lease_that_is_gone_fails_the_whole_transaction(kv, prefix):
    lease = kv.lease_grant(30)
    lease.revoke()
    kv.put(prefix + "kept", "old")
    with pytest.raises(paxkv.NotFound):
        kv.transaction(
            success=[Op.put(prefix + "plain", "1"), Op.delete(prefix + "kept"), Op.put(prefix + "leased", "2", lease=lease)]
        )
    assert kv.get(prefix + "plain") is None
    assert kv.get(prefix + "kept") == b"old"
    assert kv.get(prefix + "leased") is None
    # With a live lease, and a TTL, the keys are attached as a put would attach them.
    with kv.lease_grant(30) as live:
        kv.transaction(success=[Op.put(prefix + "leased", "2", lease=live), Op.put(prefix + "ttl", "3", ttl=60)])
        assert kv.get_with_meta(prefix + "leased").lease == live.id
        assert 50 < kv.ttl(prefix + "ttl") <= 60
    assert kv.get(prefix + "leased") is None


def test_range_and_prefix_deletes_inside_and_outside_transactions(kv, prefix):
    for name in "abcdef":
        kv.put(prefix + name, name)
    assert kv.delete_range(prefix + "b", prefix + "d") == 2
    assert [item.key.decode()[-1] for item in kv.scan(prefix)] == ["a", "d", "e", "f"]
    assert kv.delete_range(prefix + "b", prefix + "d") == 0
    done = kv.transaction(success=[Op.delete_range(prefix + "a", prefix + "e"), Op.delete_prefix(prefix + "f")])
    assert done.results == [2, 1]
    assert [item.key.decode()[-1] for item in kv.scan(prefix)] == ["e"]
    # An end that does not come after the start (an empty one would mean "one key") is refused.
    for start, end in ((prefix + "d", prefix + "b"), (prefix + "e", prefix + "e"), (prefix + "e", ""), ("", "z")):
        with pytest.raises(paxkv.InvalidArgument):
            kv.delete_range(start, end)
        with pytest.raises(paxkv.InvalidArgument):
            Op.delete_range(start, end)
    with pytest.raises(paxkv.InvalidArgument, match="empty prefix"):
        Op.delete_prefix("")
    assert kv.get(prefix + "e") == b"e"


def test_compare_and_delete_deletes_only_at_the_expected_revision(kv, prefix):
    key = prefix + "k"
    first = kv.put(key, "1")
    current = kv.put(key, "2")
    assert kv.delete(key, expected_revision=first) is False
    stale = kv.delete(key, expected_revision=first, prev_kv=True)
    assert stale.deleted is False and stale.previous.revision == current
    assert kv.get(key) == b"2"
    assert kv.delete(key, expected_revision=current) is True
    assert kv.get(key) is None


def test_compares_and_operations_refuse_mistakes_where_they_are_written(kv, prefix):
    with pytest.raises(TypeError, match="operator"):
        kv.transaction([Compare.value(prefix + "k")])
    with pytest.raises(TypeError, match="checked by the cluster"):
        if Compare.exists(prefix + "k"):
            pass
    with pytest.raises(TypeError, match="> N - 1"):
        Compare.version(prefix + "k") >= 1  # noqa: B015
    with pytest.raises(TypeError, match="str or bytes"):
        Compare.value(prefix + "k") == 5  # noqa: B015
    with pytest.raises(TypeError, match="must be an int"):
        Compare.mod_revision(prefix + "k") == "5"  # noqa: B015
    with pytest.raises(paxkv.InvalidArgument, match="at least 0"):
        Compare.mod_revision(prefix + "k") == -1  # noqa: B015
    with pytest.raises(TypeError, match="a list"):
        kv.transaction(Compare.exists(prefix + "k"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="paxkv.Op items"):
        kv.transaction(success=[Compare.exists(prefix + "k")])  # type: ignore[list-item]
    with pytest.raises(paxkv.InvalidArgument, match="ttl= or keep_ttl"):
        Op.put(prefix + "k", "v", ttl=1, keep_ttl=True)
    # They describe themselves as they were written.
    assert repr(Compare.value("k") == b"v") == "paxkv.Compare.value(b'k') == b'v'"
    assert repr(Compare.absent("k")) == "paxkv.Compare.absent(b'k')"
    assert (Compare.version("k") > 1) == (Compare.version(b"k") > 1)
    assert repr(Op.delete_range("a", "b")) == "paxkv.Op.delete_range(b'a', b'b')"


def test_an_empty_transaction_succeeds_and_writes_nothing(kv, prefix):
    revision = kv.put(prefix + "k", "v")
    done = kv.transaction()
    assert done.succeeded and done.results == [] and done.revision >= revision


def test_transactions_and_range_deletes_on_the_async_client(cluster, prefix):
    async def scenario():
        async with cluster.async_client() as kv:
            await kv.put(prefix + "a", "1")
            done = await kv.transaction(
                [Compare.value(prefix + "a") == "1"], [Op.put(prefix + "b", "2"), Op.get(prefix + "b")], timeout=5
            )
            assert done.succeeded and done.results[1].value == b"2"
            failed = await kv.transaction([Compare.absent(prefix + "a")], failure=[Op.delete(prefix + "a")])
            assert not failed.succeeded and failed.results == [1]
            assert await kv.delete_range(prefix, prefix + "\xff") == 1
            assert [item async for item in kv.scan(prefix)] == []

    asyncio.run(scenario())
