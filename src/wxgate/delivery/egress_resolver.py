"""The address check at connect time for caller-chosen webhook URLs (SSRF, policy/egress.py).

`GuardedResolver` wraps aiohttp's resolver in the sender's own TCPConnector: every address a
name resolves to is checked before aiohttp may connect to any, and the addresses it returns
are the ones it connects to, so a name that answers a public address to one lookup and
127.0.0.1 to the next (DNS rebinding) gains nothing. aiohttp does not call the resolver for
IP-literal hosts, so `literal_refusal` checks those before the request is made.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from wxgate.policy.callback_hosts import ip_literal
from wxgate.policy.egress import Network, first_refusal, refusal


class EgressRefused(OSError):
    """A caller-chosen URL resolved to an address it may not reach (no retry helps)."""


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` (aiohttp's default resolver unless given) and refuses the whole
    answer if any address in it is refused: nothing is connected to then."""

    def __init__(
        self, allowed: Sequence[Network] = (), inner: AbstractResolver | None = None
    ) -> None:
        self._allowed = tuple(allowed)
        self._inner = inner if inner is not None else DefaultResolver()
        self.refused = 0  # names refused, for repr

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        why = first_refusal((a["host"] for a in answers), self._allowed)
        if why is not None:
            self.refused += 1
            raise EgressRefused(f"refused: {host} resolves to {why}")
        return answers

    async def close(self) -> None:
        await self._inner.close()

    def __repr__(self) -> str:
        return f"<GuardedResolver allowed={len(self._allowed)} refused={self.refused}>"


def literal_refusal(host: str, allowed: Sequence[Network] = ()) -> str | None:
    """Why an IP-literal host may not be reached (None: not a literal, or allowed)."""
    ip = ip_literal(host)
    if ip is None:
        return None
    why = refusal(ip, allowed)
    return None if why is None else f"refused: {ip} ({why})"


def refused_in(exc: BaseException) -> EgressRefused | None:
    """The EgressRefused behind an aiohttp error (it wraps resolver errors), if any."""
    seen: BaseException | None = exc
    for _ in range(8):  # causes and contexts, a short chain
        if seen is None:
            return None
        if isinstance(seen, EgressRefused):
            return seen
        nested = getattr(seen, "os_error", None)
        if isinstance(nested, EgressRefused):
            return nested
        seen = seen.__cause__ or seen.__context__
    return None
