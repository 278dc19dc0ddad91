"""GET /dashboard: the operator page, static files read once from the package (api/dashboard/).

The files are public; the data is not: the page asks for an API key and calls /v1 with it.
A strict Content-Security-Policy allows only these files and same-origin API calls, so even
a bug that wrote data as HTML could not run a script.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from aiohttp import web

from wxgate.api.errors import ApiError

PAGE = "index.html"
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate every load (ETag): an upgraded gateway never serves a stale page.
    "Cache-Control": "no-cache",
}


def _load() -> dict[str, tuple[bytes, str, str]]:
    """name -> (body, content type, etag) for every file of the dashboard folder."""
    files: dict[str, tuple[bytes, str, str]] = {}
    folder = resources.files("wxgate.api").joinpath("dashboard")
    for entry in folder.iterdir():
        kind = _TYPES.get("." + entry.name.rsplit(".", 1)[-1])
        if kind is None or not entry.is_file():
            continue
        body = entry.read_bytes()
        files[entry.name] = (body, kind, '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
    return files


class DashboardRoutes:
    def __init__(self) -> None:
        self._files = _load()

    def _serve(self, request: web.Request, name: str) -> web.Response:
        found = self._files.get(name)
        if found is None:
            raise ApiError(404, "not_found", f"no dashboard file {name!r}")
        body, kind, etag = found
        headers = {**_HEADERS, "ETag": etag}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=kind, charset="utf-8", headers=headers)

    async def page(self, request: web.Request) -> web.Response:
        return self._serve(request, PAGE)

    async def slash(self, request: web.Request) -> web.Response:
        # Relative, so the page keeps working behind a reverse proxy's path prefix.
        return web.Response(status=301, headers={"Location": "../dashboard"})

    async def asset(self, request: web.Request) -> web.Response:
        return self._serve(request, request.match_info["name"])
