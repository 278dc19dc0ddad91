"""The handler objects of one Application, which the route table's entries pick from."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from wxgate.api.apps import AppRoutes
from wxgate.api.batches import BatchRoutes
from wxgate.api.callback import CallbackRoutes
from wxgate.api.chart import ChartRoutes
from wxgate.api.context import ApiContext
from wxgate.api.dashboard_routes import DashboardRoutes
from wxgate.api.deadletters import DeadLetterRoutes
from wxgate.api.find import FindRoutes
from wxgate.api.messages import MessageRoutes
from wxgate.api.openapi import document
from wxgate.api.ops import OpsRoutes
from wxgate.api.responses import JSON, encode
from wxgate.api.routes import ROUTES
from wxgate.api.tokens import TokenRoutes


class OpenApiView:
    """/openapi.json: the document of ROUTES, encoded once per Application."""

    def __init__(self) -> None:
        self._body = encode(document(ROUTES))

    async def get(self, request: web.Request) -> web.Response:
        return web.Response(body=self._body, content_type=JSON)


@dataclass(frozen=True, slots=True)
class Views:
    """Built once per Application; each Route picks its bound handler from them."""

    messages: MessageRoutes
    find: FindRoutes
    apps: AppRoutes
    batches: BatchRoutes
    dead_letters: DeadLetterRoutes
    ops: OpsRoutes
    chart: ChartRoutes
    callback: CallbackRoutes
    tokens: TokenRoutes
    dashboard: DashboardRoutes
    openapi: OpenApiView

    @classmethod
    def of(cls, ctx: ApiContext) -> Views:
        return cls(
            MessageRoutes(ctx),
            FindRoutes(ctx),
            AppRoutes(ctx),
            BatchRoutes(ctx),
            DeadLetterRoutes(ctx),
            OpsRoutes(ctx),
            ChartRoutes(ctx),
            CallbackRoutes(ctx),
            TokenRoutes(ctx),
            DashboardRoutes(),
            OpenApiView(),
        )
