"""Client and AsyncClient: one set of commands, run blocking or as coroutines.

Every command is written once, in ``_Commands``: it checks and converts its arguments, then
hands a call of the native client to ``_execute`` with a function that shapes the answer.
``Client._execute`` runs the call on the spot (the native side releases the GIL while it waits);
``AsyncClient._execute`` is a coroutine that starts the call in the background and awaits the
answer on the event loop.
"""

import asyncio
import collections
import functools
import logging
import os
import threading
import urllib.parse
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, List, Optional, Tuple, Union

from ._arguments import (
    Data,
    LeaseHandle,
    Seconds,
    _bytes,
    _count,
    _lease_id,
    _milliseconds,
    _optional_milliseconds,
    _write_options,
)
from ._errors import ClientClosed, ConflictError, Error, InvalidArgument, LeaseLost, NotFound
from ._model import Deleted, Entry, Event, Item, LeaseStatus, TxnResult, Written
from ._native import SCAN_LIMIT_MAX, NativeClient, after_fork_in_child
from ._recipes import Acquiring, AsyncElection, AsyncLock, Election, Lock, acquiring, name_of
from ._txn import Compare, Op, _check_range

# A child made by fork() has none of the parent's I/O threads: it gets a runtime of its own,
# and clients made before the fork open new connections in it.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=after_fork_in_child)

#: Retries, leader changes and background lease renewals are logged here (DEBUG), and a lease
#: that could not be kept alive (WARNING). The level is read when a client is made.
logger = logging.getLogger("paxkv")

_CONSISTENCIES = ("linearizable", "stale", "session")


def _endpoints(endpoints: Union[str, Iterable[str]]) -> List[str]:
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    found = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"endpoints must be strings like '[::1]:7001', not {type(item).__name__}")
        item = item.strip()
        if not item:
            continue
        host, colon, port = item.rpartition(":")
        bare_ipv6 = ":" in host and not (host.startswith("[") and host.endswith("]"))
        if not colon or not host or not port.isdigit() or int(port) > 65535 or bare_ipv6:
            raise InvalidArgument(
                f"endpoint {item!r} is not host:port; write IPv6 addresses in brackets, "
                "like '[::1]:7001'"
            )
        found.append(item)
    if not found:
        raise InvalidArgument("no endpoints given; pass ['host:port', ...] or 'host:port,host:port'")
    return found


def _consistency(consistency: str) -> str:
    if consistency not in _CONSISTENCIES:
        raise InvalidArgument(
            f"consistency must be one of {', '.join(map(repr, _CONSISTENCIES))}, not {consistency!r}"
        )
    return consistency


def _secret(secret: Optional[Data], secret_file: Optional[str]) -> Optional[bytes]:
    """The secret given, else from PAXKV_CLUSTER_SECRET_FILE or PAXKV_CLUSTER_SECRET (as kvctl
    reads them), else none."""
    if secret is not None and secret_file is not None:
        raise InvalidArgument("pass cluster_secret or cluster_secret_file, not both")
    if secret is None and secret_file is None:
        secret_file = os.environ.get("PAXKV_CLUSTER_SECRET_FILE") or None
        secret = None if secret_file else os.environ.get("PAXKV_CLUSTER_SECRET") or None
    if secret_file is not None:
        with open(secret_file, "rb") as file:
            return file.read()
    return None if secret is None else _bytes(secret)


def _endpoints_or_environment(endpoints: Union[str, Iterable[str], None]) -> List[str]:
    if endpoints is None:
        endpoints = os.environ.get("PAXKV_ENDPOINTS")
        if not endpoints:
            raise InvalidArgument(
                "no endpoints given: pass them (such as '[::1]:7001,[::1]:7002') or set "
                "PAXKV_ENDPOINTS"
            )
    return _endpoints(endpoints)


