"""Export and configuration: `[tracing] endpoint` sends spans over real OTLP/HTTP (to a
collector on loopback that decodes the protobuf), the default install path never imports
OpenTelemetry, and a configured endpoint without the extra is refused at startup."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from support.e2e import APP_A, DATA, TEMPLATE, Api, build_settings, sim_config
from support.wait import wait_until
from wxgate.errors import ConfigError
from wxgate.runtime import Runtime
from wxgate.sandbox import free_port
from wxgate.settings import from_dict
from wxgate.sim.testing import running_simulator

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER = f"00-{CALLER_TRACE}-b7ad6b7169203331-01"
TRACED = {"traceparent": CALLER}


class Collector:
    """An OTLP/HTTP trace receiver: every POST to /v1/traces decoded and kept."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        parsed = ExportTraceServiceRequest()
        parsed.ParseFromString(await request.read())
        self.requests.append(parsed)
        return web.Response(status=200, content_type="application/x-protobuf")

    def spans(self) -> list[tuple[str, str, str]]:
        """(service.name, span name, trace id hex) of every span received."""
        out = []
        for req in self.requests:
            for rs in req.resource_spans:
                service = next(
                    a.value.string_value for a in rs.resource.attributes if a.key == "service.name"
                )
                for ss in rs.scope_spans:
                    out += [(service, s.name, s.trace_id.hex()) for s in ss.spans]
        return out

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1/traces"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    c = Collector()
    await c.start()
    yield c
    await c.close()


async def _run(tmp_path: Path, tracing: dict[str, object], *headers: dict[str, str]) -> None:
    """One message per `headers` through a gateway built from settings alone; returns once
    all are delivered and the gateway has shut down (which flushes the exporter's buffer)."""
    port = free_port()
    async with running_simulator(sim_config(port, [APP_A])) as sim:
        settings = build_settings(tmp_path, port, sim.base_url, [APP_A], tracing=tracing)
        async with Runtime(settings) as runtime:
            api = Api(runtime.url)
            try:
                ids = []
                for h in headers:
                    body = {"touser": "o_otlp", "template_id": TEMPLATE, "data": DATA}
                    status, answer = await api.post("/v1/messages", body, h)
                    assert status == 202, answer
                    ids.append(str(answer["id"]))

                async def delivered() -> bool:
                    found = await api.messages(ids)
                    return all(m["status"] == "delivered" for m in found)

                await wait_until(delivered, 20, "the messages delivered")
            finally:
                await api.close()


async def test_spans_are_exported_over_otlp_when_an_endpoint_is_set(
    tmp_path: Path, collector: Collector
) -> None:
    await _run(tmp_path, {"endpoint": collector.url, "service_name": "wxgate-otlp"}, TRACED)
    names = {(service, name) for service, name, _ in collector.spans()}
    assert {("wxgate-otlp", n) for n in ("wxgate.accept", "wxgate.send", "wxgate.receipt")} <= names
    assert {t for _, _, t in collector.spans()} == {CALLER_TRACE}


async def test_nothing_is_exported_without_an_endpoint(
    tmp_path: Path, collector: Collector
) -> None:
    await _run(tmp_path, {"service_name": "wxgate-otlp"}, TRACED, {})
    assert collector.requests == []


async def test_a_zero_sample_ratio_exports_no_new_trace(
    tmp_path: Path, collector: Collector
) -> None:
    """The ratio applies to new traces; a caller's sampled flag (01 here) is followed."""
    await _run(tmp_path, {"endpoint": collector.url, "sample_ratio": 0.0}, TRACED, {}, {})
    spans = collector.spans()
    assert {n for _, n, _ in spans} >= {"wxgate.accept", "wxgate.send"}
    assert {t for _, _, t in spans} == {CALLER_TRACE}, "the two new traces were not sampled"


def test_the_default_path_never_imports_opentelemetry(tmp_path: Path) -> None:
    """Tracing off: building the whole gateway (routes, pool, webhooks) loads no OTel code."""
    script = (
        "import sys\n"
        "from wxgate.runtime import Runtime\n"
        "from wxgate.settings import from_dict\n"
        f"rt = Runtime(from_dict({{'store': {{'url': 'sqlite:///{tmp_path}/x.db'}}}}))\n"
        "from wxgate.tracing import NO_TRACER\n"
        "assert rt.tracer is NO_TRACER\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "print(loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_an_endpoint_without_the_extra_is_refused_at_startup(tmp_path: Path) -> None:
    """As if `pip install wxgate` without [tracing]: a clear ConfigError, not a traceback."""
    script = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"  # import opentelemetry now raises ImportError
        "from wxgate.errors import ConfigError\n"
        "from wxgate.settings import TracingSettings\n"
        "from wxgate.tracing.build import check_available\n"
        "try:\n"
        "    check_available(TracingSettings(endpoint='http://127.0.0.1:4318/v1/traces'))\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
        "check_available(TracingSettings())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'wxgate[tracing]'" in out.stdout


@pytest.mark.parametrize(
    ("tracing", "complaint"),
    [
        ({"endpoint": "collector:4318"}, "tracing.endpoint"),
        ({"sample_ratio": 1.5}, "tracing.sample_ratio"),
        ({"sample_ratio": -0.1}, "tracing.sample_ratio"),
        ({"service_name": " "}, "tracing.service_name"),
    ],
)
def test_bad_tracing_settings_are_refused(tracing: dict[str, object], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        from_dict({"tracing": tracing})
