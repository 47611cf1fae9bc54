"""Checks and conversions of the arguments every command shares (keys, durations, counts,
leases), apart from the clients so that the transaction and recipe modules use them too."""

import datetime
import math
from typing import Any, Optional, Tuple, Union

from ._errors import InvalidArgument

Data = Union[str, bytes, bytearray]
Seconds = Union[int, float, datetime.timedelta]


class LeaseHandle:
    """What ``Lease`` and ``AsyncLease`` are to the argument checks: something with a lease
    id (a base class here, so that this module needs no client)."""

    id: int


def _milliseconds(seconds: Seconds, what: str) -> int:
    """A positive duration in whole milliseconds, rounded up so it never becomes 0."""
    if isinstance(seconds, datetime.timedelta):
        seconds = seconds.total_seconds()
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{what} must be seconds (int, float or timedelta), not {type(seconds).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidArgument(f"{what} must be a positive number of seconds, not {seconds!r}")
    return math.ceil(seconds * 1000)


def _optional_milliseconds(seconds: Optional[Seconds], what: str) -> Optional[int]:
    return None if seconds is None else _milliseconds(seconds, what)


def _count(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise InvalidArgument(f"{what} must be at least {minimum}, not {value}")
    return value


def _lease_id(lease: "Union[LeaseHandle, int, None]") -> Optional[int]:
    if lease is None:
        return None
    if isinstance(lease, LeaseHandle):
        return lease.id
    return _count(lease, "lease", minimum=1)


def _write_options(
    ttl: Optional[Seconds], lease: "Union[LeaseHandle, int, None]", keep_ttl: bool
) -> Tuple[Optional[int], Optional[int], bool]:
    """The TTL and lease arguments of a put or a compare-and-set, checked."""
    if keep_ttl and ttl is not None:
        raise InvalidArgument("pass ttl= or keep_ttl=True, not both")
    return _optional_milliseconds(ttl, "ttl"), _lease_id(lease), bool(keep_ttl)


def _bytes(data: Data) -> bytes:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    raise TypeError(f"expected str or bytes, not {type(data).__name__}")
