"""The lock and the election: the Rust client's recipes (paxkv_client::recipes) seen from
Python. The waiting, the lease kept alive in the background and the release all happen in
the Rust client; these classes hold its guard (``_native.NativeHold``) and shape the answers.

Both recipes are one queue of leased keys under the name: a contender's turn comes when every
key created before its own is gone, and the create revision of its key is its fencing token.
"""

import contextlib
from typing import Any, Awaitable, Callable, Generator, Generic, Iterator, Optional, Protocol, Tuple, TypeVar, cast

from ._arguments import Data, Seconds, _bytes, _milliseconds, _optional_milliseconds
from ._errors import InvalidArgument, SessionExpired, Timeout, Unavailable
from ._model import Item
from ._native import NativeClient, NativeHold, NativeObserver
from ._txn import Compare


class _Client(Protocol):
    """What a recipe needs of ``Client`` or ``AsyncClient`` (see ``_client._Commands``)."""

    _native: NativeClient

    def _execute(
        self,
        call: Callable[..., Any],
        *args: Any,
        timeout: Optional[Seconds] = None,
        convert: Callable[[Any], Any] = ...,
    ) -> Any: ...

    def _check_open(self) -> None: ...


def _leader(answer: Optional[Tuple[Any, ...]]) -> Optional[Item]:
    """A contender's key as an ``Item`` (its ``ttl`` is None: it lives by its lease)."""
    if answer is None:
        return None
    key, (value, create_revision, revision, version, lease, _, _) = answer
    return Item(key, value, revision, create_revision, version, lease or None, None)


@contextlib.contextmanager
def acquiring(what: str, name: bytes) -> Iterator[None]:
    """Around taking a lock or leadership: a Timeout there means the turn did not come in
    time (the Rust client has left the queue by then), and says so. Errors that say
    something else (no quorum, an unknown outcome) go through as they are."""
    try:
        yield
    except (Unavailable, SessionExpired):
        raise
    except Timeout as error:
        raise Timeout(
            f"{what} {name!r} could not be taken before the timeout: someone else holds it. "
            "Nothing is held or left waiting; try again, or pass a longer timeout"
        ) from error


class _Holding:
    """What a lock and a leadership share: the Rust guard, its fencing token, its key, and
    whether its lease is known to be lost."""

    def __init__(self, client: _Client, name: bytes, native: NativeHold):
        self._client = client
        self._native = native
        #: The lock's or the election's name.
        self.name = name

    @property
    def token(self) -> int:
        """The fencing token: the create revision of this holder's key. It grows from each
        holder to the next. A holder that paused or was cut off may still believe it holds
        after its lease ran out and someone else took over: whatever it writes to should
        refuse a token lower than the highest it has seen (for writes to paxkv itself, put
        ``held`` in the transaction's compares)."""
        return self._native.token()

    @property
    def key(self) -> bytes:
        """This holder's own key under the name (it lives by the holder's lease)."""
        return self._native.key()

    @property
    def lost(self) -> bool:
        """True once a background renewal found the lease gone: the key is gone and someone
        else may hold. (False does not prove it is still held: see ``held``.)"""
        return self._native.lost()

    @property
    def held(self) -> Compare:
        """A compare that holds only while this holder still holds: write to paxkv with
        ``kv.transaction(compare=[lock.held], success=[...])`` and the write is refused
        (``succeeded`` False) once the hold is lost, whatever this process believes."""
        # Described as the Rust client builds it (Held::held); the native compare is what is sent.
        return Compare(self.key, "create_revision", "==", self.token, self._native.held())

    def __repr__(self) -> str:
        return f"paxkv.{type(self).__name__}(name={self.name!r}, token={self.token}, lost={self.lost})"


class Lock(_Holding):
    """A held lock (``kv.lock``). Use it as a context manager: the lock is released when the
    block ends, also on an exception. Its lease is kept alive in the background meanwhile."""

    def unlock(self, *, timeout: Optional[Seconds] = None) -> None:
        """Releases the lock: its lease is revoked, which deletes its key, so the next in line
        gets it at once. Releasing twice does nothing."""
        self._client._execute(self._native.release, timeout=timeout)

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exception: Any) -> None:
        self.unlock()


