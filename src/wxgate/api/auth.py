"""API keys: who may call which /v1 route, for which apps, and how often.

Keys come from settings: `server.api_keys` (plain, or "sha256:<hex>"; every scope, every app,
no limit) and `[[server.keys]]` tables (a name, scopes, optional apps, a rate limit). Only the
SHA-256 of each key is kept in memory. The presented key is hashed once and compared with every
configured digest (hmac.compare_digest on equal-length digests, no early exit), so neither the
key's length nor which configured key came close shows in the time taken.

The per-key limit is a token bucket per process, taken once per request at ingress (a batch
of 10,000 recipients is one request); over it the answer is 429 with Retry-After.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import StrEnum

from aiohttp import web

from wxgate.api.errors import ApiError
from wxgate.clock import Clock, SystemClock
from wxgate.errors import ConfigError
from wxgate.policy.ratelimit import TokenBucket
from wxgate.settings import KeySettings, ServerSettings, api_key_digest


class Scope(StrEnum):
    SEND = "send"  # enqueue and cancel messages and batches
    READ = "read"  # message, batch, dead-letter and stats reads
    ADMIN = "admin"  # requeue dead letters
    TOKEN = "token"  # the access-token service


ALL_SCOPES = frozenset(Scope)


class KeyLimit:
    """One key's request budget in this process: `rate_per_s`, up to `burst` at once."""

    __slots__ = ("_bucket", "limited")

    def __init__(self, rate_per_s: float, burst: float, clock: Clock) -> None:
        self._bucket = TokenBucket(rate_per_s, burst, clock)
        self.limited = 0  # requests refused, for repr

    @property
    def rate_per_s(self) -> float:
        return self._bucket.rate_per_s

    @property
    def burst(self) -> float:
        return self._bucket.burst

    def admit(self) -> float:
        """Take one request's token: 0.0 if admitted, else seconds until one is available.

        A refused request takes nothing, so a caller that backs off as told gets through."""
        tokens = self._bucket.available()
        if tokens >= 1:
            self._bucket.reserve(1)
            return 0.0
        self.limited += 1
        return (1 - tokens) / self._bucket.rate_per_s

    def __repr__(self) -> str:
        return f"<KeyLimit {self.rate_per_s:g}/s burst={self.burst:g} limited={self.limited}>"


class ApiKey:
    """One configured key. Holds only the SHA-256 of the secret; `repr` shows no secret."""

    __slots__ = ("_digest", "apps", "callback_hosts", "limit", "name", "scopes")

    def __init__(
        self,
        name: str,
        secret: str | None = None,
        scopes: Iterable[Scope] = ALL_SCOPES,
        *,
        apps: Iterable[str] | None = None,
        limit: KeyLimit | None = None,
        digest: bytes | None = None,
        callback_hosts: Iterable[str] | None = None,
    ) -> None:
        """`secret` is the key, or "sha256:<hex>"; or pass `digest` (its raw SHA-256).
        `callback_hosts`: the hosts this key may choose callback URLs on, besides the app's
        list; None (a server.api_keys key) leaves it to the app's list alone."""
        self.name = name
        self.scopes = frozenset(scopes)
        self.apps = frozenset(apps) if apps is not None else None
        self.callback_hosts = tuple(callback_hosts) if callback_hosts is not None else None
        self.limit = limit
        if digest is None:
            if secret is None:
                raise ConfigError(f"API key {name}: no secret")
            digest = api_key_digest(secret, f"API key {name}")
        if len(digest) != 32:
            raise ConfigError(f"API key {name}: not a SHA-256 digest")
        self._digest = digest

    @classmethod
    def from_settings(cls, ks: KeySettings, clock: Clock) -> ApiKey:
        limit = None
        if ks.rate_per_s > 0:
            burst = ks.burst if ks.burst is not None else max(1.0, ks.rate_per_s)
            limit = KeyLimit(ks.rate_per_s, burst, clock)
        return cls(
            ks.name,
            scopes=(Scope(s) for s in ks.scopes),
            apps=ks.apps,
            limit=limit,
            digest=ks.digest(),
            callback_hosts=ks.callback_hosts,
        )

    def matches(self, presented_sha256: bytes) -> bool:
        return hmac.compare_digest(presented_sha256, self._digest)

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes

    def allows_app(self, app: str) -> bool:
        return self.apps is None or app in self.apps

    def __repr__(self) -> str:
        scopes = ",".join(sorted(s.value for s in self.scopes))
        apps = f" apps={','.join(sorted(self.apps))}" if self.apps is not None else ""
        limit = f" limit={self.limit.rate_per_s:g}/s" if self.limit is not None else ""
        return f"<ApiKey {self.name} scopes={scopes}{apps}{limit}>"


