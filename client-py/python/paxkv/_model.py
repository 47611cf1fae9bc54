"""The records paxkv's clients return."""

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union


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
class Written:
    """What ``put(..., prev_kv=True)`` returns."""

    #: Revision of the write.
    revision: int
    #: The key as it was before the write, or None if it did not exist.
    previous: Optional[Entry]


@dataclass(frozen=True)
class Deleted:
    """What ``delete(..., prev_kv=True)`` returns."""

    #: Whether the key was deleted (False: it did not exist, or with ``expected_revision``, it
    #: was at another revision; ``previous`` tells which).
    deleted: bool
    #: The cluster's revision after the call.
    revision: int
    #: The key as it was before the call (as it still is if not deleted), or None.
    previous: Optional[Entry]


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


class Item(Tuple[bytes, Optional[bytes]]):
    """One key of a scan. It unpacks as ``key, value`` (``for key, value in kv.scan(...)``),
    and carries the key's metadata as attributes. ``value`` is None in a ``keys_only`` scan."""

    key: bytes
    value: Optional[bytes]
    #: Revision of the last write to the key.
    revision: int
    #: Revision of the write that created the key.
    create_revision: int
    #: Number of writes since the key was created, starting at 1.
    version: int
    #: Id of the lease the key is attached to, or None.
    lease: Optional[int]
    #: Seconds left of the key's own TTL, or None if it has none.
    ttl: Optional[float]

    def __new__(
        cls,
        key: bytes,
        value: Optional[bytes],
        revision: int,
        create_revision: int,
        version: int,
        lease: Optional[int],
        ttl: Optional[float],
    ) -> "Item":
        item = super().__new__(cls, (key, value))
        item.key, item.value, item.revision = key, value, revision
        item.create_revision, item.version, item.lease, item.ttl = create_revision, version, lease, ttl
        return item

    def __repr__(self) -> str:
        return (
            f"paxkv.Item(key={self.key!r}, value={self.value!r}, revision={self.revision}, "
            f"version={self.version}, lease={self.lease}, ttl={self.ttl})"
        )


@dataclass(frozen=True)
class Event:
    """One change a watch delivers."""

    #: ``"put"`` (written, or its TTL set or removed), ``"delete"`` (deleted, or its lease
    #: revoked) or ``"expire"`` (its TTL or its lease ran out); ``"progress"`` (only when the
    #: watch asked for ``progress=``): no change, every change up to ``revision`` delivered,
    #: ``key`` empty.
    kind: str
    key: bytes
    #: The revision of the change.
    revision: int
    #: The value after a put; None for a delete or an expiry.
    value: Optional[bytes]
    #: The key after a put, with its revisions and lease (``ttl`` is None: a stream does not
    #: say how much time is left).
    entry: Optional[Entry]
    #: The key before the change, if the watch asked for it (``prev_kv=True``) and it existed.
    previous: Optional[Entry]


@dataclass(frozen=True)
class TxnResult:
    """What ``transaction`` returns. It is true when the ``success`` branch ran, so
    ``if kv.transaction(...):`` reads as it should."""

    #: True if every compare held and the ``success`` operations ran; False if the
    #: ``failure`` ones did.
    succeeded: bool
    #: The revision of the state after it (the revision its writes share, if it wrote).
    revision: int
    #: One result per operation of the branch that ran, in order: for ``Op.put``, the
    #: revision it wrote (the transaction's); for ``Op.delete``, ``Op.delete_prefix`` and
    #: ``Op.delete_range``, how many keys went; for ``Op.get``, the key as an ``Item`` (as the
    #: branch left it at that point), or None if it did not exist.
    results: List[Union[int, Item, None]]

    def __bool__(self) -> bool:
        return self.succeeded
