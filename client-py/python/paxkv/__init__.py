"""paxkv: the Python client of paxkv, a replicated key-value store kept consistent by
Multi-Paxos.

    import paxkv

    with paxkv.Client("[::1]:7001,[::1]:7002,[::1]:7003", cluster_secret_file="secret") as kv:
        revision = kv.put("greeting", "hello", ttl=30)
        assert kv.get("greeting") == b"hello"

``Client`` blocks (with the GIL released) and may be shared by many threads; ``AsyncClient``
has the same methods as coroutines for asyncio. Keys and values are ``str`` (stored as UTF-8)
or ``bytes``; values come back as ``bytes``. Times (TTLs, timeouts) are in seconds, as a number
or a ``datetime.timedelta``.
"""

from ._client import AsyncClient, AsyncLease, AsyncWatch, Client, Lease, Watch
from ._model import Deleted, Entry, Event, Item, LeaseStatus, TxnResult, Written
from ._recipes import (
    Acquiring,
    AsyncElection,
    AsyncLeadership,
    AsyncLock,
    AsyncObserver,
    Election,
    Leadership,
    Lock,
    Observer,
)
from ._txn import Compare, CompareNumber, CompareValue, Op
from ._errors import (
    AuthenticationError,
    ClientClosed,
    Compacted,
    ConflictError,
    MembershipRefused,
    Error,
    InvalidArgument,
    LeaseLost,
    NotFound,
    SessionExpired,
    Timeout,
    Unavailable,
)
from ._native import (
    DELETE_PREFIX_KEYS_MAX,
    HISTORY_REVISIONS_MAX,
    KEY_BYTES_MAX,
    SCAN_LIMIT_MAX,
    TXN_COMPARES_MAX,
    TXN_OPS_MAX,
    VALUE_BYTES_MAX,
)

__version__ = "0.1.0"

__all__ = [
    "Acquiring",
    "AsyncClient",
    "AsyncElection",
    "AsyncLeadership",
    "AsyncLease",
    "AsyncLock",
    "AsyncObserver",
    "AsyncWatch",
    "AuthenticationError",
    "Client",
    "ClientClosed",
    "Compacted",
    "Compare",
    "CompareNumber",
    "CompareValue",
    "ConflictError",
    "DELETE_PREFIX_KEYS_MAX",
    "Deleted",
    "Election",
    "Entry",
    "Error",
    "Event",
    "HISTORY_REVISIONS_MAX",
    "InvalidArgument",
    "Item",
    "KEY_BYTES_MAX",
    "Leadership",
    "Lease",
    "LeaseLost",
    "LeaseStatus",
    "Lock",
    "MembershipRefused",
    "NotFound",
    "Observer",
    "Op",
    "SCAN_LIMIT_MAX",
    "SessionExpired",
    "Timeout",
    "TXN_COMPARES_MAX",
    "TXN_OPS_MAX",
    "TxnResult",
    "Unavailable",
    "VALUE_BYTES_MAX",
    "Watch",
    "Written",
]
