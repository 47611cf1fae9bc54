"""The Redis protocol, command by command, against each target (see conftest.py). Every
expectation is Redis's own reply: the redis target checks the expectation, the paxkv target the
server. Exact error strings are read through a raw connection (redis-py strips the ERR code).
"""

import socket
import threading
import time
from typing import Any, Dict, List, Tuple

import pytest
import redis

from resp_support import Closed, RawConnection, RespError, Target, wait_for

NOT_INTEGER = "ERR value is not an integer or out of range"
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
NOAUTH = "NOAUTH Authentication required."
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."


def error(message: str) -> RespError:
    return RespError(message)


@pytest.fixture
def raw(target: Target):
    with target.raw() as connection:
        yield connection


# ---------------------------------------------------------------- connection


def test_ping_and_echo(r: redis.Redis, raw: RawConnection):
    assert r.ping() is True
    assert raw.call("PING", "hello") == b"hello"
    assert r.echo(b"hi \x00 there") == b"hi \x00 there"
    assert raw.call("PING") == "PONG"
    assert raw.call("PING", "a", "b") == error("ERR wrong number of arguments for 'ping' command")


def test_auth_wrong_password(target: Target):
    with target.raw(auth=False) as connection:
        assert connection.call("AUTH", "not-the-password") == error(WRONGPASS)
        assert connection.call("GET", "x") == error(NOAUTH)
    with pytest.raises(redis.AuthenticationError):
        with target.client(password="not-the-password") as client:
            client.ping()


def test_command_before_auth(target: Target, prefix: str):
    key = prefix + "k"
    with target.raw(auth=False) as connection:
        assert connection.call("SET", key, "v") == error(NOAUTH)
        assert connection.call("GET", key) == error(NOAUTH)
        assert connection.call("AUTH", target.password) == "OK"
        assert connection.call("GET", key) is None
        assert connection.call("SET", key, "v") == "OK"
        assert connection.call("GET", key) == b"v"


def test_hello_3(target: Target, r3: redis.Redis):
    with target.raw(auth=False) as connection:
        hello = connection.call("HELLO", "3", "AUTH", "default", target.password)
        assert isinstance(hello, dict)
        assert hello["proto"] == 3
        # RESP3 from now on: a missing key is a null, an empty hash a map.
        assert connection.call("GET", "no-such-key-anywhere") is None
        assert connection.call("HGETALL", "no-such-key-anywhere") == {}
        back = connection.call("HELLO", "2")
        assert isinstance(back, list)
        assert back[back.index(b"proto") + 1] == 2
    again = r3.execute_command("HELLO", "3")
    assert isinstance(again, dict)
    assert again[b"proto"] == 3


def test_select_0(raw: RawConnection):
    assert raw.call("SELECT", "0") == "OK"
    assert raw.call("SELECT", "x") == error(NOT_INTEGER)


def test_client_name_and_id(raw: RawConnection, r: redis.Redis):
    assert raw.call("CLIENT", "GETNAME") is None
    assert raw.call("CLIENT", "SETNAME", "resp-test") == "OK"
    assert raw.call("CLIENT", "GETNAME") == b"resp-test"
    assert raw.call("CLIENT", "SETNAME", "has space") == error(
        "ERR Client names cannot contain spaces, newlines or special characters.")
    first = raw.call("CLIENT", "ID")
    assert isinstance(first, int)
    assert raw.call("CLIENT", "ID") == first
    assert isinstance(r.client_id(), int)
    assert r.client_id() != first


def test_quit(target: Target):
    with target.raw() as connection:
        assert connection.call("QUIT") == "OK"
        with pytest.raises(Closed):
            connection.reply()


def test_reset(target: Target, prefix: str):
    key = prefix + "k"
    with target.raw() as connection:
        assert connection.call("CLIENT", "SETNAME", "before-reset") == "OK"
        assert connection.call("MULTI") == "OK"
        assert connection.call("SET", key, "v") == "QUEUED"
        assert connection.call("RESET") == "RESET"
        # RESET also undoes AUTH: the connection is back to the default user, who needs the
        # password.
        assert connection.call("GET", key) == error(NOAUTH)
        assert connection.call("AUTH", target.password) == "OK"
        assert connection.call("CLIENT", "GETNAME") is None
        assert connection.call("EXEC") == error("ERR EXEC without MULTI")
        assert connection.call("GET", key) is None


def test_command_count(raw: RawConnection):
    count = raw.call("COMMAND", "COUNT")
    assert isinstance(count, int) and count > 0


def test_info(r: redis.Redis, raw: RawConnection, prefix: str):
    r.set(prefix + "k", "v")
    info = raw.call("INFO")
    assert isinstance(info, bytes)
    assert b"# Server\r\n" in info
    assert b"# Keyspace\r\n" in info
    keyspace = raw.call("INFO", "keyspace")
    assert keyspace.startswith(b"# Keyspace\r\n")
    assert b"db0:keys=" in keyspace
    assert b"# Server" not in keyspace
    parsed = r.info()
    assert isinstance(parsed, dict) and parsed["db0"]["keys"] >= 1


