"""The template-list endpoints, and (when an app asks for it) sends checked against them.

- `GET|POST /cgi-bin/template/get_all_private_template`: the app's Official Account templates,
  `{"template_list": [{"template_id", "title", "primary_industry", "deputy_industry",
  "content", "example"}]}` (no errcode on success, as WeChat answers).
- `GET /wxaapi/newtmpl/gettemplate`: its subscribe templates, `{"errcode": 0, "errmsg": "ok",
  "data": [{"priTmplId", "title", "content", "example", "type"}]}`.
Written from docs/wechat-api.md on its own (docs/architecture.md §10): nothing here is shared
with the gateway's parser.
"""

from __future__ import annotations

from aiohttp import web

from wxgate.sim import answers
from wxgate.sim.config import SimApp, SimTemplate
from wxgate.sim.state import SimState

_JSON = "application/json"
_ONE_TIME = 2  # subscribe template type: 2 one-time, 3 long-term

Problem = tuple[int, str | None]


def content_of(t: SimTemplate) -> str:
    """The template body WeChat shows: one `label{{key.DATA}}` line per key."""
    if t.kind != "template":
        return "\n".join(f"{k}{{{{{k}.DATA}}}}" for k in t.keys)
    return "\n".join(f"{k}: {{{{{k}.DATA}}}}" for k in t.keys)


def _example(t: SimTemplate) -> str:
    return "\n".join(f"{k}: example" for k in t.keys)


def oa_list(app: SimApp) -> dict[str, object]:
    return {
        "template_list": [
            {
                "template_id": t.template_id,
                "title": t.title,
                "primary_industry": "IT科技",
                "deputy_industry": "互联网|电子商务",
                "content": content_of(t),
                "example": _example(t),
            }
            for t in app.templates
            if t.kind == "template"
        ]
    }


def subscribe_list(app: SimApp) -> dict[str, object]:
    return {
        "errcode": 0,
        "errmsg": "ok",
        "data": [
            {
                "priTmplId": t.template_id,
                "title": t.title,
                "content": content_of(t),
                "example": _example(t),
                "type": _ONE_TIME,
            }
            for t in app.templates
            if t.kind != "template"  # one account type each in WeChat; both kinds here
        ],
    }


def check_send(app: SimApp, kind: str, template_id: str, keys: object) -> Problem | None:
    """For an app with validate_templates: the template must be listed (40037), for this kind
    of send (template, subscribe, oa_subscribe), and every data key one of its keys (47003
    naming it)."""
    for t in app.templates:
        if t.template_id == template_id and t.kind == kind:
            for key in keys if isinstance(keys, dict) else ():
                if key not in t.keys:
                    return 47003, f"argument invalid! data.{key} is not in the template"
            return None
    return 40037, None


def check_listed(app: SimApp, kind: str, template_id: str, data: object) -> Problem | None:
    """A const/enum key of a listed template takes only the values the template lists (47003),
    whether or not the app validates templates otherwise."""
    if not isinstance(data, dict):
        return None
    for t in app.templates:
        if t.template_id == template_id and t.kind == kind:
            for key, allowed in t.values.items():
                item = data.get(key)
                value = getattr(item, "value", None)
                if item is not None and value not in allowed:
                    return 47003, f"argument invalid! data.{key}.value is not an approved value"
            return None
    return None


class TemplateLists:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.calls = 0  # template-list requests answered (tests check the gateway's cache)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/cgi-bin/template/get_all_private_template", self.oa),
            web.post("/cgi-bin/template/get_all_private_template", self.oa),
            web.get("/wxaapi/newtmpl/gettemplate", self.subscribe),
        ]

    def _app(self, request: web.Request) -> SimApp | web.Response:
        st = self.state
        st.requests += 1
        self.calls += 1
        token = request.query.get("access_token")
        if not token:
            return self._error(41001)
        code, appid = st.tokens.check(token, st.clock.now())
        if code or appid is None:
            return self._error(code)
        return st.apps[appid].cfg

    def _error(self, errcode: int) -> web.Response:
        self.state.errors[errcode] += 1
        return web.Response(body=answers.error_body(errcode), content_type=_JSON)

    async def oa(self, request: web.Request) -> web.Response:
        app = self._app(request)
        if isinstance(app, web.Response):
            return app
        return web.Response(body=answers.encode(oa_list(app)), content_type=_JSON)

    async def subscribe(self, request: web.Request) -> web.Response:
        app = self._app(request)
        if isinstance(app, web.Response):
            return app
        return web.Response(body=answers.encode(subscribe_list(app)), content_type=_JSON)