def _parse_url(url: str) -> Tuple[str, Optional[bytes], Optional[float]]:
    """``paxkv://[secret@]host:port[,host:port...][?timeout=SECONDS]`` as (endpoints, secret,
    timeout). The secret is percent-decoded (write ``@`` as ``%40``)."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme != "paxkv":
        raise InvalidArgument(f"{url!r} is not a paxkv:// URL (paxkv://secret@host:port,host:port)")
    rest, _, query = rest.partition("?")
    rest = rest.rstrip("/")
    secret: Optional[bytes] = None
    if "@" in rest:
        encoded, _, rest = rest.rpartition("@")
        secret = urllib.parse.unquote_to_bytes(encoded)
    timeout: Optional[float] = None
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if name != "timeout":
            raise InvalidArgument(f"unknown option {name!r} in the URL (only timeout=SECONDS)")
        try:
            timeout = float(value)
        except ValueError:
            raise InvalidArgument(f"timeout={value!r} in the URL is not a number of seconds") from None
    return rest, secret, timeout


def _same(answer: Any) -> Any:
    return answer


def _seconds(milliseconds: int) -> float:
    return milliseconds / 1000


def _entry(answer: Optional[tuple]) -> Optional[Entry]:
    if answer is None:
        return None
    value, create_revision, revision, version, lease, expires_at_ms, log_time_ms = answer
    ttl = max(0, expires_at_ms - log_time_ms) / 1000 if expires_at_ms else None
    return Entry(value, revision, create_revision, version, lease or None, ttl)


def _event(answer: tuple) -> Event:
    kind, revision, key, after, before = answer

    def entry(found: Optional[tuple]) -> Optional[Entry]:
        if found is None:
            return None
        value, create_revision, mod_revision, version, lease, _, _ = found
        return Entry(value, mod_revision, create_revision, version, lease or None, None)

    current = entry(after)
    return Event(kind, key, revision, None if current is None else current.value, current, entry(before))


def _item(key: bytes, answer: tuple, keys_only: bool) -> Item:
    value, create_revision, revision, version, lease, expires_at_ms, log_time_ms = answer
    ttl = max(0, expires_at_ms - log_time_ms) / 1000 if expires_at_ms else None
    return Item(key, None if keys_only else value, revision, create_revision, version, lease or None, ttl)


def _listed(items: Any, kind: type, what: str) -> list:
    """The compares or operations of a transaction, as a list, each checked."""
    if isinstance(items, (kind, str, bytes)):
        raise TypeError(f"{what}= takes a list of paxkv.{kind.__name__}, not one {type(items).__name__}")
    listed = list(items)
    for item in listed:
        if not isinstance(item, kind):
            hint = " (it needs an operator: == value, !=, > or <)" if kind is Compare else ""
            raise TypeError(f"{what}= takes paxkv.{kind.__name__} items, not {item!r}{hint}")
    return listed


def _txn_result(answer: tuple) -> TxnResult:
    succeeded, revision, answers = answer
    results: List[Union[int, Item, None]] = []
    for kind, deleted, found in answers:
        if kind == "put":
            results.append(revision)
        elif kind == "delete":
            results.append(deleted)
        elif kind == "get" and found is not None:
            results.append(_item(found[0], found[1], False))
        else:
            results.append(None)
    return TxnResult(succeeded, revision, results)


class _ScanPages:
    """Where a scan is: the next page to ask for, and what the pages so far said."""

    def __init__(
        self,
        prefix: Data,
        limit: Optional[int],
        page_size: int,
        consistency: str,
        keys_only: bool,
        timeout: Optional[Seconds],
    ):
        self.prefix = _bytes(prefix)
        self.keys_only = bool(keys_only)
        _optional_milliseconds(timeout, "timeout")  # checked now, not at the first page
        self.timeout = timeout
        self.remaining = None if limit is None else _count(limit, "limit")
        self.page_size = _count(page_size, "page_size", minimum=1)
        if self.page_size > SCAN_LIMIT_MAX:
            raise InvalidArgument(f"page_size must be at most {SCAN_LIMIT_MAX}, not {page_size}")
        self.consistency = _consistency(consistency)
        self.start_after = b""
        self.finished = self.remaining == 0
        #: The revision every page shows: the first page's (0 until it came).
        self.revision = 0

    def request(self) -> tuple:
        size = self.page_size if self.remaining is None else min(self.page_size, self.remaining)
        return (self.prefix, self.start_after, size, self.consistency, self.revision)

    def take(self, page: tuple) -> List[Item]:
        entries, more, revision = page
        self.revision = revision
        if entries:
            self.start_after = entries[-1][0]
        if self.remaining is not None:
            self.remaining -= len(entries)
        self.finished = not more or not entries or self.remaining == 0
        return [_item(key, entry, self.keys_only) for key, entry in entries]


class Lease(LeaseHandle):
    """A lease: keys put with ``lease=`` live as long as it does, and go when it expires (no
    keep-alive within its time to live) or is revoked.

    As a context manager (``with kv.lease_grant(10) as lease:``) it is kept alive in the
    background while the block runs (renewed every third of its time to live) and revoked at
    the end. Should a renewal find it gone, ``lost`` holds the error at once, a warning is
    logged, and ``LeaseLost`` is raised when the block ends: its keys are gone.

    An ``AsyncClient`` grants an ``AsyncLease``: the same with coroutines and ``async with``.
    """

    def __init__(self, client: "_Commands", lease_id: int, ttl: float):
        self._client = client
        #: The lease's id (pass the Lease or this id as ``put(..., lease=)``).
        self.id = lease_id
        #: The time to live it was granted, in seconds.
        self.ttl = ttl
        self._lost: Optional[Error] = None
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._keeper: Optional[threading.Thread] = None

    @property
    def lost(self) -> Optional[Error]:
        """Why the background keep-alive stopped (the lease is gone), or None."""
        return self._lost

    def keep_alive(self, *, timeout: Optional[Seconds] = None) -> float:
        """Restarts the lease's time to live; returns it in seconds. Raises ``NotFound`` if the
        lease already expired or was revoked (its keys are gone)."""
        return self._client._execute(
            self._client._native.lease, "keep_alive", self.id, timeout=timeout, convert=_seconds
        )

    def revoke(self, *, timeout: Optional[Seconds] = None) -> int:
        """Ends the lease now, deleting its keys; returns how many keys it deleted. Raises
        ``NotFound`` if it already expired or was revoked."""
        return self._client._execute(self._client._native.lease, "revoke", self.id, timeout=timeout)

    def time_to_live(self, *, keys: bool = False, timeout: Optional[Seconds] = None) -> LeaseStatus:
        """How long the lease has left, and its keys if ``keys=True``. Raises ``NotFound`` if it
        expired or was revoked."""

        def status(answer: tuple) -> LeaseStatus:
            remaining_ms, granted_ms, attached = answer
            return LeaseStatus(self.id, remaining_ms / 1000, granted_ms / 1000, list(attached))

        return self._client._execute(
            self._client._native.lease_time_to_live, self.id, keys, timeout=timeout, convert=status
        )

    def __int__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"paxkv.{type(self).__name__}(id={self.id}, ttl={self.ttl})"

    def _renewed(self, error: Optional[Error]) -> bool:
        """Takes in a background renewal's outcome; returns whether to go on."""
        if error is None:
            logger.debug("paxkv lease %d kept alive for %.3f s", self.id, self.ttl)
            return True
        if isinstance(error, NotFound):
            self._lost = error
            logger.warning("paxkv lease %d is gone; the keys attached to it are deleted: %s", self.id, error)
            return False
        # The cluster may be electing a leader: the lease may still be alive, try again.
        logger.warning("paxkv lease %d could not be kept alive yet: %s", self.id, error)
        return True

    def _end(self, exception: Optional[BaseException]) -> None:
        """After the block: raises LeaseLost if the lease ended while the block ran."""
        if self._lost is not None and exception is None:
            raise LeaseLost(f"lease {self.id} ended while the block ran: {self._lost}") from self._lost

    def _keep(self) -> None:
        try:
            while not self._stop.wait(self.ttl / 3):
                try:
                    self.keep_alive(timeout=self.ttl)
                    error = None
                except Error as failed:
                    error = failed
                if not self._renewed(error):
                    return
        finally:
            self._stopped.set()

    def __enter__(self) -> "Lease":
        self._keeper = threading.Thread(target=self._keep, name=f"paxkv-lease-{self.id}", daemon=True)
        self._keeper.start()
        return self

    def __exit__(self, kind: Any, exception: Optional[BaseException], trace: Any) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join()
        try:
            self.revoke()
        except NotFound:
            pass  # It expired already: its keys are gone, as revoking would have done.
        self._end(exception)


