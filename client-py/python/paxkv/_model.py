"""The records paxkv's clients return."""

from dataclasses import dataclass
from typing import List, Optional


@dataclass(frozen=True)
class Entry:
    """A key's value with its metadata, as ``get_with_meta`` returns it."""

    value: bytes
    #: Revision of the last write to the key (what ``compare_and_set`` expects).
    revision: int
    #: Revision of the write that created the key (since it last did not exist).
    create_revision: int
    #: Number of writes since the key was created, starting at 1.
    version: int
    #: Id of the lease the key is attached to, or None.
    lease: Optional[int]
    #: Seconds left of the key's own TTL, or None if it has none.
    ttl: Optional[float]


@dataclass(frozen=True)
class LeaseStatus:
    """What ``Lease.time_to_live`` returns."""

    id: int
    #: Seconds left before the lease expires and its keys are deleted.
    remaining: float
    #: The time to live it was granted, in seconds.
    granted: float
    #: The keys attached to it (only when asked for with ``keys=True``).
    keys: List[bytes]
