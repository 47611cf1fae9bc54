"""Compares and operations of a transaction (``kv.transaction``).

Each is built by the Rust client as soon as it is written (so a mistake shows at that line,
not when the transaction is sent) and kept with a description for ``repr`` and ``==``.
"""

from typing import Any, NoReturn, Optional, Tuple, Union

from ._arguments import Data, LeaseHandle, Seconds, _count, _write_options
from ._errors import InvalidArgument
from ._native import NativeCompare, NativeOp


def _bytes(data: Data, what: str) -> bytes:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    raise TypeError(f"{what} must be str or bytes, not {type(data).__name__}")


class Compare:
    """One condition of a transaction, on one key, checked by the cluster:

    - ``Compare.value(key) == b"on"`` (also ``!=``, ``>``, ``<``: byte order; a key that does
      not exist has no value, so a value compare on it never holds);
    - ``Compare.mod_revision(key) == 5``, ``Compare.create_revision(key)``,
      ``Compare.version(key)``, ``Compare.lease(key)``, with ``==``, ``!=``, ``>``, ``<``
      (a key that does not exist has 0 for each);
    - ``Compare.exists(key)``, ``Compare.absent(key)``.

    A Compare is no boolean: Python cannot tell whether it holds, only the cluster can.
    """

    __slots__ = ("key", "target", "op", "operand", "_native")

    def __init__(self, key: bytes, target: str, op: str, operand: Union[bytes, int, None], native: NativeCompare):
        #: The key it looks at.
        self.key = key
        #: What of the key: "value", "mod_revision", "create_revision", "version", "lease", "exists".
        self.target = target
        #: "==", "!=", ">" or "<" ("==" means exists and "!=" absent for "exists").
        self.op = op
        #: What the target is compared with (None for "exists").
        self.operand = operand
        self._native = native

    @staticmethod
    def value(key: Data) -> "CompareValue":
        """The key's value, compared byte by byte."""
        return CompareValue(_bytes(key, "key"))

    @staticmethod
    def mod_revision(key: Data) -> "CompareNumber":
        """The revision of the key's last write (0: no key)."""
        return CompareNumber(_bytes(key, "key"), "mod_revision")

    @staticmethod
    def create_revision(key: Data) -> "CompareNumber":
        """The revision that created the key (0: no key)."""
        return CompareNumber(_bytes(key, "key"), "create_revision")

    @staticmethod
    def version(key: Data) -> "CompareNumber":
        """Writes since the key was created (0: no key)."""
        return CompareNumber(_bytes(key, "key"), "version")

    @staticmethod
    def lease(key: Data) -> "CompareNumber":
        """The id of the lease the key is attached to (0: none, or no key)."""
        return CompareNumber(_bytes(key, "key"), "lease")

    @staticmethod
    def exists(key: Data) -> "Compare":
        """Holds if the key exists."""
        key = _bytes(key, "key")
        return Compare(key, "exists", "==", None, NativeCompare(key, "exists", "==", b"", 0))

    @staticmethod
    def absent(key: Data) -> "Compare":
        """Holds if the key does not exist."""
        key = _bytes(key, "key")
        return Compare(key, "exists", "!=", None, NativeCompare(key, "exists", "!=", b"", 0))

    def _describe(self) -> Tuple[bytes, str, str, Union[bytes, int, None]]:
        return (self.key, self.target, self.op, self.operand)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Compare) and self._describe() == other._describe()

    def __hash__(self) -> int:
        return hash(self._describe())

    def __bool__(self) -> NoReturn:
        raise TypeError(
            "a paxkv.Compare is checked by the cluster, not by Python: pass it to "
            "kv.transaction(compare=[...])"
        )

    def __repr__(self) -> str:
        if self.target == "exists":
            return f"paxkv.Compare.{'exists' if self.op == '==' else 'absent'}({self.key!r})"
        return f"paxkv.Compare.{self.target}({self.key!r}) {self.op} {self.operand!r}"


class _Operand:
    """A compare that still needs its operator and operand."""

    __slots__ = ("key", "target")
    # The operators make Compares, so instances are neither hashable nor comparable.
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, key: bytes, target: str):
        self.key = key
        self.target = target

    def _compare(self, op: str, operand: Any) -> Compare:
        raise NotImplementedError

    def __eq__(self, operand: Any) -> Compare:  # type: ignore[override]
        return self._compare("==", operand)

    def __ne__(self, operand: Any) -> Compare:  # type: ignore[override]
        return self._compare("!=", operand)

    def __gt__(self, operand: Any) -> Compare:
        return self._compare(">", operand)

    def __lt__(self, operand: Any) -> Compare:
        return self._compare("<", operand)

    def __ge__(self, operand: Any) -> NoReturn:
        raise TypeError("a paxkv compare takes ==, !=, > or <; for >= N write > N - 1")

    def __le__(self, operand: Any) -> NoReturn:
        raise TypeError("a paxkv compare takes ==, !=, > or <; for <= N write < N + 1")

    def __bool__(self) -> NoReturn:
        raise TypeError(f"paxkv.Compare.{self.target}(key) needs an operator and an operand, such as == 5")

    def __repr__(self) -> str:
        return f"paxkv.Compare.{self.target}({self.key!r})"