class AsyncLease(Lease):
    """The lease of an ``AsyncClient``: ``keep_alive``, ``revoke`` and ``time_to_live`` are
    coroutines, and ``async with`` keeps it alive in a background task while the block runs."""

    def __init__(self, client: "_Commands", lease_id: int, ttl: float):
        super().__init__(client, lease_id, ttl)
        self._task: Optional["asyncio.Task[None]"] = None

    async def keep_alive(self, *, timeout: Optional[Seconds] = None) -> float:  # type: ignore[override]
        return await self._client._execute(
            self._client._native.lease, "keep_alive", self.id, timeout=timeout, convert=_seconds
        )

    async def revoke(self, *, timeout: Optional[Seconds] = None) -> int:  # type: ignore[override]
        return await self._client._execute(self._client._native.lease, "revoke", self.id, timeout=timeout)

    async def time_to_live(  # type: ignore[override]
        self, *, keys: bool = False, timeout: Optional[Seconds] = None
    ) -> LeaseStatus:
        return await super().time_to_live(keys=keys, timeout=timeout)  # type: ignore[misc]

    def __enter__(self) -> "Lease":
        raise TypeError("this lease belongs to an AsyncClient: use 'async with'")

    async def _keep_async(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.ttl / 3)
                try:
                    await self.keep_alive(timeout=self.ttl)
                    error = None
                except Error as failed:
                    error = failed
                if not self._renewed(error):
                    return
        finally:
            self._stopped.set()

    async def __aenter__(self) -> "AsyncLease":
        self._task = asyncio.get_running_loop().create_task(self._keep_async())
        return self

    async def __aexit__(self, kind: Any, exception: Optional[BaseException], trace: Any) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            await self.revoke()
        except NotFound:
            pass  # It expired already: its keys are gone, as revoking would have done.
        self._end(exception)