def test_dbsize(r: redis.Redis, prefix: str):
    before = r.dbsize()
    assert isinstance(before, int)
    r.set(prefix + "a", "1")
    r.hset(prefix + "b", "f", "1")
    assert r.dbsize() == before + 2
    r.delete(prefix + "a", prefix + "b")
    assert r.dbsize() == before


# ---------------------------------------------------------------- strings


def test_set_get_conditions(r: redis.Redis, prefix: str):
    key = prefix + "k"
    assert r.get(key) is None
    assert r.set(key, "one", xx=True) is None
    assert r.get(key) is None
    assert r.set(key, "one", nx=True) is True
    assert r.set(key, "two", nx=True) is None
    assert r.get(key) == b"one"
    assert r.set(key, "three", xx=True) is True
    assert r.set(key, "four", get=True) == b"three"
    assert r.set(prefix + "new", "x", get=True) is None
    assert r.get(prefix + "new") == b"x"
    assert r.set(key, b"\x00\xff binary") is True
    assert r.get(key) == b"\x00\xff binary"


def test_set_expiry_options(r: redis.Redis, raw: RawConnection, prefix: str):
    key = prefix + "k"
    assert r.set(key, "v", ex=100)
    assert 98 <= r.ttl(key) <= 100
    assert r.set(key, "v", px=100_000)
    assert 98_000 <= r.pttl(key) <= 100_000
    at = int(time.time()) + 100
    assert r.set(key, "v", exat=at)
    assert r.expiretime(key) == at
    assert r.set(key, "v", pxat=at * 1000 + 123)
    assert r.pexpiretime(key) == at * 1000 + 123
    assert raw.call("SET", key, "v", "PX", "0") == error("ERR invalid expire time in 'set' command")
    assert raw.call("SET", key, "v", "EX", "-1") == error("ERR invalid expire time in 'set' command")
    assert raw.call("SET", key, "v", "EX", "1", "PX", "1") == error("ERR syntax error")
    assert raw.call("SET", key, "v", "NX", "XX") == error("ERR syntax error")
    assert raw.call("SET", key, "v", "EX", "ten") == error(NOT_INTEGER)
    assert r.get(key) == b"v"


def test_keepttl(r: redis.Redis, prefix: str):
    key = prefix + "k"
    r.set(key, "v1", ex=100)
    assert r.set(key, "v2", keepttl=True)
    assert r.get(key) == b"v2"
    assert 98 <= r.ttl(key) <= 100
    # A SET without KEEPTTL clears the TTL.
    assert r.set(key, "v3")
    assert r.ttl(key) == -1


def test_setnx_setex_psetex(r: redis.Redis, raw: RawConnection, prefix: str):
    key = prefix + "k"
    assert r.setnx(key, "a") is True
    assert r.setnx(key, "b") is False
    assert r.get(key) == b"a"
    assert r.setex(key, 100, "c") is True
    assert r.get(key) == b"c" and 98 <= r.ttl(key) <= 100
    assert r.psetex(key, 100_000, "d") is True
    assert r.get(key) == b"d" and 98_000 <= r.pttl(key) <= 100_000
    assert raw.call("SETEX", key, "0", "v") == error("ERR invalid expire time in 'setex' command")
    assert raw.call("PSETEX", key, "0", "v") == error("ERR invalid expire time in 'psetex' command")


def test_getset_getdel(r: redis.Redis, prefix: str):
    key = prefix + "k"
    assert r.getset(key, "a") is None
    assert r.getset(key, "b") == b"a"
    assert r.getdel(key) == b"b"
    assert r.exists(key) == 0
    assert r.getdel(key) is None


def test_getex(r: redis.Redis, raw: RawConnection, prefix: str):
    key = prefix + "k"
    assert r.getex(key, ex=10) is None
    r.set(key, "v")
    assert r.getex(key) == b"v" and r.ttl(key) == -1
    assert r.getex(key, ex=100) == b"v" and 98 <= r.ttl(key) <= 100
    assert r.getex(key, px=200_000) == b"v" and 198_000 <= r.pttl(key) <= 200_000
    at = int(time.time()) + 300
    assert r.getex(key, exat=at) == b"v" and r.expiretime(key) == at
    assert r.getex(key, pxat=at * 1000 + 5) == b"v" and r.pexpiretime(key) == at * 1000 + 5
    assert r.getex(key, persist=True) == b"v" and r.ttl(key) == -1
    assert raw.call("GETEX", key, "PERSIST", "EX", "1") == error("ERR syntax error")


def test_mget_mset_msetnx(r: redis.Redis, raw: RawConnection, prefix: str):
    a, b, c = prefix + "a", prefix + "b", prefix + "c"
    assert r.mset({a: "1", b: "2"}) is True
    assert r.mget(a, c, b) == [b"1", None, b"2"]
    # MSETNX sets all or nothing.
    assert r.msetnx({c: "3", a: "changed"}) is False
    assert r.mget(a, c) == [b"1", None]
    assert r.msetnx({c: "3", prefix + "d": "4"}) is True
    assert r.mget(c, prefix + "d") == [b"3", b"4"]
    assert raw.call("MSET", a) == error("ERR wrong number of arguments for 'mset' command")
    assert raw.call("MSET", a, "1", b) == error("ERR wrong number of arguments for 'mset' command")