class AsyncLock(_Holding):
    """A held lock of an ``AsyncClient``: ``async with kv.lock(...) as lock:``."""

    async def unlock(self, *, timeout: Optional[Seconds] = None) -> None:
        """Releases the lock (see ``Lock.unlock``)."""
        await self._client._execute(self._native.release, timeout=timeout)

    async def __aenter__(self) -> "AsyncLock":
        return self

    async def __aexit__(self, *exception: Any) -> None:
        await self.unlock()


class Leadership(_Holding):
    """Leadership won by ``Election.campaign``. Use it as a context manager to resign when
    the block ends."""

    def proclaim(self, value: Data, *, timeout: Optional[Seconds] = None) -> bool:
        """Changes the value observers see, only while still leading; returns False if
        leadership was lost (or resigned)."""
        return bool(self._client._execute(self._native.proclaim, value, timeout=timeout))

    def resign(self, *, timeout: Optional[Seconds] = None) -> None:
        """Gives up leadership: the next contender leads at once. Resigning twice does
        nothing."""
        self._client._execute(self._native.release, timeout=timeout)

    def __enter__(self) -> "Leadership":
        return self

    def __exit__(self, *exception: Any) -> None:
        self.resign()


class AsyncLeadership(_Holding):
    """Leadership won by ``AsyncElection.campaign``: ``proclaim`` and ``resign`` are
    coroutines, and ``async with`` resigns when the block ends."""

    async def proclaim(self, value: Data, *, timeout: Optional[Seconds] = None) -> bool:
        """See ``Leadership.proclaim``."""
        return bool(await self._client._execute(self._native.proclaim, value, timeout=timeout))

    async def resign(self, *, timeout: Optional[Seconds] = None) -> None:
        """See ``Leadership.resign``."""
        await self._client._execute(self._native.release, timeout=timeout)

    async def __aenter__(self) -> "AsyncLeadership":
        return self

    async def __aexit__(self, *exception: Any) -> None:
        await self.resign()


_Held = TypeVar("_Held", AsyncLock, AsyncLeadership)


class Acquiring(Generic[_Held]):
    """What an ``AsyncClient``'s ``lock`` and ``AsyncElection.campaign`` return: ``await``
    it for the held lock or leadership, or use it in ``async with`` (released when the block
    ends)."""

    def __init__(self, acquire: Callable[[], Awaitable[_Held]]):
        self._acquire: Callable[[], Awaitable[_Held]] = acquire
        self._held: Optional[_Held] = None

    def __await__(self) -> Generator[Any, None, _Held]:
        return (yield from self._acquire().__await__())

    async def __aenter__(self) -> _Held:
        self._held = await self._acquire()
        return self._held

    async def __aexit__(self, *exception: Any) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            await held.__aexit__(*exception)


class Observer:
    """Who leads an election (``Election.observe``): iterate over it for the leader now,
    then the leader (or its value) each time it changes, as an ``Item`` (key, value and
    revisions of the leader's key), or None while nobody leads. It waits as long as it takes
    for a change. Close it, or use it in a ``with`` block, to stop."""

    def __init__(self, client: _Client, native: Optional[NativeObserver]):
        self._client = client
        self._native = native
        self._closed = False

    def __iter__(self) -> "Observer":
        return self

    def __next__(self) -> Optional[Item]:
        if self._closed or self._native is None:
            raise StopIteration
        self._client._check_open()
        return _leader(self._client._execute(self._native.next))

    def close(self) -> None:
        """Stops following (the iteration ends)."""
        self._closed = True
        self._native = None

    def __enter__(self) -> "Observer":
        return self

    def __exit__(self, *exception: Any) -> None:
        self.close()


class AsyncObserver(Observer):
    """The observer of an ``AsyncElection``: ``async for leader in election.observe():``."""

    def __init__(self, client: _Client, open_call: Callable[[], Awaitable[NativeObserver]]):
        super().__init__(client, None)
        self._open_call = open_call

    def __aiter__(self) -> "AsyncObserver":
        return self

    async def __anext__(self) -> Optional[Item]:
        if self._closed:
            raise StopAsyncIteration
        self._client._check_open()
        if self._native is None:
            self._native = await self._open_call()
        return _leader(await self._client._execute(self._native.next))

    async def aclose(self) -> None:
        """Stops following."""
        self.close()

    async def __aenter__(self) -> "AsyncObserver":
        return self

    async def __aexit__(self, *exception: Any) -> None:
        self.close()


