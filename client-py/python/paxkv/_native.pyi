# The Rust extension under the paxkv package; see client-py/src/lib.rs. Not a public API:
# use paxkv.Client and paxkv.AsyncClient.
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union

_Data = Union[str, bytes, bytearray]
_Done = Optional[Callable[[bool, Any], None]]
# value, create revision, mod revision, version, lease id, expires at (ms of log time), log time.
_EntryTuple = Tuple[bytes, int, int, int, int, int, int]

KEY_BYTES_MAX: int
VALUE_BYTES_MAX: int
SCAN_LIMIT_MAX: int
HISTORY_REVISIONS_MAX: int
DELETE_PREFIX_KEYS_MAX: int

def after_fork_in_child() -> None: ...

# kind, revision, key, the key after a put (or None), the key before (or None).
_EventTuple = Tuple[str, int, bytes, Optional[_EntryTuple], Optional[_EntryTuple]]

class NativeWatch:
    def next(self, done: _Done = None) -> Tuple[int, List[_EventTuple], bool]: ...

class NativeClient:
    def __init__(self, endpoints: List[str], timeout_ms: int, secret: Optional[_Data] = None) -> None: ...
    def close(self) -> None: ...
    def put(
        self,
        key: _Data,
        value: _Data,
        ttl_ms: Optional[int],
        lease_id: Optional[int],
        keep_ttl: bool,
        expected_revision: Optional[int],
        timeout_ms: Optional[int] = None, done: _Done = None,
    ) -> Tuple[bool, int, Optional[_EntryTuple]]: ...
    def get(
        self, key: _Data, consistency: str, min_revision: int = 0, timeout_ms: Optional[int] = None, done: _Done = None
    ) -> Optional[_EntryTuple]: ...
    def delete(
        self, key: _Data, expected_revision: Optional[int] = None, timeout_ms: Optional[int] = None, done: _Done = None
    ) -> Tuple[bool, int, Optional[_EntryTuple]]: ...
    def delete_prefix(self, prefix: _Data, timeout_ms: Optional[int] = None, done: _Done = None) -> int: ...
    def scan(
        self, prefix: _Data, start_after: _Data, limit: int, consistency: str, revision: int = 0,
        timeout_ms: Optional[int] = None, done: _Done = None
    ) -> Tuple[List[Tuple[bytes, _EntryTuple]], bool, int]: ...
    def ttl(self, key: _Data, timeout_ms: Optional[int] = None, done: _Done = None) -> Optional[Tuple[bool, int]]: ...
    def expire(self, key: _Data, ttl_ms: int, condition: Optional[str], timeout_ms: Optional[int] = None, done: _Done = None) -> bool: ...
    def persist(self, key: _Data, timeout_ms: Optional[int] = None, done: _Done = None) -> bool: ...
    def lease(self, action: Literal["grant", "keep_alive", "revoke"], number: int, timeout_ms: Optional[int] = None, done: _Done = None) -> int: ...
    def lease_time_to_live(
        self, lease_id: int, keys: bool, timeout_ms: Optional[int] = None, done: _Done = None
    ) -> Tuple[int, int, List[bytes]]: ...
    def member(
        self, action: Literal["list", "add", "promote", "remove"], node_id: int = 0, peer_address: str = "",
        client_address: str = "", timeout_ms: Optional[int] = None, done: _Done = None
    ) -> Dict[str, Any]: ...
    def watch_open(
        self, key: _Data, prefix: bool, start_revision: int, prev_kv: bool, progress_ms: int,
        timeout_ms: Optional[int] = None, done: _Done = None
    ) -> NativeWatch: ...
    def status(self, timeout_ms: Optional[int] = None, done: _Done = None) -> Dict[str, Dict[str, Any]]: ...