# At most this many distinct Authorization headers are remembered as matching a key (one
# key can be spelled several ways: "Bearer k", "bearer  k"...).
MATCHED_MAX = 1024


class KeyRing:
    """The configured keys; `authenticate` turns an Authorization header into a key or None."""

    def __init__(self, keys: Sequence[ApiKey]) -> None:
        self._keys = tuple(keys)
        # Authorization headers that matched a key before, and that key: a dict lookup
        # instead of a SHA-256 and a compare per key on every request (~12k instructions, 4%
        # of a POST /v1/messages). Only matches are kept, so a guess always takes the full
        # path; a hit is faster than a miss, but the answer tells a caller that anyway.
        self._matched: dict[str, ApiKey] = {}

    @classmethod
    def from_settings(cls, server: ServerSettings, clock: Clock | None = None) -> KeyRing:
        clock = clock or SystemClock()
        keys = [ApiKey(f"api_keys[{i}]", k) for i, k in enumerate(server.api_keys)]
        keys += [ApiKey.from_settings(ks, clock) for ks in server.keys]
        return cls(keys)

    def authenticate(self, authorization: str | None) -> ApiKey | None:
        if not authorization or not self._keys:
            return None
        known = self._matched.get(authorization)
        if known is not None:
            return known
        found = self._check(authorization)
        if found is not None and len(self._matched) < MATCHED_MAX:
            self._matched[authorization] = found
        return found

    def _check(self, authorization: str) -> ApiKey | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        presented = token.strip().encode("utf-8")
        if not presented:
            return None
        presented_sha256 = hashlib.sha256(presented).digest()
        found: ApiKey | None = None
        for key in self._keys:  # no early exit: the time taken does not depend on which matched
            if key.matches(presented_sha256) and found is None:
                found = key
        return found

    def __iter__(self) -> Iterator[ApiKey]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"<KeyRing keys={len(self._keys)}>"


# ---------------------------------------------------------------- per request

CALLER = web.RequestKey("wxgate.api_key", ApiKey)


def check(
    key: ApiKey,
    scope: Scope,
    request: web.Request,
    on_limited: Callable[[str], None] = lambda name: None,
) -> None:
    """Scope, then the app named in the path (if any), then the key's rate limit; remembers
    the key on the request for the handlers' app checks (`caller`, `require_app`)."""
    if not key.allows(scope):
        raise ApiError(403, "forbidden", f"this key lacks the {scope.value!r} scope")
    app = request.match_info.get("app")
    if app is not None:
        require_app(key, app)
    if key.limit is not None:
        wait = key.limit.admit()
        if wait > 0:
            on_limited(key.name)
            raise ApiError(
                429,
                "rate_limited",
                f"key {key.name!r} is over its limit of {key.limit.rate_per_s:g} requests/s",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
    request[CALLER] = key


def require_app(key: ApiKey | None, app: str) -> None:
    """403 unless the key may use `app` (keys without an apps list may use every app)."""
    if key is not None and key.apps is not None and app not in key.apps:
        raise ApiError(403, "forbidden", f"this key may not use app {app!r}", "app")


def caller(request: web.Request) -> ApiKey | None:
    """The key that authenticated this request (None on routes without auth)."""
    return request.get(CALLER)


def callback_hosts(request: web.Request) -> tuple[str, ...] | None:
    """The hosts this request's key may choose callback URLs on (None: no key-level list)."""
    key = request.get(CALLER)
    return key.callback_hosts if key is not None else None


def allowed_apps(request: web.Request) -> frozenset[str] | None:
    """The apps this request's key is limited to, or None for every app."""
    key = request.get(CALLER)
    return key.apps if key is not None else None