class Watch:
    """A change stream (``Client.watch``): iterate over it for every change, as ``Event``s, in
    revision order; it waits for the next one as long as it takes, and moves to another node
    by itself when the one it reads from fails. ``revision``: every change up to it has been
    delivered (resume a later watch from ``revision + 1``). Close it, or use it in a ``with``
    block, to stop."""

    def __init__(self, client: "_Commands", native: Any):
        self._client = client
        self._native = native
        self._pending: "collections.deque[Event]" = collections.deque()
        self._closed = False
        #: Every change up to this revision has been delivered.
        self.revision = 0

    def _take(self, batch: tuple) -> None:
        revision, events, progress = batch
        self.revision = revision
        self._pending.extend(_event(event) for event in events)
        if progress and not events:
            # Asked for with ``progress=``: nothing changed, everything up to ``revision`` is in.
            self._pending.append(Event("progress", b"", revision, None, None, None))

    def __iter__(self) -> "Watch":
        return self

    def __next__(self) -> Event:
        while not self._pending:
            if self._closed:
                raise StopIteration
            self._client._check_open()
            self._take(self._native.next())
        return self._pending.popleft()

    def close(self) -> None:
        """Stops the stream (the iteration ends)."""
        self._closed = True
        self._native = None

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exception: Any) -> None:
        self.close()


class AsyncWatch(Watch):
    """The change stream of an ``AsyncClient``: ``async for event in kv.watch_prefix(...)``."""

    def __init__(self, client: "_Commands", open_call: Callable[[], Any]):
        super().__init__(client, None)
        self._open_call = open_call

    def __aiter__(self) -> "AsyncWatch":
        return self

    async def __anext__(self) -> Event:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            self._client._check_open()
            if self._native is None:
                self._native = await self._open_call()
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            self._native.next(done=functools.partial(_deliver, loop, future))
            self._take(await future)
        return self._pending.popleft()

    async def aclose(self) -> None:
        """Stops the stream."""
        self.close()

    async def __aenter__(self) -> "AsyncWatch":
        return self

    async def __aexit__(self, *exception: Any) -> None:
        self.close()