def test_incr_decr(r: redis.Redis, raw: RawConnection, prefix: str):
    key = prefix + "n"
    assert r.incr(key) == 1
    assert r.incrby(key, 10) == 11
    assert r.decr(key) == 10
    assert r.decrby(key, 13) == -3
    assert r.get(key) == b"-3"
    text = prefix + "text"
    r.set(text, "abc")
    assert raw.call("INCR", text) == error(NOT_INTEGER)
    assert raw.call("INCRBY", key, "1.5") == error(NOT_INTEGER)
    assert raw.call("DECRBY", key, "x") == error(NOT_INTEGER)
    r.set(text, " 1")
    assert raw.call("INCR", text) == error(NOT_INTEGER)
    big = prefix + "big"
    r.set(big, str(2**63 - 1))
    assert raw.call("INCR", big) == error("ERR increment or decrement would overflow")
    assert r.get(big) == str(2**63 - 1).encode()
    r.set(big, str(-(2**63)))
    assert raw.call("DECRBY", big, "1") == error("ERR increment or decrement would overflow")
    assert raw.call("INCRBY", big, str(2**63)) == error(NOT_INTEGER)
    assert r.get(big) == str(-(2**63)).encode()


def test_incrbyfloat(r: redis.Redis, raw: RawConnection, prefix: str):
    key = prefix + "f"
    r.set(key, "10")
    assert raw.call("INCRBYFLOAT", key, "0.5") == b"10.5"
    r.set(key, "1.5")
    assert raw.call("INCRBYFLOAT", key, "1.5") == b"3"
    assert raw.call("INCRBYFLOAT", prefix + "new", "5.0e3") == b"5000"
    assert raw.call("INCRBYFLOAT", key, "-3") == b"0"
    assert raw.call("INCRBYFLOAT", key, "0.1") == b"0.1"
    assert r.incrbyfloat(key, 0.2) == pytest.approx(0.3)
    r.set(key, "abc")
    assert raw.call("INCRBYFLOAT", key, "1") == error("ERR value is not a valid float")
    assert raw.call("INCRBYFLOAT", prefix + "new", "x") == error("ERR value is not a valid float")


def test_append_strlen(r: redis.Redis, prefix: str):
    key = prefix + "s"
    assert r.strlen(key) == 0
    assert r.append(key, "Hello") == 5
    assert r.append(key, " World") == 11
    assert r.get(key) == b"Hello World"
    assert r.strlen(key) == 11


def test_getrange(r: redis.Redis, prefix: str):
    key = prefix + "s"
    r.set(key, "Hello World")
    assert r.getrange(key, 0, 4) == b"Hello"
    assert r.getrange(key, -5, -1) == b"World"
    assert r.getrange(key, 0, -1) == b"Hello World"
    assert r.getrange(key, -100, 2) == b"Hel"
    assert r.getrange(key, 6, 1000) == b"World"
    assert r.getrange(key, 5, 3) == b""
    assert r.getrange(prefix + "missing", 0, -1) == b""


def test_setrange(r: redis.Redis, prefix: str):
    key = prefix + "s"
    assert r.setrange(key, 5, "ab") == 7
    assert r.get(key) == b"\x00\x00\x00\x00\x00ab"
    r.set(key, "Hello World")
    assert r.setrange(key, 6, "Redis") == 11
    assert r.get(key) == b"Hello Redis"
    assert r.setrange(key, 13, "!") == 14
    assert r.get(key) == b"Hello Redis\x00\x00!"
    # An empty value at an offset changes nothing, not even creates the key.
    assert r.setrange(prefix + "none", 10, "") == 0
    assert r.exists(prefix + "none") == 0


# ---------------------------------------------------------------- keys


def test_del_unlink_exists(r: redis.Redis, prefix: str):
    a, b, c, missing = prefix + "a", prefix + "b", prefix + "c", prefix + "missing"
    r.mset({a: "1", b: "2", c: "3"})
    assert r.exists(a, a, b, missing) == 3
    assert r.delete(a, b, missing) == 2
    assert r.exists(a, b, c) == 1
    assert r.unlink(c, missing) == 1
    assert r.exists(c) == 0


def test_type(r: redis.Redis, prefix: str):
    r.set(prefix + "s", "v")
    r.hset(prefix + "h", "f", "v")
    assert r.type(prefix + "s") == b"string"
    assert r.type(prefix + "h") == b"hash"
    assert r.type(prefix + "none") == b"none"


