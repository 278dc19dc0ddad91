"""Each app's template list, fetched from WeChat and cached for the accept-time checks.

- Official Account template messages: `GET /cgi-bin/template/get_all_private_template`
  answers `{"template_list": [{"template_id", "title", "primary_industry",
  "deputy_industry", "content": "{{first.DATA}}\\n订单号: {{keyword1.DATA}}...", "example"}]}`.
- Subscribe messages: `GET /wxaapi/newtmpl/gettemplate` answers `{"errcode": 0, "errmsg":
  "ok", "data": [{"priTmplId", "title", "content": "商品名称{{thing1.DATA}}...", "example",
  "type"}]}` (type 2 = one-time, 3 = long-term).
Both as wechatpy, WxJava and silenceper/wechat read them. A template's keys are its content's
`{{key.DATA}}` placeholders.

The cache, per (appid, kind): the first check of an app waits for the list (at most
`fetch_timeout_s`, one fetch however many callers: single flight); after `ttl_s` it is
refreshed in the background while the old list keeps answering; a template_id not in the list
refreshes it at once, but at most every `unknown_refresh_s` (a stream of bad ids cannot
hammer WeChat). When the list cannot be had (no permission, WeChat down) lookups say so and
the caller lets the message through unchecked: validation never blocks sending on its own
failure. Everything else is a dict lookup: no I/O on the ingest path but these refreshes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Protocol

import msgspec

from wxgate.clock import Clock
from wxgate.errors import Disposition, WeChatError, WxgateError
from wxgate.models import SUBSCRIBE_KINDS, MessageKind
from wxgate.policy.template_rules import SUBSCRIBE, TEMPLATE, CompiledTemplate, placeholders
from wxgate.settings import AppSettings, TemplateSettings
from wxgate.wechat.protocol import error_for

log = logging.getLogger("wxgate.templates")

OA_TEMPLATES_PATH = "/cgi-bin/template/get_all_private_template"
SUBSCRIBE_TEMPLATES_PATH = "/wxaapi/newtmpl/gettemplate"


# ---------------------------------------------------------------- answers (sans-IO)


class _OATemplate(msgspec.Struct):
    template_id: str
    content: str = ""
    title: str = ""


class _SubscribeTemplate(msgspec.Struct):
    priTmplId: str  # WeChat's spelling
    content: str = ""
    title: str = ""


class _OAList(msgspec.Struct):
    errcode: int = 0
    errmsg: str = ""
    template_list: list[_OATemplate] | None = None


class _SubscribeList(msgspec.Struct):
    errcode: int = 0
    errmsg: str = ""
    data: list[_SubscribeTemplate] | None = None


_oa_decoder = msgspec.json.Decoder(_OAList)
_subscribe_decoder = msgspec.json.Decoder(_SubscribeList)


def parse_templates(
    kind: MessageKind, http_status: int, body: bytes
) -> dict[str, CompiledTemplate]:
    """template_id -> CompiledTemplate from a template-list answer; WeChatError on an errcode."""
    if http_status != 200:
        raise WeChatError(-1, f"template list: HTTP {http_status}", Disposition.RETRY)
    try:
        if kind in SUBSCRIBE_KINDS:  # OA subscription notifications share the new list
            sub = _subscribe_decoder.decode(body)
            if sub.errcode != 0:
                raise error_for(sub.errcode, sub.errmsg)
            return {
                t.priTmplId: CompiledTemplate.of(
                    t.priTmplId, SUBSCRIBE, placeholders(t.content), t.title
                )
                for t in sub.data or ()
            }
        oa = _oa_decoder.decode(body)
    except msgspec.DecodeError:
        raise WeChatError(-1, "template list: unparseable answer", Disposition.RETRY) from None
    if oa.errcode != 0:
        raise error_for(oa.errcode, oa.errmsg)
    return {
        t.template_id: CompiledTemplate.of(
            t.template_id, TEMPLATE, placeholders(t.content), t.title
        )
        for t in oa.template_list or ()
    }


# ---------------------------------------------------------------- the cache


class TemplateAPI(Protocol):
    """What the catalog needs from WeChatClient."""

    async def api_get(self, path: str, access_token: str) -> tuple[int, bytes]: ...


class TokenProvider(Protocol):
    """What the catalog needs from TokenBroker."""

    async def get(self, app: AppSettings) -> str: ...
    async def invalidate(self, app: AppSettings, failed_token: str) -> object: ...


@dataclass(frozen=True, slots=True)
class TemplateLookup:
    """`template` when known; else `unknown` (the list was read and lacks it) or `problem`
    (why the list could not be read: check nothing)."""

    template: CompiledTemplate | None = None
    unknown: bool = False
    problem: str | None = None


class _Entry:
    __slots__ = ("error", "error_at", "forced_at", "loaded_at", "refresh", "templates")

    def __init__(self) -> None:
        self.templates: dict[str, CompiledTemplate] | None = None
        self.loaded_at = -math.inf  # clock.monotonic()
        self.forced_at = -math.inf
        self.error: str | None = None
        self.error_at = -math.inf
        self.refresh: asyncio.Task[None] | None = None


class TemplateCatalog:
    """Template lists per (appid, kind), fetched through the app's brokered token."""

    def __init__(
        self, api: TemplateAPI, tokens: TokenProvider, settings: TemplateSettings, clock: Clock
    ) -> None:
        self._api = api
        self._tokens = tokens
        self._settings = settings
        self._clock = clock
        self._entries: dict[tuple[str, MessageKind], _Entry] = {}
        self.fetches = 0
        self.fetch_errors = 0

    async def lookup(self, app: AppSettings, kind: MessageKind, template_id: str) -> TemplateLookup:
        key = (app.appid, kind)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        now = self._clock.monotonic()
        s = self._settings
        if entry.templates is None:
            if entry.refresh is None and now - entry.error_at >= s.unknown_refresh_s:
                self._start(entry, app, kind)
            await self._wait(entry)
            if entry.templates is None:
                return TemplateLookup(problem=entry.error or "the template list is loading")
        templates = entry.templates
        found = templates.get(template_id)
        if entry.refresh is None and now - entry.loaded_at >= s.ttl_s:
            self._start(entry, app, kind)  # in the background: the old list answers meanwhile
        if found is not None:
            return TemplateLookup(found)
        if now - entry.forced_at >= s.unknown_refresh_s:
            # Perhaps added since the last read: look again, once per interval.
            entry.forced_at = now
            if entry.refresh is None:
                self._start(entry, app, kind)
            await self._wait(entry)
            found = (entry.templates or templates).get(template_id)
            if found is not None:
                return TemplateLookup(found)
        return TemplateLookup(unknown=True)

    async def close(self) -> None:
        tasks = [e.refresh for e in self._entries.values() if e.refresh is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def __repr__(self) -> str:
        loaded = sum(1 for e in self._entries.values() if e.templates is not None)
        return (
            f"<TemplateCatalog lists={loaded}/{len(self._entries)} fetches={self.fetches} "
            f"errors={self.fetch_errors}>"
        )

    # ---------------------------------------------------------------- internals

    def _start(self, entry: _Entry, app: AppSettings, kind: MessageKind) -> None:
        entry.refresh = asyncio.create_task(self._load(entry, app, kind))

    async def _wait(self, entry: _Entry) -> None:
        task = entry.refresh
        if task is not None:
            # Not cancelled on timeout: other callers (and the cache) still want its answer.
            await asyncio.wait({task}, timeout=self._settings.fetch_timeout_s)

    async def _load(self, entry: _Entry, app: AppSettings, kind: MessageKind) -> None:
        try:
            self.fetches += 1
            templates = await self._fetch(app, kind)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.fetch_errors += 1
            entry.error = f"the template list could not be read: {_describe(exc)}"
            entry.error_at = self._clock.monotonic()
            if not isinstance(exc, WxgateError):
                log.exception("template list of app %s (%s) failed", app.name, kind.value)
            else:
                log.warning("template list of app %s (%s): %s", app.name, kind.value, exc)
        else:
            entry.templates = templates
            entry.loaded_at = self._clock.monotonic()
            entry.error = None
        finally:
            entry.refresh = None

    async def _fetch(self, app: AppSettings, kind: MessageKind) -> dict[str, CompiledTemplate]:
        path = SUBSCRIBE_TEMPLATES_PATH if kind in SUBSCRIBE_KINDS else OA_TEMPLATES_PATH
        token = await self._tokens.get(app)
        try:
            return parse_templates(kind, *await self._api.api_get(path, token))
        except WeChatError as exc:
            if exc.disposition is not Disposition.REFRESH_TOKEN:
                raise
            await self._tokens.invalidate(app, token)  # compare-and-invalidate, then once more
        token = await self._tokens.get(app)
        return parse_templates(kind, *await self._api.api_get(path, token))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, WeChatError):
        return f"errcode {exc.errcode}: {exc.errmsg}"[:200]
    return f"{type(exc).__name__}: {exc}"[:200]
