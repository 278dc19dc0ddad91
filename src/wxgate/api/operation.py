"""One route of the API: what the router registers and what /openapi.json says about it.

api/routes.py lists them all (ROUTES); api/app.py registers that list and api/openapi.py
documents it, so a route cannot be served undocumented or documented unserved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from wxgate.api.auth import Scope

if TYPE_CHECKING:
    from wxgate.api.views import Views

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = str | dict[str, Any]  # a JSON type name, or a whole JSON schema
# A model (JSON), a media type (a raw body), or several of these
Content = type[msgspec.Struct] | str | tuple[type[msgspec.Struct] | str, ...]


@dataclass(frozen=True)
class Op:
    """The OpenAPI operation of a route: what it answers, takes and may refuse."""

    summary: str
    ok: tuple[str, Content | None]  # (status, what it carries; None: no body)
    body: Content | None = None
    errors: tuple[str, ...] = ()
    params: tuple[tuple[str, str, Schema, str], ...] = ()  # (name, in, schema, description)
    description: str = ""
    headers: tuple[tuple[str, Schema, str], ...] = field(default=())  # (name, schema, desc)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    # Picks the bound handler from the app's views (built once per Application).
    handler: Callable[[Views], Handler]
    scope: Scope | None  # None: no key needed
    op: Op
    probe: bool = False  # served by a worker-only process too (liveness, readiness, metrics)
