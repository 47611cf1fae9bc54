"""Every method of paxkv.Client against a real 3-node cluster."""

import datetime
import pydoc
import time
from importlib import resources

import pytest

import paxkv


def wait_until(condition, seconds: float, what: str) -> float:
    """Polls `condition` until it holds (time-based events such as expiry cannot be awaited);
    returns when it first held, by time.monotonic()."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def test_put_then_get_returns_bytes_for_str_and_bytes(kv, prefix):
    first = kv.put(prefix + "text", "héllo")
    second = kv.put((prefix + "raw").encode(), b"\x00\xff")
    third = kv.put(bytearray((prefix + "array").encode()), bytearray(b"ab"))
    assert first < second < third
    assert kv.get(prefix + "text") == "héllo".encode()
    assert kv.get((prefix + "text").encode()) == "héllo".encode()
    assert kv.get(prefix + "raw") == b"\x00\xff"
    assert kv.get(prefix + "array") == b"ab"
    assert kv.get(prefix + "missing") is None


def test_reads_at_every_consistency_see_a_write_made_before(kv, prefix):
    kv.put(prefix + "k", "v")
    assert kv.get(prefix + "k", consistency="linearizable") == b"v"
    assert kv.get(prefix + "k", consistency="session") == b"v"
    # A stale read may be behind, but a node catches up: it sees the write soon.
    wait_until(lambda: kv.get(prefix + "k", consistency="stale") == b"v", 10, "stale read")


def test_get_with_meta_reports_revision_version_lease_and_ttl(kv, prefix):
    created = kv.put(prefix + "k", "one")
    updated = kv.put(prefix + "k", "two", ttl=60)
    entry = kv.get_with_meta(prefix + "k")
    assert entry == paxkv.Entry(
        value=b"two", revision=updated, create_revision=created, version=2, lease=None, ttl=entry.ttl
    )
    assert 50 < entry.ttl <= 60
    assert kv.get_with_meta(prefix + "missing") is None


def test_delete_says_whether_the_key_existed(kv, prefix):
    kv.put(prefix + "k", "v")
    assert kv.delete(prefix + "k") is True
    assert kv.get(prefix + "k") is None
    assert kv.delete(prefix + "k") is False


def test_compare_and_set_writes_only_at_the_expected_revision(kv, prefix):
    key = prefix + "k"
    assert kv.compare_and_set(key, 0, "first") is True
    assert kv.compare_and_set(key, 0, "again") is False
    revision = kv.get_with_meta(key).revision
    assert kv.compare_and_set(key, revision + 1000, "wrong") is False
    assert kv.compare_and_set(key, revision, "second") is True
    assert kv.get(key) == b"second"


def test_compare_and_set_keeps_a_lease_or_a_ttl_only_when_asked(kv, prefix):
    # A leader claim held under a lease, updated by compare-and-set: passing the lease keeps
    # it attached (revoking the lease still deletes the key); without it the key would
    # outlive the lease, as a plain put would.
    lease = kv.lease_grant(30)
    key = prefix + "leader"
    assert kv.compare_and_set(key, 0, "me", lease=lease) is True
    revision = kv.get_with_meta(key).revision
    assert kv.compare_and_set(key, revision, "me, still", lease=lease) is True
    assert kv.get_with_meta(key).lease == lease.id
    assert lease.revoke() == 1
    assert kv.get(key) is None
    # A TTL: kept with keep_ttl=True, replaced with ttl=, cleared by neither.
    key = prefix + "ttl"
    kv.put(key, "v", ttl=60)
    revision = kv.get_with_meta(key).revision
    assert kv.compare_and_set(key, revision, "w", keep_ttl=True) is True
    entry = kv.get_with_meta(key)
    assert entry.value == b"w" and 50 < entry.ttl <= 60
    assert kv.compare_and_set(key, entry.revision, "x", ttl=5) is True
    entry = kv.get_with_meta(key)
    assert 0 < entry.ttl <= 5
    assert kv.compare_and_set(key, entry.revision, "y") is True
    assert kv.get_with_meta(key).ttl is None
    with pytest.raises(paxkv.InvalidArgument, match="not both"):
        kv.compare_and_set(key, 0, "z", ttl=5, keep_ttl=True)


def test_compare_and_delete_and_previous_values(kv, prefix):
    key = prefix + "lock"
    first = kv.put(key, "mine", ttl=60)
    written = kv.put(key, "still mine", prev_kv=True)
    assert isinstance(written, paxkv.Written) and written.revision > first
    assert written.previous.value == b"mine" and written.previous.revision == first
    assert 50 < written.previous.ttl <= 60
    assert kv.put(prefix + "new", "v", prev_kv=True).previous is None
    # Someone else's revision: nothing deleted, and the answer shows the key as it is.
    assert kv.delete(key, expected_revision=first) is False
    refused = kv.delete(key, expected_revision=first, prev_kv=True)
    assert refused.deleted is False and refused.previous.value == b"still mine"
    assert kv.get(key) == b"still mine"
    done = kv.delete(key, expected_revision=written.revision, prev_kv=True)
    assert done.deleted is True and done.previous.revision == written.revision
    assert kv.get(key) is None
    missing = kv.delete(key, prev_kv=True)
    assert missing.deleted is False and missing.previous is None and missing.revision > 0


def test_create_raises_conflict_when_the_key_exists(kv, prefix):
    revision = kv.create(prefix + "lock", "me", ttl=30)
    assert kv.get_with_meta(prefix + "lock").revision == revision
    with pytest.raises(paxkv.ConflictError, match="already exists"):
        kv.create(prefix + "lock", "someone else")
    assert kv.get(prefix + "lock") == b"me"


def test_scan_iterates_across_pages_in_key_order(kv, prefix):
    keys = [f"{prefix}item/{index:04}" for index in range(250)]
    for key in keys:
        kv.put(key, key.upper())
    kv.put(prefix + "other", "not in the scan")
    pairs = list(kv.scan(prefix + "item/", page_size=64))
    assert [key for key, _ in pairs] == [key.encode() for key in keys]
    assert all(value == key.upper() for key, value in pairs)
    assert [key for key, _ in kv.scan(prefix + "item/", limit=70, page_size=32)] == [
        key.encode() for key in keys[:70]
    ]
    assert list(kv.scan(prefix + "item/", limit=0)) == []
    assert list(kv.scan(prefix + "nothing/")) == []


def test_a_ttl_key_expires_on_time_and_not_before(kv, prefix):
    key = prefix + "short"
    before = time.monotonic()
    kv.put(key, "v", ttl=datetime.timedelta(milliseconds=800))
    left = kv.ttl(key)
    assert left is not None and 0 < left <= 0.8
    gone_at = wait_until(lambda: kv.get(key) is None, 10, "expiry")
    # Expiry is counted in the cluster's log time, which starts after we sent the put.
    assert gone_at - before >= 0.8 * 0.95
    with pytest.raises(paxkv.NotFound):
        kv.ttl(key)


def test_expire_persist_and_keep_ttl(kv, prefix):
    key = prefix + "k"
    kv.put(key, "v")
    assert kv.ttl(key) is None
    assert kv.expire(prefix + "missing", 10) is False
    assert kv.expire(key, 100, condition="xx") is False
    assert kv.expire(key, 100, condition="nx") is True
    assert kv.expire(key, 50, condition="gt") is False
    assert kv.expire(key, 50, condition="lt") is True
    assert 40 < kv.ttl(key) <= 50
    kv.put(key, "still expiring", keep_ttl=True)
    assert 40 < kv.ttl(key) <= 50
    assert kv.persist(key) is True
    assert kv.ttl(key) is None
    assert kv.persist(key) is False
    kv.expire(key, 60)
    kv.put(key, "permanent again")
    assert kv.ttl(key) is None


def test_a_lease_keeps_its_keys_until_revoked(kv, prefix):
    lease = kv.lease_grant(30)
    assert lease.ttl == 30
    kv.put(prefix + "a", "1", lease=lease)
    kv.put(prefix + "b", "2", lease=lease.id)
    status = lease.time_to_live(keys=True)
    assert status.id == lease.id and status.granted == 30 and 0 < status.remaining <= 30
    assert sorted(status.keys) == [(prefix + "a").encode(), (prefix + "b").encode()]
    assert kv.get_with_meta(prefix + "a").lease == lease.id
    assert lease.keep_alive() == 30
    assert lease.revoke() == 2
    assert kv.get(prefix + "a") is None and kv.get(prefix + "b") is None
    with pytest.raises(paxkv.NotFound):
        lease.keep_alive()
    with pytest.raises(paxkv.NotFound):
        kv.put(prefix + "c", "3", lease=lease)


def test_a_lease_as_context_manager_is_revoked_on_exit(kv, prefix):
    with kv.lease_grant(30) as lease:
        kv.put(prefix + "k", "v", lease=lease)
        assert kv.get(prefix + "k") == b"v"
    assert kv.get(prefix + "k") is None
    with pytest.raises(paxkv.NotFound):
        lease.time_to_live()


def test_a_lease_left_alone_expires_with_its_keys(kv, prefix):
    lease = kv.lease_grant(0.5)
    kv.put(prefix + "k", "v", lease=lease)
    wait_until(lambda: kv.get(prefix + "k") is None, 10, "lease expiry")
    with pytest.raises(paxkv.NotFound):
        lease.keep_alive()
    with lease:  # Exiting does not fail on a lease that is already gone.
        pass


def test_status_has_a_dict_per_node_and_one_leader(kv, cluster):
    statuses = kv.status()
    assert sorted(statuses) == sorted(cluster.endpoints)
    assert all(status["reachable"] for status in statuses.values())
    leaders = [status["node_id"] for status in statuses.values() if status["role"] == "leader"]
    assert len(leaders) == 1
    assert {status["node_id"] for status in statuses.values()} == {1, 2, 3}
    assert all(status["leader_id"] == leaders[0] for status in statuses.values())


def test_a_closed_client_refuses_calls(cluster):
    with cluster.client() as client:
        client.put("closed-test", "v")
    with pytest.raises(paxkv.Error, match="closed"):
        client.get("closed-test")


def test_endpoints_as_one_string_and_repr(cluster):
    with paxkv.Client(" , ".join(cluster.endpoints), cluster_secret_file=cluster.secret_file) as client:
        assert client.endpoints == cluster.endpoints
        assert client.get("cluster-ready") == b"yes"
        assert repr(client) == f"paxkv.Client({','.join(cluster.endpoints)!r})"


def test_help_shows_docstrings_and_the_package_ships_type_stubs():
    text = pydoc.render_doc(paxkv.Client, renderer=pydoc.plaintext)
    assert "Writes ``value`` under ``key``; returns the revision" in text
    assert "linearizable" in text and "compare_and_set" in text
    package = resources.files("paxkv")
    for name in ("py.typed", "_client.pyi", "_native.pyi"):
        assert package.joinpath(name).is_file(), name


def test_members_are_listed_added_refused_and_removed(own_cluster):
    with own_cluster.client(timeout=10) as kv:
        members = kv.members()
        assert [m["node_id"] for m in members["members"] if m["voter"]] == [1, 2, 3]
        assert members["change_in_progress"] is False
        assert all(m["peer_address"] for m in members["members"])
        # A learner at an address where no node runs yet: added, but not promoted.
        added = kv.member_add("[::1]:1", "[::1]:2")
        assert added["node_id"] == 4
        learner = [m for m in added["members"] if m["node_id"] == 4][0]
        assert learner["voter"] is False and learner["peer_address"] == "[::1]:1"
        assert kv.member_add("[::1]:1")["node_id"] == 4, "asking again gives the same id"
        with pytest.raises(paxkv.MembershipRefused, match="has not answered"):
            kv.member_promote(4)
        removed = kv.member_remove(4)
        assert removed["retired"] == [4]
        assert len(removed["members"]) == 3
        kv.put("still", "serving")
        assert kv.get("still") == b"serving"
