"""How a Redis node says it cannot take a write now (a replica, too few replicas, a cluster
down or resharding, still loading, full), as opposed to a bug: the API answers 503 for these
(connection.py) and `open` starts not ready instead of not at all (layout.py)."""

from __future__ import annotations

from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError

# The reply's first word, however it reaches us (a plain reply, or an error raised inside a
# script, which Redis prefixes the same way). MOVED/ASK: a redirect the client gave up on.
UNAVAILABLE_REPLIES = (
    "READONLY",
    "NOREPLICAS",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "LOADING",
    "MOVED",
    "ASK",
    "OOM",
)


def refuses_writes(exc: BaseException) -> bool:
    """Whether `exc` is the node refusing a write for now (see the module docstring)."""
    if isinstance(exc, ReadOnlyError | OutOfMemoryError):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(UNAVAILABLE_REPLIES)
