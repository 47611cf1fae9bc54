"""The exceptions paxkv raises. Every one is a ``paxkv.Error``; most are also the built-in
exception a Python program would expect (``Timeout`` is a ``TimeoutError``, and so on)."""


class Error(Exception):
    """Base class of every paxkv error."""


class Unavailable(Error, ConnectionError):
    """No leader with a quorum answered within the timeout: most nodes are down, cannot reach
    each other, or this client cannot reach them. Nothing was applied by a read; a write that
    raises this was not acknowledged. Retry later or with a longer timeout."""


class Timeout(Error, TimeoutError):
    """A write got no answer within the timeout: it may or may not have taken effect. Read the
    key to find out before you write it again."""


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