class _Commands:
    """The commands both clients share (see the module comment)."""

    _native: NativeClient
    _closed: bool

    def __init__(
        self,
        endpoints: Union[str, Iterable[str], None] = None,
        *,
        timeout: Seconds = 10.0,
        cluster_secret: Optional[Data] = None,
        cluster_secret_file: Optional[str] = None,
    ):
        self._endpoints = _endpoints_or_environment(endpoints)
        self._native = NativeClient(
            self._endpoints,
            _milliseconds(timeout, "timeout"),
            _secret(cluster_secret, cluster_secret_file),
        )
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, timeout: Optional[Seconds] = None) -> Any:
        """A client from one string: ``paxkv://SECRET@[::1]:7001,[::1]:7002?timeout=5``. The
        secret (percent-encoded: ``@`` is ``%40``) and the timeout are optional; without a
        secret, the environment's is used (as for the constructor)."""
        endpoints, secret, url_timeout = _parse_url(url)
        chosen = timeout if timeout is not None else url_timeout if url_timeout is not None else 10.0
        return cls(endpoints, timeout=chosen, cluster_secret=secret)

    def __repr__(self) -> str:
        return f"paxkv.{type(self).__name__}({','.join(self._endpoints)!r})"

    @property
    def endpoints(self) -> List[str]:
        """The nodes this client talks to."""
        return list(self._endpoints)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed(f"this {type(self).__name__} is closed; make a new one")

    def _execute(
        self,
        call: Callable[..., Any],
        *args: Any,
        timeout: Optional[Seconds] = None,
        convert: Callable[[Any], Any] = _same,
    ) -> Any:
        raise NotImplementedError

    def put(
        self,
        key: Data,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: "Union[Lease, int, None]" = None,
        keep_ttl: bool = False,
        prev_kv: bool = False,
        timeout: Optional[Seconds] = None,
    ) -> Any:
        """Writes ``value`` under ``key``; returns the revision of the write (with
        ``prev_kv=True``, a ``Written`` with the revision and the key as it was before).

        ``ttl``: seconds after which the key expires (counted by the cluster, so it expires on
        time even if this client or the node it wrote to is gone). ``lease``: a ``Lease`` (or
        its id) the key lives and dies with. ``keep_ttl=True`` keeps the TTL the key has
        instead of clearing it. A put without ``ttl``, ``lease`` or ``keep_ttl`` makes the key
        permanent and detaches it from any lease it was on. ``timeout``: seconds this call may
        take, retries included (default: the client's).
        """

        def written(answer: tuple) -> Any:
            _, revision, previous = answer
            return Written(revision, _entry(previous)) if prev_kv else revision

        return self._execute(
            self._native.put,
            key,
            value,
            *_write_options(ttl, lease, keep_ttl),
            None,
            # The old value only travels when it is asked for.
            not prev_kv,
            timeout=timeout,
            convert=written,
        )

    def create(
        self,
        key: Data,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: "Union[Lease, int, None]" = None,
        timeout: Optional[Seconds] = None,
    ) -> int:
        """Writes ``value`` under ``key`` only if the key does not exist; returns the revision
        of the write. Raises ``ConflictError`` if it exists (a lock or a leader claim held by
        someone else)."""

        def created(answer: tuple) -> int:
            succeeded, revision, _ = answer
            if not succeeded:
                raise ConflictError(f"key {key!r} already exists (at revision {revision} or before)")
            return revision

        return self._execute(
            self._native.put,
            key,
            value,
            _optional_milliseconds(ttl, "ttl"),
            _lease_id(lease),
            False,
            0,
            timeout=timeout,
            convert=created,
        )

    def compare_and_set(
        self,
        key: Data,
        expected_revision: int,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: "Union[Lease, int, None]" = None,
        keep_ttl: bool = False,
        timeout: Optional[Seconds] = None,
    ) -> bool:
        """Writes ``value`` only if the key's revision (``get_with_meta(key).revision``) is
        still ``expected_revision``, or, with ``expected_revision=0``, only if the key does not
        exist. Returns whether it wrote.

        ``ttl``, ``lease`` and ``keep_ttl`` mean what they mean for ``put``, and so does their
        absence: a compare-and-set without them makes the key permanent and detaches it from
        its lease. To update a key held under a lease (a leader claim, a lock), pass the
        lease again.
        """
        expected = _count(expected_revision, "expected_revision")
        return self._execute(
            self._native.put,
            key,
            value,
            *_write_options(ttl, lease, keep_ttl),
            expected,
            timeout=timeout,
            convert=lambda answer: answer[0],
        )

    def _read_point(self, consistency: str, min_revision: Optional[int]) -> Tuple[str, int]:
        if min_revision is None:
            return _consistency(consistency), 0
        if consistency not in ("linearizable", "session"):
            raise InvalidArgument("min_revision= goes with the session consistency, not with 'stale'")
        return "session", _count(min_revision, "min_revision", minimum=1)

    def get(
        self,
        key: Data,
        *,
        consistency: str = "linearizable",
        min_revision: Optional[int] = None,
        timeout: Optional[Seconds] = None,
    ) -> Optional[bytes]:
        """The value of ``key``, or None if it does not exist.

        ``consistency``: ``"linearizable"`` (the default: sees every write acknowledged before
        the call; served by the leader), ``"stale"`` (any node's copy, possibly behind, and
        cheap), or ``"session"`` (any node, but never older than what this client has seen).
        ``min_revision``: any node that has applied at least this revision (a revision another
        client wrote at, say), waiting for one within the timeout.
        """
        return self._execute(
            self._native.get,
            key,
            *self._read_point(consistency, min_revision),
            timeout=timeout,
            convert=lambda answer: None if answer is None else answer[0],
        )

    def get_with_meta(
        self,
        key: Data,
        *,
        consistency: str = "linearizable",
        min_revision: Optional[int] = None,
        timeout: Optional[Seconds] = None,
    ) -> Optional[Entry]:
        """The value of ``key`` with its revision, version, lease and TTL left, as an
        ``Entry``; None if the key does not exist. Arguments as for ``get``."""
        return self._execute(
            self._native.get, key, *self._read_point(consistency, min_revision), timeout=timeout, convert=_entry
        )

    def delete(
        self,
        key: Data,
        *,
        expected_revision: Optional[int] = None,
        prev_kv: bool = False,
        timeout: Optional[Seconds] = None,
    ) -> Any:
        """Deletes ``key``; returns whether it was deleted (with ``prev_kv=True``, a
        ``Deleted`` that also holds the key as it was).

        ``expected_revision``: delete only if the key's revision is still this (releasing a
        lock only if it is still yours); nothing is deleted otherwise.
        """
        expected = None if expected_revision is None else _count(expected_revision, "expected_revision")

        def deleted(answer: tuple) -> Any:
            done, revision, previous = answer
            return Deleted(done, revision, _entry(previous)) if prev_kv else done

        return self._execute(self._native.delete, key, expected, timeout=timeout, convert=deleted)

    def delete_prefix(self, prefix: Data, *, timeout: Optional[Seconds] = None) -> int:
        """Deletes every key that starts with ``prefix`` (not empty); returns how many went.
        Up to ``paxkv.DELETE_PREFIX_KEYS_MAX`` keys go at one revision; a prefix holding more
        goes in several such steps."""
        if not _bytes(prefix):
            raise InvalidArgument("an empty prefix would delete every key; name a prefix")
        return self._execute(self._native.delete_prefix, prefix, timeout=timeout)

    def delete_range(self, start: Data, end: Data, *, timeout: Optional[Seconds] = None) -> int:
        """Deletes every key from ``start`` (included) to ``end`` (excluded, after ``start``
        in byte order); returns how many went. Like ``delete_prefix``, up to
        ``paxkv.DELETE_PREFIX_KEYS_MAX`` keys go at one revision, and a larger range in
        several such steps."""
        start, end = _bytes(start), _bytes(end)
        _check_range(start, end)
        return self._execute(self._native.delete_range, start, end, timeout=timeout)

    def transaction(
        self,
        compare: Iterable[Compare] = (),
        success: Iterable[Op] = (),
        failure: Iterable[Op] = (),
        *,
        timeout: Optional[Seconds] = None,
    ) -> Any:
        """If every compare holds, applies the ``success`` operations, else the ``failure``
        ones, all at one revision, atomically: nothing else happens between the compares and
        the operations, and a branch applies whole or not at all. Returns a ``TxnResult``
        (``succeeded``, ``revision``, and one result per operation of the branch that ran).

        ``compare``: ``paxkv.Compare`` conditions, such as ``Compare.value("mode") == "on"``,
        ``Compare.mod_revision("config") == 42``, ``Compare.absent("lock")`` or a lock's
        ``held``. ``success``, ``failure``: ``paxkv.Op.put``, ``delete``, ``delete_prefix``,
        ``delete_range`` and ``get`` operations, applied in order. At most
        ``paxkv.TXN_COMPARES_MAX`` compares and ``paxkv.TXN_OPS_MAX`` operations per branch.

        A branch writes each key once: putting a key twice, or putting and deleting it,
        raises ``InvalidArgument``; a put with a lease that is gone raises ``NotFound``.
        Either way nothing is applied.
        """
        compares = [item._native for item in _listed(compare, Compare, "compare")]
        success_ops = [item._native for item in _listed(success, Op, "success")]
        failure_ops = [item._native for item in _listed(failure, Op, "failure")]
        return self._execute(
            self._native.txn, compares, success_ops, failure_ops, timeout=timeout, convert=_txn_result
        )

    def lock(self, name: Data, *, ttl: Seconds = 10, timeout: Optional[Seconds] = None) -> Any:
        """Takes the lock ``name`` and returns the held ``Lock``: ``with kv.lock("jobs/nightly",
        timeout=5) as lock:`` holds it for the block and releases it at the end, also on an
        exception. One holder at a time, in the order they asked; the wait is on a watch of
        the holder just ahead, not polling.

        ``ttl``: seconds of the holder's lease, renewed in the background while it holds, so
        how long a holder that died (or was cut off) keeps the others waiting. ``timeout``:
        how long to wait for the turn (None: as long as it takes); then ``paxkv.Timeout`` is
        raised and nothing is left waiting.

        The lock's ``token`` is a fencing token and ``held`` a compare that holds only while
        it is held: a holder can lose the lock without knowing (a pause longer than ``ttl``),
        so guard what it writes with them (see ``Lock.token``).
        """
        args = (name_of(name), _milliseconds(ttl, "ttl"), _optional_milliseconds(timeout, "timeout"))
        return self._lock(args, timeout)

    def _lock(self, args: tuple, timeout: Optional[Seconds]) -> Any:
        raise NotImplementedError

    def election(self, name: Data) -> Any:
        """The election ``name``: ``campaign`` to lead, ``leader`` to ask who leads,
        ``observe`` to follow it (see ``Election``). Nothing is sent until one is called."""
        raise NotImplementedError

    def scan(
        self,
        prefix: Data = b"",
        *,
        limit: Optional[int] = None,
        page_size: int = 100,
        consistency: str = "linearizable",
        keys_only: bool = False,
        timeout: Optional[Seconds] = None,
    ) -> Any:
        """Iterates over the keys that start with ``prefix``, in key order, at most ``limit`` of
        them, fetching ``page_size`` at a time (with an ``AsyncClient``: ``async for``). Each is
        an ``Item``: it unpacks as ``key, value`` and has the key's ``revision``, ``version``,
        ``lease`` and ``ttl``; with ``keys_only=True`` its value is None. ``timeout`` applies to
        each page.

        Every page shows the keys as they were at the first page's revision, so a scan over
        many pages is one state (writes made while it runs are not seen). A node keeps a
        bounded history (``paxkv.HISTORY_REVISIONS_MAX`` revisions): a scan that takes longer
        than that many writes raises ``paxkv.Compacted``; start it again."""
        pages = _ScanPages(prefix, limit, page_size, consistency, keys_only, timeout)
        self._check_open()
        return self._items(pages)

    def _items(self, pages: _ScanPages) -> Any:
        raise NotImplementedError

    def ttl(self, key: Data, *, timeout: Optional[Seconds] = None) -> Optional[float]:
        """Seconds left before ``key`` expires, or None if it has no TTL of its own. Raises
        ``NotFound`` if the key does not exist."""

        def seconds_left(answer: Optional[tuple]) -> Optional[float]:
            if answer is None:
                raise NotFound(f"key {key!r} does not exist")
            has_ttl, remaining_ms = answer
            return remaining_ms / 1000 if has_ttl else None

        return self._execute(self._native.ttl, key, timeout=timeout, convert=seconds_left)

    def expire(
        self, key: Data, ttl: Seconds, *, condition: Optional[str] = None, timeout: Optional[Seconds] = None
    ) -> bool:
        """Gives ``key`` a TTL of ``ttl`` seconds from now; returns whether it did (False: no
        such key, or the condition did not hold). ``condition``: ``"nx"`` only if the key has no
        TTL, ``"xx"`` only if it has one, ``"gt"`` only if the new deadline is later, ``"lt"``
        only if it is sooner (no TTL counts as never)."""
        return self._execute(self._native.expire, key, _milliseconds(ttl, "ttl"), condition, timeout=timeout)

    def persist(self, key: Data, *, timeout: Optional[Seconds] = None) -> bool:
        """Removes the TTL of ``key``; returns whether it had one."""
        return self._execute(self._native.persist, key, timeout=timeout)

    def _lease(self, lease_id: int, ttl: float) -> Lease:
        return Lease(self, lease_id, ttl)

    def lease_grant(self, ttl: Seconds, *, timeout: Optional[Seconds] = None) -> Any:
        """Grants a lease that lives ``ttl`` seconds unless kept alive; see ``Lease``."""
        ttl_ms = _milliseconds(ttl, "ttl")
        return self._execute(
            self._native.lease,
            "grant",
            ttl_ms,
            timeout=timeout,
            convert=lambda lease_id: self._lease(lease_id, ttl_ms / 1000),
        )

    def members(self, *, timeout: Optional[Seconds] = None) -> Any:
        """The cluster's members as its leader knows them: ``{"configuration_index": ...,
        "change_in_progress": bool, "leader_id": ..., "members": [{"node_id", "voter",
        "peer_address", "client_address", "match_index", "reachable"}, ...], "retired": [ids]}``.
        Voters come first, then learners (members that receive the log but do not vote)."""
        return self._execute(self._native.member, "list", timeout=timeout)

    def member_add(self, peer_address: str, client_address: str = "", *, timeout: Optional[Seconds] = None) -> Any:
        """Adds a learner whose peer port is at ``peer_address`` (such as ``"[::1]:7104"``);
        the cluster picks its id, found in the answer's ``node_id``. Start that node with
        ``kv-server --join``; asking again for the same address answers with the same id."""
        return self._execute(self._native.member, "add", 0, peer_address, client_address, timeout=timeout)

    def member_promote(self, node_id: int, *, timeout: Optional[Seconds] = None) -> Any:
        """Makes learner ``node_id`` a voter; raises ``MembershipRefused`` while it is still
        catching up (retry), or if the cluster has the most voters it may have."""
        return self._execute(self._native.member, "promote", node_id, timeout=timeout)

    def member_remove(self, node_id: int, *, timeout: Optional[Seconds] = None) -> Any:
        """Removes member ``node_id`` for good (its id is never used again; a running node
        stops by itself). Raises ``MembershipRefused`` if the voters left that answer would
        not make a quorum."""
        return self._execute(self._native.member, "remove", node_id, timeout=timeout)

    def watch(
        self,
        key: Data,
        *,
        prefix: bool = False,
        start_revision: Optional[int] = None,
        prev_kv: bool = False,
        progress: Optional[Seconds] = None,
        timeout: Optional[Seconds] = None,
    ) -> Any:
        """Every change of ``key`` (with ``prefix=True``: of the keys under it) from now, or
        from ``start_revision``: ``for event in kv.watch("config/mode"):`` (with an
        ``AsyncClient``: ``async for``). Puts, deletes, expiry and lease revokes, each an
        ``Event`` at its revision, in revision order, each once, committed changes only; the
        stream moves to another node by itself when its node fails. A ``start_revision`` older
        than every node's history (``paxkv.HISTORY_REVISIONS_MAX``) raises
        ``paxkv.Compacted``. ``timeout``: for opening the stream (it then waits as long as it
        takes). ``progress``: after that many seconds without a change, an ``Event`` of kind
        ``"progress"`` (no key) says the stream has delivered everything up to its revision."""
        start = 0 if start_revision is None else _count(start_revision, "start_revision", minimum=1)
        progress_ms = 0 if progress is None else _milliseconds(progress, "progress")
        args = (_bytes(key), bool(prefix), start, bool(prev_kv), progress_ms)
        return self._watch(args, timeout)

    def watch_prefix(
        self,
        prefix: Data,
        *,
        start_revision: Optional[int] = None,
        prev_kv: bool = False,
        progress: Optional[Seconds] = None,
        timeout: Optional[Seconds] = None,
    ) -> Any:
        """``watch(prefix, prefix=True, ...)``: every change of the keys under ``prefix``."""
        return self.watch(
            prefix,
            prefix=True,
            start_revision=start_revision,
            prev_kv=prev_kv,
            progress=progress,
            timeout=timeout,
        )

    def _watch(self, args: tuple, timeout: Optional[Seconds]) -> Any:
        raise NotImplementedError

    def status(self, *, timeout: Optional[Seconds] = None) -> Any:
        """Every node's view of the cluster, asked directly: ``{endpoint: {...}}`` with its
        ``role`` ("leader", "follower", "candidate"), ``node_id``, ``leader_id``, ``ballot``,
        ``commit_index``, ``applied_index``, ``revision``, ``key_count``, ``lease_count`` and
        ``peers``; a node that did not answer has ``{"reachable": False, "error": ...}``."""
        return self._execute(self._native.status, timeout=timeout)


