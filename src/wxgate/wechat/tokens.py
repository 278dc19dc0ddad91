"""The access_token broker: one valid token per app, shared by every process of a deployment.

The proven recipe (WxJava, after multi-instance refresh loops): refresh early, one refresh in
flight per app (an asyncio.Lock in-process, a TTL lock in the shared cache across processes),
re-check the cache after every lock, and on a token error invalidate the cached token only if
it is still the one that failed, then retry exactly once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections import Counter
from typing import Protocol

from wxgate.clock import Clock, SystemClock
from wxgate.errors import (
    BadTokenEndpoint,
    Disposition,
    NotSent,
    TokenAnswer,
    TransportError,
    WeChatError,
)
from wxgate.models import Message, TokenEntry
from wxgate.settings import AppSettings


class TokenCache(Protocol):
    """The token part of the Store contract (store/base.py), so any Store is a TokenCache."""

    async def get_token(self, app: str) -> TokenEntry | None: ...
    async def set_token(self, app: str, entry: TokenEntry) -> None: ...
    async def invalidate_token(self, app: str, access_token: str) -> bool: ...
    async def acquire_lock(self, name: str, owner: str, ttl_s: float) -> bool: ...
    async def release_lock(self, name: str, owner: str) -> None: ...


class WeChatAPI(Protocol):
    """What the broker needs from WeChatClient."""

    async def send(self, message: Message, access_token: str) -> int | None: ...
    async def fetch_token(self, app: AppSettings, force_refresh: bool = False) -> TokenEntry: ...


class MemoryTokenCache:
    """A single-process TokenCache (tests, and setups whose store does not share tokens)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._tokens: dict[str, TokenEntry] = {}
        self._locks: dict[str, tuple[str, float]] = {}

    async def get_token(self, app: str) -> TokenEntry | None:
        return self._tokens.get(app)

    async def set_token(self, app: str, entry: TokenEntry) -> None:
        self._tokens[app] = entry

    async def invalidate_token(self, app: str, access_token: str) -> bool:
        current = self._tokens.get(app)
        if current is None or current.access_token != access_token:
            return False
        del self._tokens[app]
        return True

    async def acquire_lock(self, name: str, owner: str, ttl_s: float) -> bool:
        now = self._clock.monotonic()
        held = self._locks.get(name)
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self._locks[name] = (owner, now + ttl_s)
        return True

    async def release_lock(self, name: str, owner: str) -> None:
        held = self._locks.get(name)
        if held is not None and held[0] == owner:
            del self._locks[name]

    def __repr__(self) -> str:
        return f"<MemoryTokenCache tokens={len(self._tokens)} locks={len(self._locks)}>"


def _clone(exc: WeChatError) -> WeChatError:
    """A fresh copy to raise again: re-raising one instance from many tasks grows its traceback."""
    if isinstance(exc, TransportError):
        return type(exc)(exc.errmsg)
    if isinstance(exc, TokenAnswer | BadTokenEndpoint):
        return TokenAnswer(exc.errcode, exc.errmsg, exc.disposition)  # the app's, kept so
    return WeChatError(exc.errcode, exc.errmsg, exc.disposition)


