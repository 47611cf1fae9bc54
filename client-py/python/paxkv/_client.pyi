# Types of paxkv's clients. The code shares one set of commands between Client and
# AsyncClient (see _client.py); this stub says what each returns: values for Client,
# coroutines for AsyncClient.
import datetime
import logging
from types import TracebackType
from typing import AsyncIterator, Iterable, Iterator, List, Literal, Optional, Type, TypedDict, TypeVar, Union, overload

from ._arguments import LeaseHandle
from ._errors import Error
from ._model import Deleted as Deleted, Entry as Entry, Event as Event, Item as Item, LeaseStatus as LeaseStatus, TxnResult as TxnResult, Written as Written
from ._recipes import Acquiring, AsyncElection, AsyncLock, Election, Lock
from ._txn import Compare, Op

Data = Union[str, bytes, bytearray]
Seconds = Union[int, float, datetime.timedelta]
Consistency = Literal["linearizable", "stale", "session"]
ExpireCondition = Literal["nx", "xx", "gt", "lt"]

logger: logging.Logger

class Member(TypedDict):
    node_id: int
    voter: bool
    peer_address: str
    client_address: str
    match_index: int
    reachable: bool

class Members(TypedDict):
    configuration_index: int
    change_in_progress: bool
    leader_id: Optional[int]
    node_id: Optional[int]
    members: List[Member]
    retired: List[int]

class Peer(TypedDict):
    node_id: int
    address: str
    reachable: bool
    last_contact_ms: int
    match_index: int
    lag_entries: int

class NodeStatus(TypedDict, total=False):
    # Always there; False with only "error" when the node did not answer.
    reachable: bool
    error: str
    node_id: int
    role: Literal["leader", "follower", "candidate"]
    ballot: tuple[int, int]
    leader_id: Optional[int]
    leader_address: str
    commit_index: int
    applied_index: int
    revision: int
    key_count: int
    lease_count: int
    requests_per_second: float
    syncs: int
    peers: List[Peer]

_Client = TypeVar("_Client", bound="Client")
_AsyncClient = TypeVar("_AsyncClient", bound="AsyncClient")

class Lease(LeaseHandle):
    id: int
    ttl: float
    @property
    def lost(self) -> Optional[Error]: ...
    def keep_alive(self, *, timeout: Optional[Seconds] = None) -> float: ...
    def revoke(self, *, timeout: Optional[Seconds] = None) -> int: ...
    def time_to_live(self, *, keys: bool = False, timeout: Optional[Seconds] = None) -> LeaseStatus: ...
    def __int__(self) -> int: ...
    def __enter__(self) -> Lease: ...
    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None: ...

class AsyncLease(LeaseHandle):
    id: int
    ttl: float
    @property
    def lost(self) -> Optional[Error]: ...
    async def keep_alive(self, *, timeout: Optional[Seconds] = None) -> float: ...
    async def revoke(self, *, timeout: Optional[Seconds] = None) -> int: ...
    async def time_to_live(self, *, keys: bool = False, timeout: Optional[Seconds] = None) -> LeaseStatus: ...
    def __int__(self) -> int: ...
    async def __aenter__(self) -> AsyncLease: ...
    async def __aexit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None: ...

_AnyLease = Union[Lease, AsyncLease, int, None]

class Watch:
    revision: int
    def __iter__(self) -> Watch: ...
    def __next__(self) -> Event: ...
    def close(self) -> None: ...
    def __enter__(self) -> Watch: ...
    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None: ...

class AsyncWatch:
    revision: int
    def __aiter__(self) -> AsyncWatch: ...
    async def __anext__(self) -> Event: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...
    async def __aenter__(self) -> AsyncWatch: ...
    async def __aexit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None: ...