class Client(_Commands):
    """A blocking paxkv client.

    ``endpoints``: the nodes, as a list of ``"host:port"`` strings or one comma-separated
    string (IPv6 in brackets: ``"[::1]:7001"``); any of them will do, the client finds the
    leader. Without them, ``PAXKV_ENDPOINTS`` is read (as kvctl does). ``timeout``: how long one
    call may take in seconds, retries included (each call may pass its own ``timeout=``).
    ``cluster_secret`` (str or bytes) or ``cluster_secret_file`` (a path): the cluster's shared
    secret, if it requires one; without them, ``PAXKV_CLUSTER_SECRET_FILE`` or
    ``PAXKV_CLUSTER_SECRET``. ``Client.from_url("paxkv://secret@[::1]:7001,[::1]:7002")`` takes
    all of it as one string.

    One client may be shared by any number of threads, and survives ``fork()`` (the child opens
    connections of its own); it keeps one connection per node and sends their calls side by
    side. Calls release the GIL while they wait. Use it as a context manager, or call
    ``close()``, to close the connections.
    """

    def _execute(
        self,
        call: Callable[..., Any],
        *args: Any,
        timeout: Optional[Seconds] = None,
        convert: Callable[[Any], Any] = _same,
    ) -> Any:
        self._check_open()
        return convert(call(*args, timeout_ms=_optional_milliseconds(timeout, "timeout")))

    def _watch(self, args: tuple, timeout: Optional[Seconds]) -> Watch:
        return Watch(self, self._execute(self._native.watch_open, *args, timeout=timeout))

    def _lock(self, args: tuple, timeout: Optional[Seconds]) -> Lock:
        with acquiring("the lock", args[0]):
            native = self._execute(self._native.lock, *args, timeout=timeout)
        return Lock(self, args[0], native)

    def election(self, name: Data) -> Election:
        return Election(self, name)

    def _items(self, pages: _ScanPages) -> Iterator[Item]:
        while not pages.finished:
            yield from pages.take(self._execute(self._native.scan, *pages.request(), timeout=pages.timeout))

    def close(self) -> None:
        """Closes the connections; the client cannot be used afterwards."""
        self._closed = True
        self._native.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exception: Any) -> None:
        self.close()