def test_expire_conditions(r: redis.Redis, raw: RawConnection, prefix: str):
    key = prefix + "k"
    assert r.expire(prefix + "missing", 100) is False
    r.set(key, "v")
    assert r.ttl(key) == -1
    assert r.expire(key, 100, xx=True) is False  # XX: only when there is a TTL
    assert r.expire(key, 100, gt=True) is False  # no TTL counts as infinite
    assert r.expire(key, 100, nx=True) is True
    assert r.expire(key, 200, nx=True) is False
    assert r.expire(key, 50, gt=True) is False
    assert r.expire(key, 300, gt=True) is True
    assert r.expire(key, 400, lt=True) is False
    assert r.expire(key, 150, lt=True) is True
    assert 148 <= r.ttl(key) <= 150
    assert r.expire(key, 250, xx=True) is True
    assert 248 <= r.ttl(key) <= 250
    assert raw.call("EXPIRE", key, "10", "NX", "GT") == error(
        "ERR NX and XX, GT or LT options at the same time are not compatible")
    assert raw.call("EXPIRE", key, "10", "GT", "LT") == error(
        "ERR GT and LT options at the same time are not compatible")
    assert r.pexpire(key, 120_000) is True
    assert 118_000 <= r.pttl(key) <= 120_000
    at = int(time.time()) + 500
    assert r.expireat(key, at) is True
    assert r.expiretime(key) == at
    assert r.pexpireat(key, at * 1000 + 250) is True
    assert r.pexpiretime(key) == at * 1000 + 250
    assert r.pexpire(key, 1_000_000, lt=True) is False
    # A time in the past deletes the key.
    assert r.expire(key, -1) is True
    assert r.exists(key) == 0
    r.set(key, "v")
    assert r.pexpireat(key, 1000) is True
    assert r.exists(key) == 0


def test_ttl_of_missing_and_persistent(r: redis.Redis, prefix: str):
    key = prefix + "k"
    assert r.ttl(key) == -2
    assert r.pttl(key) == -2
    assert r.expiretime(key) == -2
    assert r.pexpiretime(key) == -2
    r.set(key, "v")
    assert r.ttl(key) == -1
    assert r.pttl(key) == -1
    assert r.expiretime(key) == -1
    assert r.pexpiretime(key) == -1


def test_persist(r: redis.Redis, prefix: str):
    key = prefix + "k"
    assert r.persist(key) is False
    r.set(key, "v", ex=100)
    assert r.persist(key) is True
    assert r.ttl(key) == -1
    assert r.persist(key) is False


def test_rename(r: redis.Redis, raw: RawConnection, prefix: str):
    a, b, c = prefix + "a", prefix + "b", prefix + "c"
    assert raw.call("RENAME", a, b) == error("ERR no such key")
    r.set(a, "1", ex=100)
    assert r.rename(a, b) is True
    assert r.exists(a) == 0
    assert r.get(b) == b"1"
    assert 98 <= r.ttl(b) <= 100  # the TTL moves with the value
    r.set(c, "3")
    assert r.rename(b, c) is True  # replaces
    assert r.get(c) == b"1"
    r.hset(a, "f", "v")
    assert r.renamenx(a, c) is False
    assert r.renamenx(a, b) is True
    assert r.hgetall(b) == {b"f": b"v"}
    assert raw.call("RENAMENX", a, b) == error("ERR no such key")
    assert r.rename(c, c) is True


def test_copy(r: redis.Redis, raw: RawConnection, prefix: str):
    a, b = prefix + "a", prefix + "b"
    assert r.copy(a, b) is False
    r.set(a, "1", ex=100)
    assert r.copy(a, b) is True
    assert r.get(b) == b"1" and 98 <= r.ttl(b) <= 100
    r.set(a, "2")
    assert r.copy(a, b) is False
    assert r.get(b) == b"1"
    assert r.copy(a, b, replace=True) is True
    assert r.get(b) == b"2" and r.ttl(b) == -1
    assert raw.call("COPY", a, a) == error("ERR source and destination objects are the same")
    h = prefix + "h"
    r.hset(h, mapping={"f": "1", "g": "2"})
    assert r.copy(h, prefix + "h2") is True
    assert r.hgetall(prefix + "h2") == {b"f": b"1", b"g": b"2"}


def test_scan(r: redis.Redis, prefix: str):
    strings = {f"{prefix}s{i}".encode() for i in range(30)}
    r.mset({key: "v" for key in strings})
    r.hset(prefix + "h", "f", "v")
    everything = set(r.scan_iter(match=prefix + "*", count=5))
    assert everything == strings | {(prefix + "h").encode()}
    assert set(r.scan_iter(match=prefix + "*", count=7, _type="string")) == strings
    assert set(r.scan_iter(match=prefix + "*", _type="hash")) == {(prefix + "h").encode()}
    assert set(r.scan_iter(match=prefix + "s1*")) == {f"{prefix}s{i}".encode() for i in [1] + list(range(10, 20))}
    # One call with a cursor: a cursor and a list, the cursor 0 when done.
    cursor, keys = r.scan(0, match=prefix + "*", count=1000)
    assert isinstance(cursor, int) and isinstance(keys, list)