class TokenBroker:
    """Hands out access_tokens per app; see the module docstring for the rules it keeps.

    Tokens are cached under the appid (a token belongs to the appid, whatever the app's name).
    """

    def __init__(
        self,
        client: WeChatAPI,
        cache: TokenCache,
        clock: Clock,
        refresh_ahead_s: float = 300.0,
        *,
        lock_ttl_s: float = 15.0,
        lock_poll_s: float = 0.05,
        local_ttl_s: float = 30.0,
        config_error_ttl_s: float = 30.0,
        failure_ttl_s: float = 1.0,
        owner: str | None = None,
    ) -> None:
        self._client = client
        self._cache = cache
        self._clock = clock
        self._ahead = refresh_ahead_s
        self._lock_ttl_s = lock_ttl_s
        self._lock_poll_s = lock_poll_s
        # A process re-reads the shared cache at least this often, so a token another process
        # fetched (classic mode kills ours 5 minutes later) is picked up before ours dies.
        self._local_ttl_s = local_ttl_s
        self._config_error_ttl_s = config_error_ttl_s
        self._failure_ttl_s = failure_ttl_s
        self._owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._locks: dict[str, asyncio.Lock] = {}
        self._local: dict[str, tuple[TokenEntry, float]] = {}  # appid -> (entry, checked mono)
        self._failures: dict[str, tuple[WeChatError, float]] = {}  # appid -> (error, until mono)
        # appid -> the last token WeChat rejected. A cache read that raced with its
        # invalidation can still return it; it is never handed out again until a fetch.
        self._rejected: dict[str, str] = {}
        self.fetches: Counter[str] = Counter()  # token endpoint calls per appid, by this broker
        self.fetch_failures: Counter[str] = Counter()  # of those, the ones that failed
        self.invalidations = 0
        self.refresh_retries = 0

    # ---------------------------------------------------------------- freshness

    def _refresh_at(self, entry: TokenEntry) -> float:
        """When to stop handing out `entry`: refresh_ahead_s before expiry, but never before
        half its life has passed. stable_token hands out the *old* token during its last
        5 minutes, and without the half-life floor each such answer would look stale at once
        and trigger a fetch per call."""
        life = entry.expires_at - entry.fetched_at
        return max(entry.expires_at - self._ahead, entry.fetched_at + life / 2)

    def _fresh(self, entry: TokenEntry | None) -> bool:
        return entry is not None and self._clock.now() < self._refresh_at(entry)

    def _usable(self, key: str, entry: TokenEntry) -> bool:
        """Fresh, and not the token WeChat last rejected for this app."""
        return self._fresh(entry) and entry.access_token != self._rejected.get(key)

    def _local_hit(self, key: str) -> TokenEntry | None:
        hit = self._local.get(key)
        if hit is None:
            return None
        entry, checked = hit
        if self._clock.monotonic() - checked >= self._local_ttl_s or not self._usable(key, entry):
            return None
        return entry

    def _keep_local(self, key: str, entry: TokenEntry) -> TokenEntry:
        self._local[key] = (entry, self._clock.monotonic())
        return entry

    def _remembered_failure(self, key: str) -> WeChatError | None:
        failure = self._failures.get(key)
        if failure is None:
            return None
        if self._clock.monotonic() >= failure[1]:
            del self._failures[key]
            return None
        return failure[0]

    def _remember_failure(self, key: str, exc: WeChatError) -> None:
        # A wrong secret stays wrong: remember it long enough that a crowd of callers causes
        # one fetch, not one each. Transient failures are remembered only for a moment.
        ttl = self._config_error_ttl_s if exc.disposition is Disposition.CONFIG else None
        self._failures[key] = (exc, self._clock.monotonic() + (ttl or self._failure_ttl_s))

    # ---------------------------------------------------------------- public API

    async def get(self, app: AppSettings) -> str:
        """A valid access_token for `app`, fetching one if needed (one fetch at a time)."""
        return (await self._entry(app)).access_token

    async def peek(self, app: AppSettings) -> TokenEntry | None:
        """The shared cache's entry for `app`, without fetching."""
        return await self._cache.get_token(app.appid)

    async def invalidate(self, app: AppSettings, failed_token: str) -> bool:
        """Forget `failed_token`, but only if it is still the current one (compare-and-delete):
        a late report about an old token must not throw away the fresh one. True if it was."""
        key = app.appid
        self._rejected[key] = failed_token
        local = self._local.get(key)
        if local is not None and local[0].access_token == failed_token:
            del self._local[key]
        if await self._cache.invalidate_token(key, failed_token):
            self.invalidations += 1
            return True
        return False

    async def send(self, app: AppSettings, message: Message) -> int | None:
        """Send with the current token; on a token error refresh and retry exactly once.

        The retry is not an attempt of the message: the message was fine, the token was not.
        """
        token = await self.get(app)
        try:
            return await self._client.send(message, token)
        except WeChatError as exc:
            if exc.disposition is not Disposition.REFRESH_TOKEN:
                raise
            await self.invalidate(app, token)
        self.refresh_retries += 1
        token = await self.get(app)
        try:
            return await self._client.send(message, token)
        except WeChatError as exc:
            if exc.disposition is Disposition.REFRESH_TOKEN:
                # Forget this one too so the message's next attempt starts from a new token,
                # but do not loop here (wechatpy's uncapped auto-retry can spin forever).
                await self.invalidate(app, token)
            raise

    # ---------------------------------------------------------------- internals

    async def _entry(self, app: AppSettings) -> TokenEntry:
        key = app.appid
        hit = self._local_hit(key)
        if hit is not None:
            return hit
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            # Re-check: whoever held the lock before us has probably fetched already.
            hit = self._local_hit(key)
            if hit is not None:
                return hit
            cached = await self._cache.get_token(key)
            if cached is not None and self._usable(key, cached):
                return self._keep_local(key, cached)
            failure = self._remembered_failure(key)
            if failure is None:
                try:
                    return self._keep_local(key, await self._refresh(app, key))
                except WeChatError as exc:
                    self._remember_failure(key, exc)
                    failure = exc
            if (
                cached is not None
                and self._clock.now() < cached.expires_at
                and cached.access_token != self._rejected.get(key)
            ):
                # Refreshing ahead failed, but the current token still works until it expires.
                return cached
            raise _clone(failure)

    async def _refresh(self, app: AppSettings, key: str) -> TokenEntry:
        """Fetch under the cross-process lock; if another process holds it, wait for its token."""
        name = f"token:{app.appid}"
        deadline = self._clock.monotonic() + self._lock_ttl_s + self._lock_poll_s
        while True:
            if await self._cache.acquire_lock(name, self._owner, self._lock_ttl_s):
                try:
                    cached = await self._cache.get_token(key)
                    if cached is not None and self._usable(key, cached):
                        return cached  # another process refreshed while we queued
                    self.fetches[app.appid] += 1
                    try:
                        entry = await self._client.fetch_token(app)
                    except TransportError as exc:
                        self.fetch_failures[app.appid] += 1
                        # No message went out: tell the caller it is safe to resend as is.
                        raise NotSent(f"token fetch failed: {exc.errmsg}") from None
                    except WeChatError:
                        self.fetch_failures[app.appid] += 1
                        raise
                    # What WeChat just issued is good, even if it is the rejected token again.
                    self._rejected.pop(key, None)
                    await self._cache.set_token(key, entry)
                    return entry
                finally:
                    await self._cache.release_lock(name, self._owner)
            await self._clock.sleep(self._lock_poll_s)
            cached = await self._cache.get_token(key)
            if cached is not None and self._usable(key, cached):
                return cached
            if self._clock.monotonic() >= deadline:
                # The lock's TTL has passed, so a crashed holder cannot be the reason; give up
                # for now rather than queue callers forever.
                raise NotSent(f"token refresh for {app.appid} is held elsewhere; try again")

    def __repr__(self) -> str:
        return (
            f"<TokenBroker apps={len(self._local)} fetches={sum(self.fetches.values())} "
            f"invalidations={self.invalidations} refresh_retries={self.refresh_retries}>"
        )