def _deliver(loop: asyncio.AbstractEventLoop, future: asyncio.Future, ok: bool, value: Any) -> None:
    """Called on a paxkv I/O thread when a call ends: hands the result to the event loop."""
    try:
        loop.call_soon_threadsafe(_settle, future, ok, value)
    except RuntimeError:
        pass  # The loop is closed: nobody is waiting any more.


def _settle(future: asyncio.Future, ok: bool, value: Any) -> None:
    if future.done():
        return  # Cancelled while the call ran (a write may still have taken effect).
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class AsyncClient(_Commands):
    """The asyncio paxkv client: every method of ``Client``, as a coroutine (``scan`` is an
    async iterator, ``close`` a coroutine, and it is an async context manager). ``lock``
    returns something to ``await`` or to use in ``async with``; ``election`` an
    ``AsyncElection``, whose ``campaign`` works the same way.

    The calls run on paxkv's own I/O threads, so they never block the event loop, and many may
    be in flight at once (``asyncio.gather``). Cancelling a call stops the wait, not the
    request: a write may still take effect.
    """

    async def _execute(  # type: ignore[override]
        self,
        call: Callable[..., Any],
        *args: Any,
        timeout: Optional[Seconds] = None,
        convert: Callable[[Any], Any] = _same,
    ) -> Any:
        self._check_open()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        call(
            *args,
            timeout_ms=_optional_milliseconds(timeout, "timeout"),
            done=functools.partial(_deliver, loop, future),
        )
        return convert(await future)

    def _lease(self, lease_id: int, ttl: float) -> Lease:
        return AsyncLease(self, lease_id, ttl)

    def _watch(self, args: tuple, timeout: Optional[Seconds]) -> AsyncWatch:  # type: ignore[override]
        return AsyncWatch(self, lambda: self._execute(self._native.watch_open, *args, timeout=timeout))

    def _lock(self, args: tuple, timeout: Optional[Seconds]) -> Acquiring[AsyncLock]:
        async def acquire() -> AsyncLock:
            with acquiring("the lock", args[0]):
                native = await self._execute(self._native.lock, *args, timeout=timeout)
            return AsyncLock(self, args[0], native)

        return Acquiring(acquire)

    def election(self, name: Data) -> AsyncElection:
        return AsyncElection(self, name)

    async def _items(self, pages: _ScanPages) -> AsyncIterator[Item]:  # type: ignore[override]
        while not pages.finished:
            page = await self._execute(self._native.scan, *pages.request(), timeout=pages.timeout)
            for item in pages.take(page):
                yield item

    async def close(self) -> None:
        """Closes the connections; the client cannot be used afterwards."""
        self._closed = True
        self._native.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exception: Any) -> None:
        await self.close()