def test_keys(r: redis.Redis, prefix: str):
    r.mset({prefix + name: "v" for name in ("hello", "hallo", "hxllo", "hllo", "heeeello")})
    assert sorted(r.keys(prefix + "h?llo")) == sorted(
        (prefix + name).encode() for name in ("hello", "hallo", "hxllo"))
    assert sorted(r.keys(prefix + "h*llo")) == sorted(
        (prefix + name).encode() for name in ("hello", "hallo", "hxllo", "hllo", "heeeello"))
    assert sorted(r.keys(prefix + "h[ae]llo")) == sorted((prefix + name).encode() for name in ("hello", "hallo"))
    assert r.keys(prefix + "nothing*") == []


def test_randomkey(r: redis.Redis, prefix: str):
    r.set(prefix + "k", "v")
    key = r.randomkey()
    assert isinstance(key, bytes)
    # Some existing key (another test's keys may share the database; none expire now).
    assert r.exists(key) == 1


def test_key_with_px_expires(r: redis.Redis, prefix: str):
    key = prefix + "k"
    assert r.set(key, "v", px=200)
    assert 0 < r.pttl(key) <= 200
    wait_for("the key set with PX 200 expires", lambda: r.get(key) is None, 5)
    assert r.exists(key) == 0
    assert r.ttl(key) == -2
    r.hset(prefix + "h", "f", "v")
    r.pexpire(prefix + "h", 100)
    wait_for("the hash with PEXPIRE 100 expires", lambda: r.exists(prefix + "h") == 0, 5)
    assert r.type(prefix + "h") == b"none"


# ---------------------------------------------------------------- types


def test_wrongtype(r: redis.Redis, raw: RawConnection, prefix: str):
    h, s = prefix + "h", prefix + "s"
    r.hset(h, "f", "1")
    r.set(s, "1")
    assert raw.call("GET", h) == error(WRONGTYPE)
    assert raw.call("HGET", s, "f") == error(WRONGTYPE)
    assert raw.call("INCR", h) == error(WRONGTYPE)
    assert raw.call("APPEND", h, "x") == error(WRONGTYPE)
    assert raw.call("HSET", s, "f", "v") == error(WRONGTYPE)
    assert raw.call("GETDEL", h) == error(WRONGTYPE)
    assert raw.call("MGET", h, s) == [None, b"1"]  # MGET answers nil for other types
    # SET replaces a value of any type.
    assert r.set(h, "now a string") is True
    assert r.type(h) == b"string"


# ---------------------------------------------------------------- hashes


def test_hash_commands(r: redis.Redis, r3: redis.Redis, raw: RawConnection, prefix: str):
    h = prefix + "h"
    assert r.hset(h, mapping={"a": "1", "b": "2", "c": "3"}) == 3
    assert r.hset(h, mapping={"a": "10", "d": "4"}) == 1
    assert r.hget(h, "a") == b"10"
    assert r.hget(h, "missing") is None
    assert r.hget(prefix + "nohash", "a") is None
    assert r.hmget(h, ["a", "missing", "d"]) == [b"10", None, b"4"]
    everything = {b"a": b"10", b"b": b"2", b"c": b"3", b"d": b"4"}
    assert r.hgetall(h) == everything
    assert r3.hgetall(h) == everything
    assert isinstance(raw.call("HGETALL", h), list)  # a flat list in RESP2
    assert r.hgetall(prefix + "nohash") == {}
    assert r.hexists(h, "b") is True
    assert r.hexists(h, "missing") is False
    assert r.hdel(h, "b", "missing") == 1
    assert r.hlen(h) == 3
    assert sorted(r.hkeys(h)) == [b"a", b"c", b"d"]
    assert sorted(r.hvals(h)) == [b"10", b"3", b"4"]
    assert r.hincrby(h, "a", 5) == 15
    assert r.hincrby(h, "new", -2) == -2
    r.hset(h, "text", "abc")
    assert raw.call("HINCRBY", h, "text", "1") == error("ERR hash value is not an integer")
    assert raw.call("HSET", h, "odd") == error("ERR wrong number of arguments for 'hset' command")
    assert dict(r.hscan_iter(h, match="*", count=2)) == {
        b"a": b"15", b"c": b"3", b"d": b"4", b"new": b"-2", b"text": b"abc"}
    assert dict(r.hscan_iter(h, match="t*")) == {b"text": b"abc"}


def test_hash_gone_with_last_field(r: redis.Redis, prefix: str):
    h = prefix + "h"
    r.hset(h, mapping={"a": "1", "b": "2"})
    assert r.hdel(h, "a", "b") == 2
    assert r.exists(h) == 0
    assert r.type(h) == b"none"
    assert r.hlen(h) == 0


# ---------------------------------------------------------------- transactions


def test_multi_exec(raw: RawConnection, r: redis.Redis, prefix: str):
    key = prefix + "k"
    assert raw.call("MULTI") == "OK"
    assert raw.call("MULTI") == error("ERR MULTI calls can not be nested")
    assert raw.call("SET", key, "5") == "QUEUED"
    assert raw.call("INCR", key) == "QUEUED"
    assert raw.call("GET", key) == "QUEUED"
    assert r.get(key) is None  # nothing happens before EXEC
    assert raw.call("EXEC") == ["OK", 6, b"6"]
    pipe = r.pipeline(transaction=True)
    pipe.incr(key).get(key).hset(prefix + "h", "f", "v")
    assert pipe.execute() == [7, b"7", 1]