class Client:
    def __init__(
        self,
        endpoints: Union[str, Iterable[str], None] = None,
        *,
        timeout: Seconds = 10.0,
        cluster_secret: Optional[Data] = None,
        cluster_secret_file: Optional[str] = None,
    ) -> None: ...
    @classmethod
    def from_url(cls: Type[_Client], url: str, *, timeout: Optional[Seconds] = None) -> _Client: ...
    @property
    def endpoints(self) -> List[str]: ...
    @overload
    def put(
        self,
        key: Data,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: _AnyLease = None,
        keep_ttl: bool = False,
        prev_kv: Literal[False] = False,
        timeout: Optional[Seconds] = None,
    ) -> int: ...
    @overload
    def put(
        self,
        key: Data,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: _AnyLease = None,
        keep_ttl: bool = False,
        prev_kv: Literal[True],
        timeout: Optional[Seconds] = None,
    ) -> Written: ...
    def create(
        self,
        key: Data,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: _AnyLease = None,
        timeout: Optional[Seconds] = None,
    ) -> int: ...
    def compare_and_set(
        self,
        key: Data,
        expected_revision: int,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: _AnyLease = None,
        keep_ttl: bool = False,
        timeout: Optional[Seconds] = None,
    ) -> bool: ...
    def get(
        self,
        key: Data,
        *,
        consistency: Consistency = "linearizable",
        min_revision: Optional[int] = None,
        timeout: Optional[Seconds] = None,
    ) -> Optional[bytes]: ...
    def get_with_meta(
        self,
        key: Data,
        *,
        consistency: Consistency = "linearizable",
        min_revision: Optional[int] = None,
        timeout: Optional[Seconds] = None,
    ) -> Optional[Entry]: ...
    @overload
    def delete(
        self,
        key: Data,
        *,
        expected_revision: Optional[int] = None,
        prev_kv: Literal[False] = False,
        timeout: Optional[Seconds] = None,
    ) -> bool: ...
    @overload
    def delete(
        self,
        key: Data,
        *,
        expected_revision: Optional[int] = None,
        prev_kv: Literal[True],
        timeout: Optional[Seconds] = None,
    ) -> Deleted: ...
    def delete_prefix(self, prefix: Data, *, timeout: Optional[Seconds] = None) -> int: ...
    def delete_range(self, start: Data, end: Data, *, timeout: Optional[Seconds] = None) -> int: ...
    def transaction(
        self,
        compare: Iterable[Compare] = (),
        success: Iterable[Op] = (),
        failure: Iterable[Op] = (),
        *,
        timeout: Optional[Seconds] = None,
    ) -> TxnResult: ...
    def lock(self, name: Data, *, ttl: Seconds = 10, timeout: Optional[Seconds] = None) -> Lock: ...
    def election(self, name: Data) -> Election: ...
    def scan(
        self,
        prefix: Data = b"",
        *,
        limit: Optional[int] = None,
        page_size: int = 100,
        consistency: Consistency = "linearizable",
        keys_only: bool = False,
        timeout: Optional[Seconds] = None,
    ) -> Iterator[Item]: ...
    def ttl(self, key: Data, *, timeout: Optional[Seconds] = None) -> Optional[float]: ...
    def expire(
        self,
        key: Data,
        ttl: Seconds,
        *,
        condition: Optional[ExpireCondition] = None,
        timeout: Optional[Seconds] = None,
    ) -> bool: ...
    def persist(self, key: Data, *, timeout: Optional[Seconds] = None) -> bool: ...
    def lease_grant(self, ttl: Seconds, *, timeout: Optional[Seconds] = None) -> Lease: ...
    def members(self, *, timeout: Optional[Seconds] = None) -> Members: ...
    def member_add(
        self, peer_address: str, client_address: str = "", *, timeout: Optional[Seconds] = None
    ) -> Members: ...
    def member_promote(self, node_id: int, *, timeout: Optional[Seconds] = None) -> Members: ...
    def member_remove(self, node_id: int, *, timeout: Optional[Seconds] = None) -> Members: ...
    def watch(
        self,
        key: Data,
        *,
        prefix: bool = False,
        start_revision: Optional[int] = None,
        prev_kv: bool = False,
        progress: Optional[Seconds] = None,
        timeout: Optional[Seconds] = None,
    ) -> Watch: ...
    def watch_prefix(
        self,
        prefix: Data,
        *,
        start_revision: Optional[int] = None,
        prev_kv: bool = False,
        progress: Optional[Seconds] = None,
        timeout: Optional[Seconds] = None,
    ) -> Watch: ...
    def status(self, *, timeout: Optional[Seconds] = None) -> dict[str, NodeStatus]: ...
    def close(self) -> None: ...
    def __enter__(self: _Client) -> _Client: ...
    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None: ...

