"""The exceptions paxkv raises. Every one is a ``paxkv.Error``; most are also the built-in
exception a Python program would expect (``Timeout`` is a ``TimeoutError``, and so on)."""


class Error(Exception):
    """Base class of every paxkv error."""


class Timeout(Error, TimeoutError):
    """A call ran out of time. For a write: it got no answer within the timeout and may or may
    not have taken effect; read the key to find out before you write it again. A read that runs
    out of time raises ``Unavailable``, a kind of ``Timeout``."""


class Unavailable(Timeout, ConnectionError):
    """No leader with a quorum answered within the timeout: most nodes are down, cannot reach
    each other, or this client cannot reach them. A read changed nothing; a write that raises
    this was not applied. Retry later or with a longer timeout. It is a ``Timeout`` (and so a
    ``TimeoutError``): ``except paxkv.Timeout`` catches every call that ran out of time."""


class SessionExpired(Timeout):
    """The cluster forgot this write's session (it keeps a bounded number) after an earlier
    attempt of the write was sent: that attempt may or may not have taken effect, and the write
    was not applied again. Like a ``Timeout``, read the key to find out."""


class InvalidArgument(Error, ValueError):
    """The request is invalid (empty or oversized key, oversized value, TTL out of range, bad
    option) and was not applied."""


class AuthenticationError(Error, PermissionError):
    """The cluster and this client do not share the cluster secret."""


class NotFound(Error, LookupError):
    """The key or lease named does not exist (a lease that expired or was revoked is gone)."""


class ConflictError(Error):
    """A conditional write found the key in another state than it required (``create`` on a
    key that exists)."""


class MembershipRefused(Error):
    """A membership change broke a rule and was not made: another change is still in
    progress, the learner is still catching up, the cluster has its most voters, or the change
    would leave too few answering voters for a quorum. The message says which."""


class ClientClosed(Error):
    """The client was closed (``close()``, or the end of its ``with`` block): make a new one."""


class LeaseLost(Error):
    """A lease that a ``with`` block kept alive in the background ended before the block did
    (it expired while the cluster could not be reached, or someone revoked it): the keys
    attached to it are gone. Raised when the block ends; ``Lease.lost`` says so as soon as the
    keep-alive finds out, and it is logged as a warning of the ``paxkv`` logger."""


class Compacted(Error, LookupError):
    """A read asked for a revision older than the history the node keeps (a scan that ran
    while more than ``paxkv.HISTORY_REVISIONS_MAX`` writes happened): start it again."""