def test_runtime_error_inside_exec(raw: RawConnection, r: redis.Redis, prefix: str):
    key = prefix + "k"
    assert raw.call("MULTI") == "OK"
    assert raw.call("SET", key, "abc") == "QUEUED"
    assert raw.call("INCR", key) == "QUEUED"
    assert raw.call("APPEND", key, "d") == "QUEUED"
    # A command that fails when run fails alone; the others are applied.
    assert raw.call("EXEC") == ["OK", error(NOT_INTEGER), 4]
    assert r.get(key) == b"abcd"


def test_discard(raw: RawConnection, r: redis.Redis, prefix: str):
    key = prefix + "k"
    assert raw.call("DISCARD") == error("ERR DISCARD without MULTI")
    assert raw.call("MULTI") == "OK"
    assert raw.call("SET", key, "v") == "QUEUED"
    assert raw.call("DISCARD") == "OK"
    assert r.get(key) is None
    assert raw.call("EXEC") == error("ERR EXEC without MULTI")


def test_execabort(raw: RawConnection, r: redis.Redis, prefix: str):
    key = prefix + "k"
    assert raw.call("MULTI") == "OK"
    assert raw.call("FOOBAR", "x") == error("ERR unknown command 'FOOBAR', with args beginning with: 'x' ")
    assert raw.call("SET", key) == error("ERR wrong number of arguments for 'set' command")
    assert raw.call("SET", key, "1") == "QUEUED"
    assert raw.call("EXEC") == error("EXECABORT Transaction discarded because of previous errors.")
    assert r.get(key) is None
    assert raw.call("EXEC") == error("ERR EXEC without MULTI")


def test_watch_conflict(target: Target, r: redis.Redis, prefix: str):
    key = prefix + "k"
    r.set(key, "start")
    with target.raw() as watcher:
        assert watcher.call("WATCH", key) == "OK"
        r.set(key, "other")
        assert watcher.call("MULTI") == "OK"
        assert watcher.call("WATCH", key) == error("ERR WATCH inside MULTI is not allowed")
        assert watcher.call("SET", key, "mine") == "QUEUED"
        assert watcher.call("SET", prefix + "side", "x") == "QUEUED"
        assert watcher.call("EXEC") is None
    assert r.get(key) == b"other"
    assert r.exists(prefix + "side") == 0
    # The same through redis-py: a nil EXEC is a WatchError.
    with r.pipeline() as pipe:
        pipe.watch(key)
        r.set(key, "again")
        pipe.multi()
        pipe.set(key, "mine")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.get(key) == b"again"


def test_watch_deleted_and_expired_key(target: Target, r: redis.Redis, prefix: str):
    key = prefix + "k"
    r.set(key, "v")
    with target.raw() as watcher:
        assert watcher.call("WATCH", key, prefix + "missing") == "OK"
        r.delete(key)
        assert watcher.call("MULTI") == "OK"
        assert watcher.call("SET", key, "mine") == "QUEUED"
        assert watcher.call("EXEC") is None
        # A watched key created by someone else also breaks the transaction.
        assert watcher.call("WATCH", prefix + "missing") == "OK"
        r.set(prefix + "missing", "now here")
        assert watcher.call("MULTI") == "OK"
        assert watcher.call("SET", key, "mine") == "QUEUED"
        assert watcher.call("EXEC") is None
    assert r.exists(key) == 0


def test_watch_unchanged_and_unwatch(target: Target, r: redis.Redis, prefix: str):
    key = prefix + "k"
    r.set(key, "start")
    with target.raw() as watcher:
        assert watcher.call("WATCH", key) == "OK"
        assert watcher.call("GET", key) == b"start"
        assert watcher.call("MULTI") == "OK"
        assert watcher.call("SET", key, "mine") == "QUEUED"
        assert watcher.call("EXEC") == ["OK"]
        assert r.get(key) == b"mine"
        assert watcher.call("WATCH", key) == "OK"
        r.set(key, "other")
        assert watcher.call("UNWATCH") == "OK"
        assert watcher.call("MULTI") == "OK"
        assert watcher.call("SET", key, "after-unwatch") == "QUEUED"
        assert watcher.call("EXEC") == ["OK"]
    assert r.get(key) == b"after-unwatch"


def test_watch_race_threads(target: Target, prefix: str):
    counter = prefix + "counter"
    threads, increments = 4, 25
    failures: List[BaseException] = []
    retries = [0] * threads

    def work(index: int) -> None:
        try:
            with target.client() as client:
                for _ in range(increments):
                    while True:
                        with client.pipeline(transaction=True) as pipe:
                            try:
                                pipe.watch(counter)
                                value = int(pipe.get(counter) or 0)
                                pipe.multi()
                                pipe.set(counter, value + 1)
                                pipe.execute()
                                break
                            except redis.WatchError:
                                retries[index] += 1
        except BaseException as failure:  # noqa: BLE001 - reported by the main thread
            failures.append(failure)

    workers = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers), "an increment thread hangs"
    assert not failures, failures
    with target.client() as client:
        assert client.get(counter) == str(threads * increments).encode()


