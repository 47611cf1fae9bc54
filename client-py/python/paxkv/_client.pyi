# Types of paxkv's clients. The code shares one set of commands between Client and
# AsyncClient (see _client.py); this stub says what each returns: values for Client,
# coroutines for AsyncClient.
import datetime
from types import TracebackType
from typing import Any, AsyncIterator, Dict, Iterable, Iterator, List, Literal, Optional, Tuple, Type, Union, overload

from ._model import Deleted as Deleted, Entry as Entry, LeaseStatus as LeaseStatus, Written as Written

Data = Union[str, bytes, bytearray]
Seconds = Union[int, float, datetime.timedelta]
Consistency = Literal["linearizable", "stale", "session"]
ExpireCondition = Literal["nx", "xx", "gt", "lt"]

class Lease:
    id: int
    ttl: float
    def keep_alive(self) -> Any: ...
    def revoke(self) -> Any: ...
    def time_to_live(self, *, keys: bool = False) -> Any: ...
    def __int__(self) -> int: ...
    def __enter__(self) -> Lease: ...
    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None: ...
    async def __aenter__(self) -> Lease: ...
    async def __aexit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None: ...

class Client:
    def __init__(
        self,
        endpoints: Union[str, Iterable[str]],
        *,
        timeout: Seconds = 10.0,
        cluster_secret: Optional[Data] = None,
        cluster_secret_file: Optional[str] = None,
    ) -> None: ...
    @property
    def endpoints(self) -> List[str]: ...
    @overload
    def put(
        self,
        key: Data,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: Union[Lease, int, None] = None,
        keep_ttl: bool = False,
        prev_kv: Literal[False] = False,
    ) -> int: ...
    @overload
    def put(
        self,
        key: Data,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: Union[Lease, int, None] = None,
        keep_ttl: bool = False,
        prev_kv: Literal[True],
    ) -> Written: ...
    def create(
        self, key: Data, value: Data, *, ttl: Optional[Seconds] = None, lease: Union[Lease, int, None] = None
    ) -> int: ...
    def compare_and_set(
        self,
        key: Data,
        expected_revision: int,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: Union[Lease, int, None] = None,
        keep_ttl: bool = False,
    ) -> bool: ...
    def get(self, key: Data, *, consistency: Consistency = "linearizable") -> Optional[bytes]: ...
    def get_with_meta(self, key: Data, *, consistency: Consistency = "linearizable") -> Optional[Entry]: ...
    @overload
    def delete(
        self, key: Data, *, expected_revision: Optional[int] = None, prev_kv: Literal[False] = False
    ) -> bool: ...
    @overload
    def delete(self, key: Data, *, expected_revision: Optional[int] = None, prev_kv: Literal[True]) -> Deleted: ...
    def scan(
        self,
        prefix: Data = b"",
        *,
        limit: Optional[int] = None,
        page_size: int = 100,
        consistency: Consistency = "linearizable",
    ) -> Iterator[Tuple[bytes, bytes]]: ...
    def ttl(self, key: Data) -> Optional[float]: ...
    def expire(self, key: Data, ttl: Seconds, *, condition: Optional[ExpireCondition] = None) -> bool: ...
    def persist(self, key: Data) -> bool: ...
    def lease_grant(self, ttl: Seconds) -> Lease: ...
    def members(self) -> Dict[str, Any]: ...
    def member_add(self, peer_address: str, client_address: str = "") -> Dict[str, Any]: ...
    def member_promote(self, node_id: int) -> Dict[str, Any]: ...
    def member_remove(self, node_id: int) -> Dict[str, Any]: ...
    def status(self) -> Dict[str, Dict[str, Any]]: ...
    def close(self) -> None: ...
    def __enter__(self) -> Client: ...
    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None: ...

class AsyncClient:
    def __init__(
        self,
        endpoints: Union[str, Iterable[str]],
        *,
        timeout: Seconds = 10.0,
        cluster_secret: Optional[Data] = None,
        cluster_secret_file: Optional[str] = None,
    ) -> None: ...
    @property
    def endpoints(self) -> List[str]: ...
    @overload
    async def put(
        self,
        key: Data,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: Union[Lease, int, None] = None,
        keep_ttl: bool = False,
        prev_kv: Literal[False] = False,
    ) -> int: ...
    @overload
    async def put(
        self,
        key: Data,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: Union[Lease, int, None] = None,
        keep_ttl: bool = False,
        prev_kv: Literal[True],
    ) -> Written: ...
    async def create(
        self, key: Data, value: Data, *, ttl: Optional[Seconds] = None, lease: Union[Lease, int, None] = None
    ) -> int: ...
    async def compare_and_set(
        self,
        key: Data,
        expected_revision: int,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: Union[Lease, int, None] = None,
        keep_ttl: bool = False,
    ) -> bool: ...
    async def get(self, key: Data, *, consistency: Consistency = "linearizable") -> Optional[bytes]: ...
    async def get_with_meta(self, key: Data, *, consistency: Consistency = "linearizable") -> Optional[Entry]: ...
    @overload
    async def delete(
        self, key: Data, *, expected_revision: Optional[int] = None, prev_kv: Literal[False] = False
    ) -> bool: ...
    @overload
    async def delete(self, key: Data, *, expected_revision: Optional[int] = None, prev_kv: Literal[True]) -> Deleted: ...
    def scan(
        self,
        prefix: Data = b"",
        *,
        limit: Optional[int] = None,
        page_size: int = 100,
        consistency: Consistency = "linearizable",
    ) -> AsyncIterator[Tuple[bytes, bytes]]: ...
    async def ttl(self, key: Data) -> Optional[float]: ...
    async def expire(self, key: Data, ttl: Seconds, *, condition: Optional[ExpireCondition] = None) -> bool: ...
    async def persist(self, key: Data) -> bool: ...
    async def lease_grant(self, ttl: Seconds) -> Lease: ...
    async def members(self) -> Dict[str, Any]: ...
    async def member_add(self, peer_address: str, client_address: str = "") -> Dict[str, Any]: ...
    async def member_promote(self, node_id: int) -> Dict[str, Any]: ...
    async def member_remove(self, node_id: int) -> Dict[str, Any]: ...
    async def status(self) -> Dict[str, Dict[str, Any]]: ...
    async def close(self) -> None: ...
    async def __aenter__(self) -> AsyncClient: ...
    async def __aexit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None: ...