def _wait_ms(timeout: Optional[Seconds]) -> Optional[int]:
    return _optional_milliseconds(timeout, "timeout")


def name_of(name: Data) -> bytes:
    found = _bytes(name)
    if not found:
        raise InvalidArgument("name the lock or the election (an empty name is refused)")
    return found


class Election:
    """The election ``name`` (``kv.election``): contenders campaign, the earliest still
    alive leads, the leader can proclaim a new value and resign, and anyone can observe who
    leads. A leader that dies stops renewing its lease, and the next contender leads once the
    lease runs out (its ``ttl``)."""

    def __init__(self, client: _Client, name: Data):
        self._client = client
        #: The election's name (contenders' keys are under ``name + b"/"``).
        self.name = name_of(name)

    def _campaign_args(self, value: Data, ttl: Seconds, timeout: Optional[Seconds]) -> Tuple[Any, ...]:
        return (self.name, value, _milliseconds(ttl, "ttl"), _wait_ms(timeout))

    def campaign(self, value: Data, *, ttl: Seconds = 10, timeout: Optional[Seconds] = None) -> Leadership:
        """Campaigns with ``value`` (what observers see, such as an address), waiting until
        every earlier contender has resigned or died; returns the ``Leadership`` (a context
        manager that resigns when the block ends). ``ttl``: seconds of the leader's lease,
        renewed in the background, so how long a leader that died keeps the others waiting.
        ``timeout``: how long to wait for the turn (None: as long as it takes); then
        ``paxkv.Timeout`` is raised and nothing is left waiting."""
        args = self._campaign_args(value, ttl, timeout)
        with acquiring("the leadership of", self.name):
            native = self._client._execute(self._client._native.campaign, *args, timeout=timeout)
        return Leadership(self._client, self.name, native)

    def leader(self, *, timeout: Optional[Seconds] = None) -> Optional[Item]:
        """The leader now, as an ``Item`` (its key and value), or None if nobody leads."""
        return _leader(self._client._execute(self._client._native.election_leader, self.name, timeout=timeout))

    def observe(self, *, timeout: Optional[Seconds] = None) -> Observer:
        """Follows the leader: ``for leader in election.observe():`` gives the leader now,
        then each change of leader or of its value (see ``Observer``). ``timeout``: for
        starting to follow (it then waits as long as it takes)."""
        native = self._client._execute(self._client._native.election_observe, self.name, timeout=timeout)
        return Observer(self._client, native)

    def __repr__(self) -> str:
        return f"paxkv.{type(self).__name__}({self.name!r})"


class AsyncElection(Election):
    """The election of an ``AsyncClient``: ``await election.campaign(...)`` (or ``async
    with election.campaign(...) as leadership:``), ``await election.leader()``, ``async for
    leader in election.observe():``."""

    def campaign(  # type: ignore[override]
        self, value: Data, *, ttl: Seconds = 10, timeout: Optional[Seconds] = None
    ) -> Acquiring[AsyncLeadership]:
        args = self._campaign_args(value, ttl, timeout)

        async def acquire() -> AsyncLeadership:
            with acquiring("the leadership of", self.name):
                native = await self._client._execute(self._client._native.campaign, *args, timeout=timeout)
            return AsyncLeadership(self._client, self.name, native)

        return Acquiring(acquire)

    async def leader(self, *, timeout: Optional[Seconds] = None) -> Optional[Item]:  # type: ignore[override]
        return _leader(await self._client._execute(self._client._native.election_leader, self.name, timeout=timeout))

    def observe(self, *, timeout: Optional[Seconds] = None) -> AsyncObserver:
        _wait_ms(timeout)  # checked now, not at the first step

        def open_call() -> Awaitable[NativeObserver]:
            opened = self._client._execute(self._client._native.election_observe, self.name, timeout=timeout)
            return cast("Awaitable[NativeObserver]", opened)

        return AsyncObserver(self._client, open_call)