# ---------------------------------------------------------------- pub/sub


def _messages(pubsub: Any, wanted: int, seconds: float) -> List[Dict[str, Any]]:
    """Up to `wanted` messages (not subscription confirmations), polled until the deadline."""
    got: List[Dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while len(got) < wanted and time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            got.append(message)
    return got


def _subscribed(pubsub: Any, kind: str) -> None:
    """Waits for the confirmation of a (p)subscribe."""
    def confirmed() -> bool:
        message = pubsub.get_message(timeout=0.1)
        return message is not None and message["type"] == kind
    wait_for(f"{kind} confirmed", confirmed, 5, 0)


def test_keyspace_notifications(target: Target, r: redis.Redis, prefix: str):
    target.enable_keyspace_events(r)
    plain, expiring = prefix + "plain", prefix + "expiring"
    with r.pubsub() as pubsub:
        pubsub.psubscribe(f"__keyspace@0__:{prefix}*")
        _subscribed(pubsub, "psubscribe")
        r.set(plain, "v")
        r.delete(plain)
        r.set(expiring, "v", px=300)
        # Redis sends "set" then "expire" for a SET with a TTL, and "expired" once it expires
        # (found by its expiry cycle: nobody reads the key).
        got = _messages(pubsub, 5, 10)
    events: Dict[bytes, List[bytes]] = {}
    for message in got:
        assert message["type"] == "pmessage"
        assert message["pattern"] == f"__keyspace@0__:{prefix}*".encode()
        events.setdefault(message["channel"], []).append(message["data"])
    assert events == {
        f"__keyspace@0__:{plain}".encode(): [b"set", b"del"],
        f"__keyspace@0__:{expiring}".encode(): [b"set", b"expire", b"expired"],
    }


def test_publish_subscribe(target: Target, r: redis.Redis, prefix: str):
    channel = prefix + "channel"
    # The subscriber and the publisher use the same node: on paxkv a message published on one
    # node may reach only that node's subscribers (pub/sub is not replicated).
    with r.pubsub() as pubsub:
        pubsub.subscribe(channel)
        _subscribed(pubsub, "subscribe")
        assert r.publish(channel, b"hello \x00") >= 1
        got = _messages(pubsub, 1, 5)
    assert [(m["type"], m["channel"], m["data"]) for m in got] == [("message", channel.encode(), b"hello \x00")]
    assert r.publish(prefix + "nobody", "x") == 0


def test_subscribed_connection(target: Target, prefix: str):
    channel = prefix + "channel"
    with target.raw() as connection:
        assert connection.call("SUBSCRIBE", channel) == [b"subscribe", channel.encode(), 1]
        assert connection.call("PING") == [b"pong", b""]
        assert connection.call("GET", "x") == error(
            "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
            "are allowed in this context")
        assert connection.call("UNSUBSCRIBE", channel) == [b"unsubscribe", channel.encode(), 0]
        assert connection.call("GET", prefix + "x") is None


# ---------------------------------------------------------------- errors and raw input


def test_unknown_command(raw: RawConnection):
    assert raw.call("FOOBAR", "x") == error("ERR unknown command 'FOOBAR', with args beginning with: 'x' ")
    assert raw.call("foobar", "x", "y") == error(
        "ERR unknown command 'foobar', with args beginning with: 'x' 'y' ")
    assert raw.call("foobar") == error("ERR unknown command 'foobar', with args beginning with: ")
    assert raw.call("GET") == error("ERR wrong number of arguments for 'get' command")
    assert raw.call("PING") == "PONG"  # the connection goes on


def _closed_with(target: Target, data: bytes) -> bytes:
    """Sends `data` on a fresh authenticated connection and returns all the server answered
    before closing it (fails if it does not close)."""
    with target.raw() as connection:
        connection.send(data)
        answer, closed = connection.read_all_until_closed()
    assert closed, f"the server kept the connection open after {data!r} (answered {answer!r})"
    return answer


def _still_serving(target: Target, key: str, value: bytes) -> None:
    with target.raw() as connection:
        assert connection.call("PING") == "PONG"
        assert connection.call("GET", key) == value


@pytest.mark.parametrize("data, answer", [
    (b"*1\r\n$999999999999\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    (b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    (b"*a\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    (b"*2\r\n$3\r\nGET\r\n:3\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
    (b'SET "unbalanced\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
])
def test_protocol_error_closes(target: Target, r: redis.Redis, prefix: str, data: bytes, answer: bytes):
    r.set(prefix + "k", "kept")
    assert _closed_with(target, data) == answer
    _still_serving(target, prefix + "k", b"kept")


def test_huge_bulk_before_auth(target: Target, r: redis.Redis, prefix: str):
    r.set(prefix + "k", "kept")
    with target.raw(auth=False) as connection:
        connection.send(b"*1\r\n$999999999999\r\n")
        answer, closed = connection.read_all_until_closed()
    assert answer.startswith(b"-ERR Protocol error") and closed
    _still_serving(target, prefix + "k", b"kept")


def test_garbage(target: Target, r: redis.Redis, prefix: str):
    key = prefix + "k"
    r.set(key, "kept")
    with target.raw() as connection:
        # Printable garbage is an inline command nobody knows; the connection goes on.
        connection.send(b"GARBAGE\r\n")
        assert connection.reply() == error("ERR unknown command 'GARBAGE', with args beginning with: ")
        assert connection.call("PING") == "PONG"
    with target.raw() as connection:
        # Binary garbage: whatever the server makes of it, it must survive it.
        connection.send(bytes(range(256)) * 4 + b"\r\n")
    _still_serving(target, key, b"kept")


def test_inline_commands(target: Target, prefix: str):
    key = prefix + "k"
    with target.raw(auth=False) as connection:
        connection.send(f"AUTH {target.password}\r\n".encode())
        assert connection.reply() == "OK"
        connection.send(b"PING\r\n")
        assert connection.reply() == "PONG"
        connection.send(f'SET {key} "hello world"\r\nGET {key}\r\n'.encode())
        assert connection.reply() == "OK"
        assert connection.reply() == b"hello world"
        connection.send(b"\r\n")  # an empty line is ignored
        connection.send(b"PING\n")  # a bare LF ends an inline command too
        assert connection.reply() == "PONG"


def test_half_frame_then_close(target: Target, r: redis.Redis, prefix: str):
    key = prefix + "k"
    r.set(key, "kept")
    with target.raw() as connection:
        connection.send(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$8\r\nrepla" % (len(key), key.encode()))
    with target.raw() as connection:
        connection.send(b"*2\r\n$3\r\nGET")
    _still_serving(target, key, b"kept")


def test_frame_split_across_writes(target: Target, prefix: str):
    key = prefix + "k"
    frame = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$5\r\nsplit\r\n" % (len(key), key.encode())
    with target.raw() as connection:
        for byte in frame:
            connection.send(bytes([byte]))
        assert connection.reply() == "OK"
        assert connection.call("GET", key) == b"split"


def test_reply_order_with_many_commands_in_one_write(target: Target, prefix: str):
    with target.raw() as connection:
        frames = b"".join(
            b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%d\r\n" % (
                len(f"{prefix}{i}"), f"{prefix}{i}".encode(), len(str(i)), i)
            for i in range(100))
        frames += b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(f"{prefix}{i}"), f"{prefix}{i}".encode())
                           for i in range(100))
        connection.send(frames)
        assert [connection.reply() for _ in range(100)] == ["OK"] * 100
        assert [connection.reply() for _ in range(100)] == [str(i).encode() for i in range(100)]


# ---------------------------------------------------------------- pipelining


def test_pipeline_10000_sets(r: redis.Redis, prefix: str):
    count = 10_000
    with r.pipeline(transaction=False) as pipe:
        for i in range(count):
            pipe.set(f"{prefix}{i}", i)
        replies = pipe.execute()
    assert replies == [True] * count
    assert r.get(f"{prefix}{count - 1}") == str(count - 1).encode()
    assert r.get(f"{prefix}{count // 2}") == str(count // 2).encode()


# ---------------------------------------------------------------- flush (last: it wipes the
# database; every test writes the keys it reads, so the ones after it are unharmed)


def test_zz_flushdb_and_flushall(r: redis.Redis, raw: RawConnection, prefix: str):
    r.mset({prefix + "a": "1", prefix + "b": "2"})
    r.hset(prefix + "h", "f", "v")
    assert raw.call("FLUSHDB") == "OK"
    assert r.dbsize() == 0
    assert r.get(prefix + "a") is None
    assert r.exists(prefix + "h") == 0
    r.set(prefix + "a", "1", ex=100)
    assert raw.call("FLUSHALL") == "OK"
    assert r.dbsize() == 0
    assert r.set(prefix + "a", "after") is True
    assert r.get(prefix + "a") == b"after"


def test_a_pipelined_read_sees_the_writes_before_it(r: redis.Redis, prefix: str):
    """Redis runs one connection's commands in order: a GET pipelined right behind a SET sees
    it, and an INCR behind an INCR counts both. (paxkv hands pipelined commands on at once;
    a read waits for the connection's writes before it, or it could overtake them.)"""
    key, counter = prefix + "k", prefix + "n"
    with r.pipeline(transaction=False) as pipe:
        for i in range(500):
            pipe.set(key, i)
            pipe.get(key)
            pipe.incr(counter)
            pipe.get(counter)
        replies = pipe.execute()
    for i in range(500):
        assert replies[4 * i + 1] == str(i).encode(), i
        assert replies[4 * i + 2] == i + 1
        assert replies[4 * i + 3] == str(i + 1).encode(), i