class CompareValue(_Operand):
    """``Compare.value(key)``, waiting for ``== value`` (or ``!=``, ``>``, ``<``)."""

    __slots__ = ()

    def __init__(self, key: bytes):
        super().__init__(key, "value")

    def _compare(self, op: str, operand: Any) -> Compare:
        value = _bytes(operand, "the operand of a value compare")
        return Compare(self.key, "value", op, value, NativeCompare(self.key, "value", op, value, 0))


class CompareNumber(_Operand):
    """``Compare.mod_revision(key)`` and the like, waiting for ``== number`` (or ``!=``,
    ``>``, ``<``)."""

    __slots__ = ()

    def _compare(self, op: str, operand: Any) -> Compare:
        number = _count(operand, f"the operand of a {self.target} compare")
        return Compare(self.key, self.target, op, number, NativeCompare(self.key, self.target, op, b"", number))


class Op:
    """One operation of a transaction's branch, applied in order at the transaction's one
    revision; its result is in ``TxnResult.results`` at the same index:

    - ``Op.put(key, value, ttl=None, lease=None, keep_ttl=False)``: the revision written;
    - ``Op.delete(key)``, ``Op.delete_prefix(prefix)``, ``Op.delete_range(start, end)``: how
      many keys went;
    - ``Op.get(key)``: the key as an ``Item`` (as the branch left it at that point), or None.

    A branch writes each key once: putting a key twice, or putting and deleting it, is refused
    with ``InvalidArgument`` and nothing is applied.
    """

    __slots__ = ("kind", "key", "end", "_native")

    def __init__(self, kind: str, key: bytes, end: Optional[bytes], native: NativeOp):
        #: "put", "delete", "delete_prefix", "delete_range" or "get".
        self.kind = kind
        self.key = key
        #: The end of a range delete (excluded), else None.
        self.end = end
        self._native = native

    @staticmethod
    def put(
        key: Data,
        value: Data,
        *,
        ttl: Optional[Seconds] = None,
        lease: Union[LeaseHandle, int, None] = None,
        keep_ttl: bool = False,
    ) -> "Op":
        """Writes ``value`` under ``key``; ``ttl`` (seconds), ``lease`` (a ``Lease`` or its
        id) and ``keep_ttl`` as for ``kv.put``. A lease that is gone fails the whole
        transaction with ``NotFound``: nothing of it is applied."""
        ttl_ms, lease_id, keep = _write_options(ttl, lease, keep_ttl)
        key = _bytes(key, "key")
        native = NativeOp.put(key, _bytes(value, "value"), ttl_ms, lease_id, keep)
        return Op("put", key, None, native)

    @staticmethod
    def delete(key: Data) -> "Op":
        """Deletes ``key`` if it exists (its result: 1, or 0 if it did not)."""
        key = _bytes(key, "key")
        return Op("delete", key, None, NativeOp.delete(key))

    @staticmethod
    def delete_prefix(prefix: Data) -> "Op":
        """Deletes every key that starts with ``prefix`` (not empty); at most
        ``paxkv.DELETE_PREFIX_KEYS_MAX`` keys, or the transaction is refused."""
        prefix = _bytes(prefix, "prefix")
        if not prefix:
            raise InvalidArgument("an empty prefix would delete every key; name a prefix")
        return Op("delete_prefix", prefix, None, NativeOp.delete_prefix(prefix))

    @staticmethod
    def delete_range(start: Data, end: Data) -> "Op":
        """Deletes every key from ``start`` (included) to ``end`` (excluded); at most
        ``paxkv.DELETE_PREFIX_KEYS_MAX`` keys, or the transaction is refused."""
        start, end = _bytes(start, "start"), _bytes(end, "end")
        _check_range(start, end)
        return Op("delete_range", start, end, NativeOp.delete_range(start, end))

    @staticmethod
    def get(key: Data) -> "Op":
        """Reads ``key`` as the transaction sees it at this point (after the writes before
        it in the branch)."""
        key = _bytes(key, "key")
        return Op("get", key, None, NativeOp.get(key))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Op) and (self.kind, self.key, self.end) == (other.kind, other.key, other.end)

    def __hash__(self) -> int:
        return hash((self.kind, self.key, self.end))

    def __repr__(self) -> str:
        if self.kind == "delete_range":
            return f"paxkv.Op.delete_range({self.key!r}, {self.end!r})"
        return f"paxkv.Op.{self.kind}({self.key!r}, ...)" if self.kind == "put" else f"paxkv.Op.{self.kind}({self.key!r})"


def _check_range(start: bytes, end: bytes) -> None:
    """A range is ``start`` (not empty) up to ``end`` (after it): the cluster reads an empty
    end as "the key ``start`` alone", which a range delete must never become."""
    if not start:
        raise InvalidArgument("a range starts at a key; name one (an empty start would begin at the first key)")
    if end <= start:
        raise InvalidArgument(f"the range's end {end!r} must come after its start {start!r}")
