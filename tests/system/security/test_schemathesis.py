"""schemathesis over the gateway's own OpenAPI document (issue 11): every operation, every
check, against a real gateway (SQLite, the simulator, named keys) on loopback. No 5xx, and
every answer is one the document declares.

Bounded and reproducible: EXAMPLES cases per operation, derandomized (a fixed seed).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup, ServerError
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from support.e2e import APP_A, APP_B, settings_dict, sim_config
from wxgate.api.operation import Op
from wxgate.api.routes import OPERATIONS
from wxgate.runtime import Runtime
from wxgate.sandbox import free_port
from wxgate.settings import from_dict
from wxgate.sim.testing import running_simulator

EXAMPLES = 40
ADMIN_KEY = "st-admin-key"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 chars: app b is in AES safe mode
# Named keys as a deployment has them; the run authenticates as admin (every scope).
KEYS = [
    {"name": "admin", "key": ADMIN_KEY, "scopes": ["send", "read", "admin", "token"]},
    {"name": "sender", "key": "st-send-key", "scopes": ["send"]},
    {"name": "reader-a", "key": "st-read-key", "scopes": ["read"], "apps": ["a"]},
]
APPS = ("a", "b")


Serve = Callable[[list[str], asyncio.Event], Awaitable[None]]


class LoopThread:
    """`serve(url, stop)` on its own event loop in a thread (schemathesis calls block): it
    appends its base URL to `url` once listening and returns after `stop` is set."""

    def __init__(self, serve: Serve) -> None:
        self._serve = serve
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="schemathesis-rig", daemon=True)
        self._url: list[str] = []

    @property
    def url(self) -> str:
        return self._url[0]

    def _main(self) -> None:
        try:
            self._loop.run_until_complete(self._run())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        task = asyncio.ensure_future(self._serve(self._url, self._stop))
        while not self._url and not task.done():
            await asyncio.sleep(0.01)
        self._ready.set()
        await task

    def start(self) -> LoopThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("the server did not start in 30 s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def gateway(tmp: Path) -> Serve:
    """The simulator and a full gateway (two apps, b in AES safe mode; named keys)."""

    async def serve(url: list[str], stop: asyncio.Event) -> None:
        port = free_port()
        async with running_simulator(sim_config(port, (APP_A, APP_B))) as sim:
            raw = settings_dict(tmp, port, sim.base_url, (APP_A, APP_B))
            raw["server"]["keys"] = KEYS
            raw["apps"][1]["encoding_aes_key"] = AES_KEY
            async with Runtime(from_dict(raw)) as runtime:
                url.append(runtime.url)
                await stop.wait()

    return serve


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopThread]:
    rig = LoopThread(gateway(tmp_path_factory.mktemp("schemathesis"))).start()
    try:
        yield rig
    finally:
        rig.stop()


@pytest.fixture(scope="module")
def known_ids(rig: LoopThread) -> dict[str, str]:
    """A message and a batch that exist, so {id} routes are also fuzzed past their 404."""
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    body = {"app": "a", "touser": "o_st", "template_id": "tpl_order", "data": {"thing1": "x"}}
    msg = requests.post(f"{rig.url}/v1/messages", json=body, headers=auth, timeout=10)
    batch = requests.post(
        f"{rig.url}/v1/batches",
        json={"app": "a", "template_id": "tpl_order", "recipients": [{"touser": "o_st1"}]},
        headers=auth,
        timeout=10,
    )
    assert msg.status_code == 202 and batch.status_code == 202, (msg.text, batch.text)
    return {"message": msg.json()["id"], "batch": batch.json()["id"]}


@pytest.fixture(scope="module")
def api_schema(rig: LoopThread) -> Any:
    config = schemathesis.Config.from_dict(
        {
            # Unknown query parameters are ignored (the document cannot say so): not generated.
            "generation": {"allow-extra-parameters": False},
            "auth": {"openapi": {"bearer": {"bearer": ADMIN_KEY}}},
            # A body past server.max_body_bytes is refused with 413 before it is parsed: a
            # rejection as right as a 400 (hypothesis makes such bodies for array fields).
            "checks": {
                "negative_data_rejection": {
                    "expected-statuses": [
                        *("400", "401", "403", "404", "405", "406", "409", "413", "415"),
                        *("422", "428", "429", "5xx"),
                    ]
                }
            },
        }
    )
    return schemathesis.openapi.from_url(f"{rig.url}/openapi.json", config=config)


def _aim(case: Any, known_ids: dict[str, str], mode: GenerationMode) -> None:
    """Point half the generated path parameters at real apps and ids (chosen by the generated
    value, so the run stays reproducible); the other half stay random (404s)."""
    if case.query and mode is GenerationMode.POSITIVE:
        case.query.pop("cursor", None)  # opaque, from a previous page: a made-up one is a 400
        if isinstance(case.query.get("app"), str):  # app names are the settings' (else 400)
            case.query["app"] = APPS[len(case.query["app"]) % 2]
    params = case.path_parameters
    if not params:
        return
    for name, value in list(params.items()):
        if not isinstance(value, str) or len(value) % 2:
            continue
        if name == "app":
            params[name] = APPS[len(value) % 4 // 2]
        elif name == "id":
            kind = "batch" if "batches" in case.path else "message"
            params[name] = known_ids[kind]


# Where a check cannot hold for this gateway, and why; every other check runs everywhere.
# Valid app, template and id values come from the settings and the store, so a body the
# document allows may still be a 400 ("unknown app", "give ids, or app...").
NOT_CHECKED: dict[tuple[str, str], tuple[Any, ...]] = {
    ("POST", "/v1/messages"): (positive_data_acceptance,),
    # Its query parameters apply to streamed bodies only: a JSON batch ignores them.
    ("POST", "/v1/batches"): (positive_data_acceptance, negative_data_rejection),
    ("POST", "/v1/dead-letters/requeue"): (positive_data_acceptance,),
    # Whatever the document allows is refused (403, or 400) unless WeChat signed it.
    ("GET", "/wechat/callback/{app}"): (positive_data_acceptance,),
    ("POST", "/wechat/callback/{app}"): (positive_data_acceptance,),
}


def _negatable(op: Op) -> bool:
    """Whether a request can break the operation's document: a body, a non-string parameter
    or a bounded one (anything goes in an unbounded string, so hypothesis finds nothing)."""
    bodies = op.body if isinstance(op.body, tuple) else (op.body,)
    schemas = [p[2] for p in op.params] + [h[1] for h in op.headers]
    return any(isinstance(b, type) for b in bodies) or any(x != "string" for x in schemas)


# Every route the gateway documents (the live document must list them all), both ways:
# data that fits the document and, where some can break it, data that does not.
CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for (method, path), op in sorted(OPERATIONS.items())
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or _negatable(op)
]


def fuzz(operation: Any, mode: GenerationMode, aim: Callable[[Any], None] = lambda c: None) -> None:
    """EXAMPLES derandomized cases of `operation`, each sent and checked by every check."""
    excluded = list(NOT_CHECKED.get((operation.method.upper(), operation.path), ()))

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: Any) -> None:
        aim(case)
        case.call_and_validate(excluded_checks=excluded, timeout=10)

    run()


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_api_conforms_and_never_answers_5xx(
    api_schema: Any, known_ids: dict[str, str], method: str, path: str, mode: GenerationMode
) -> None:
    fuzz(api_schema[path][method], mode, lambda case: _aim(case, known_ids, mode))


# ---------------------------------------------------------------- the run catches a 5xx


async def _serve_broken(url: list[str], stop: asyncio.Event) -> None:
    """A route that answers 500 to any `q` but the empty one, with its own document."""

    async def broken(request: web.Request) -> web.Response:
        if request.query.get("q"):
            return web.json_response({"error": "internal"}, status=500)
        return web.json_response({"ok": True})

    doc = {
        "openapi": "3.1.0",
        "info": {"title": "broken", "version": "1"},
        "paths": {
            "/broken": {
                "get": {
                    "parameters": [{"name": "q", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "OK"}},
                }
            }
        },
    }

    async def document(request: web.Request) -> web.Response:
        return web.json_response(doc)

    app = web.Application()
    app.router.add_get("/broken", broken)
    app.router.add_get("/openapi.json", document)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
        await stop.wait()
    finally:
        await runner.cleanup()


def test_the_run_fails_on_a_server_error(tmp_path: Path) -> None:
    """The same run over a route that 500s must fail, naming the server error."""
    server = LoopThread(_serve_broken).start()
    try:
        broken = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        try:
            fuzz(broken["/broken"]["GET"], GenerationMode.POSITIVE)
        except FailureGroup as exc:
            found = exc.exceptions
        else:
            pytest.fail("the run passed a route that answers 500")
        assert any(isinstance(f, ServerError) for f in found), found
    finally:
        server.stop()
