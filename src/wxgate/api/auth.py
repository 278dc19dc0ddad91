"""API keys and their scopes: who may call which /v1 route.

Keys come from settings.server.api_keys, either plain or as "sha256:<hex>" so the file need
not hold the key itself. Every configured key is compared on every call (constant time, no
early exit) so response timing does not tell which key came close.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from enum import StrEnum

from wxgate.errors import ConfigError
from wxgate.settings import ServerSettings


class Scope(StrEnum):
    SEND = "send"  # enqueue and cancel messages and batches
    READ = "read"  # message, batch, dead-letter and stats reads
    ADMIN = "admin"  # requeue dead letters
    TOKEN = "token"  # the access-token service


ALL_SCOPES = frozenset(Scope)


class ApiKey:
    """One configured key. Holds only a digest of the secret; `repr` shows the name and scopes."""

    __slots__ = ("_digest", "_hashed", "name", "scopes")

    def __init__(self, name: str, secret: str, scopes: Iterable[Scope] = ALL_SCOPES) -> None:
        self.name = name
        self.scopes = frozenset(scopes)
        if secret.startswith("sha256:"):
            hexdigest = secret[len("sha256:") :].strip().lower()
            try:
                raw = bytes.fromhex(hexdigest)
            except ValueError:
                raise ConfigError(f"server.api_keys: {name} is not a sha256 hex digest") from None
            if len(raw) != 32:
                raise ConfigError(f"server.api_keys: {name} is not a sha256 hex digest")
            self._digest, self._hashed = raw, True
        else:
            if not secret:
                raise ConfigError(f"server.api_keys: {name} is empty")
            self._digest, self._hashed = secret.encode("utf-8"), False

    def matches(self, presented: bytes, presented_sha256: bytes) -> bool:
        if self._hashed:
            return hmac.compare_digest(presented_sha256, self._digest)
        return hmac.compare_digest(presented, self._digest)

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes

    def __repr__(self) -> str:
        scopes = ",".join(sorted(s.value for s in self.scopes))
        return f"<ApiKey {self.name} scopes={scopes}>"


class KeyRing:
    """The configured keys; `authenticate` turns an Authorization header into a key or None."""

    def __init__(self, keys: Sequence[ApiKey]) -> None:
        self._keys = tuple(keys)

    @classmethod
    def from_settings(cls, server: ServerSettings) -> KeyRing:
        # Scoped keys ([[server.keys]]) come later; until then every key holds every scope.
        return cls([ApiKey(f"key{i}", k) for i, k in enumerate(server.api_keys)])

    def authenticate(self, authorization: str | None) -> ApiKey | None:
        if not authorization or not self._keys:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        presented = token.strip().encode("utf-8")
        if not presented:
            return None
        presented_sha256 = hashlib.sha256(presented).digest()
        found: ApiKey | None = None
        for key in self._keys:  # no early exit: the time taken does not depend on which matched
            if key.matches(presented, presented_sha256) and found is None:
                found = key
        return found

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"<KeyRing keys={len(self._keys)}>"