class AsyncClient:
    def __init__(
        self,
        endpoints: Union[str, Iterable[str], None] = None,
        *,
        timeout: Seconds = 10.0,
        cluster_secret: Optional[Data] = None,
        cluster_secret_file: Optional[str] = None,
    ) -> None: ...
    @classmethod
    def from_url(cls: Type[_AsyncClient], url: str, *, timeout: Optional[Seconds] = None) -> _AsyncClient: ...
    @property
    def endpoints(self) -> List[str]: ...
    @overload
    async def put(
        self,
        key: Data,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: _AnyLease = None,
        keep_ttl: bool = False,
        prev_kv: Literal[False] = False,
        timeout: Optional[Seconds] = None,
    ) -> int: ...
    @overload
    async def put(
        self,
        key: Data,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: _AnyLease = None,
        keep_ttl: bool = False,
        prev_kv: Literal[True],
        timeout: Optional[Seconds] = None,
    ) -> Written: ...
    async def create(
        self,
        key: Data,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: _AnyLease = None,
        timeout: Optional[Seconds] = None,
    ) -> int: ...
    async def compare_and_set(
        self,
        key: Data,
        expected_revision: int,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: _AnyLease = None,
        keep_ttl: bool = False,
        timeout: Optional[Seconds] = None,
    ) -> bool: ...
    async def get(
        self,
        key: Data,
        *,
        consistency: Consistency = "linearizable",
        min_revision: Optional[int] = None,
        timeout: Optional[Seconds] = None,
    ) -> Optional[bytes]: ...
    async def get_with_meta(
        self,
        key: Data,
        *,
        consistency: Consistency = "linearizable",
        min_revision: Optional[int] = None,
        timeout: Optional[Seconds] = None,
    ) -> Optional[Entry]: ...
    @overload
    async def delete(
        self,
        key: Data,
        *,
        expected_revision: Optional[int] = None,
        prev_kv: Literal[False] = False,
        timeout: Optional[Seconds] = None,
    ) -> bool: ...
    @overload
    async def delete(
        self,
        key: Data,
        *,
        expected_revision: Optional[int] = None,
        prev_kv: Literal[True],
        timeout: Optional[Seconds] = None,
    ) -> Deleted: ...
    async def delete_prefix(self, prefix: Data, *, timeout: Optional[Seconds] = None) -> int: ...
    async def delete_range(self, start: Data, end: Data, *, timeout: Optional[Seconds] = None) -> int: ...
    async def transaction(
        self,
        compare: Iterable[Compare] = (),
        success: Iterable[Op] = (),
        failure: Iterable[Op] = (),
        *,
        timeout: Optional[Seconds] = None,
    ) -> TxnResult: ...
    def lock(self, name: Data, *, ttl: Seconds = 10, timeout: Optional[Seconds] = None) -> Acquiring[AsyncLock]: ...
    def election(self, name: Data) -> AsyncElection: ...
    def scan(
        self,
        prefix: Data = b"",
        *,
        limit: Optional[int] = None,
        page_size: int = 100,
        consistency: Consistency = "linearizable",
        keys_only: bool = False,
        timeout: Optional[Seconds] = None,
    ) -> AsyncIterator[Item]: ...
    async def ttl(self, key: Data, *, timeout: Optional[Seconds] = None) -> Optional[float]: ...
    async def expire(
        self,
        key: Data,
        ttl: Seconds,
        *,
        condition: Optional[ExpireCondition] = None,
        timeout: Optional[Seconds] = None,
    ) -> bool: ...
    async def persist(self, key: Data, *, timeout: Optional[Seconds] = None) -> bool: ...
    async def lease_grant(self, ttl: Seconds, *, timeout: Optional[Seconds] = None) -> AsyncLease: ...
    async def members(self, *, timeout: Optional[Seconds] = None) -> Members: ...
    async def member_add(
        self, peer_address: str, client_address: str = "", *, timeout: Optional[Seconds] = None
    ) -> Members: ...
    async def member_promote(self, node_id: int, *, timeout: Optional[Seconds] = None) -> Members: ...
    async def member_remove(self, node_id: int, *, timeout: Optional[Seconds] = None) -> Members: ...
    def watch(
        self,
        key: Data,
        *,
        prefix: bool = False,
        start_revision: Optional[int] = None,
        prev_kv: bool = False,
        progress: Optional[Seconds] = None,
        timeout: Optional[Seconds] = None,
    ) -> AsyncWatch: ...
    def watch_prefix(
        self,
        prefix: Data,
        *,
        start_revision: Optional[int] = None,
        prev_kv: bool = False,
        progress: Optional[Seconds] = None,
        timeout: Optional[Seconds] = None,
    ) -> AsyncWatch: ...
    async def status(self, *, timeout: Optional[Seconds] = None) -> dict[str, NodeStatus]: ...
    async def close(self) -> None: ...
    async def __aenter__(self: _AsyncClient) -> _AsyncClient: ...
    async def __aexit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None: ...
