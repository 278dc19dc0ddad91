"""What every handler needs, built once in create_app and kept on the Application."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from wxgate.api.auth import KeyRing
from wxgate.api.depth import DepthGuard
from wxgate.clock import Clock
from wxgate.models import TokenEntry
from wxgate.settings import AppSettings, Settings
from wxgate.store.base import Store

StatsExtra = Callable[[], Awaitable[dict[str, Any]]]


class TokenSource(Protocol):
    """The part of wechat.tokens.TokenBroker the token service routes use."""

    async def get(self, app: AppSettings) -> str: ...
    async def invalidate(self, app: AppSettings, failed_token: str) -> None: ...
    async def peek(self, app: AppSettings) -> TokenEntry | None: ...


@dataclass(frozen=True, slots=True)
class Gateway:
    settings: Settings
    store: Store
    clock: Clock
    keys: KeyRing
    apps: dict[str, AppSettings]
    depth: DepthGuard
    broker: TokenSource | None = None
    stats_extra: StatsExtra | None = None

    @property
    def max_body_bytes(self) -> int:
        return self.settings.server.max_body_bytes

    @property
    def max_batch_body_bytes(self) -> int:
        return max(self.settings.server.max_body_bytes, self.settings.server.max_batch_body_bytes)


GATEWAY = web.AppKey("wxgate.gateway", Gateway)
