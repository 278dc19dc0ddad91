"""Traces end to end: the real simulator, an in-process gateway (SQLite) and a webhook
receiver, spans read back with the OpenTelemetry SDK's in-memory exporter.

One message's spans form one trace under the caller's parent span: accept (a child of the
caller's), then each send attempt, the receipt and each webhook POST (children of accept),
and the receiver is sent the webhook span's traceparent. A bad traceparent starts a new
trace; with tracing off nothing is recorded and the caller's own traceparent is passed on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from support.e2e import APP_A, DATA, TEMPLATE, Rig, running_rig
from support.wait import wait_until
from support.webhooks import SECRET, Receiver
from wxgate.settings import TracingSettings
from wxgate.sim.config import Faults
from wxgate.tracing import NO_TRACER, Tracer, build_tracer

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
FAST_WEBHOOKS = {"base_s": 0.05, "cap_s": 0.2, "poll_s": 0.02, "timeout_s": 2.0}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.close()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@asynccontextmanager
async def rig(
    tmp_path: Path, receiver: Receiver, tracer: Tracer | None, faults: Faults | None = None
) -> AsyncIterator[Rig]:
    async with running_rig(
        tmp_path,
        [APP_A],
        app_overrides={"callback_url": f"{receiver.url}/hooks", "webhook_secret": SECRET},
        sim_kw={"faults": faults} if faults is not None else None,
        webhooks=FAST_WEBHOOKS,
        tracer=tracer,
    ) as r:
        yield r


def _tracer(exporter: InMemorySpanExporter) -> Tracer:
    return build_tracer(TracingSettings(service_name="wxgate-test"), exporter=exporter)


def _spans(exporter: InMemorySpanExporter, msg_id: str) -> list[ReadableSpan]:
    """The message's spans, accept first (it carries the id as an attribute too)."""
    spans = [
        s
        for s in exporter.get_finished_spans()
        if (s.attributes or {}).get("wxgate.message_id") == msg_id
    ]
    return sorted(spans, key=lambda s: s.start_time or 0)


def _named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def _hex(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def _parent(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


async def _send(rig: Rig, headers: dict[str, str], **fields: Any) -> str:
    body = {"touser": "o_trace", "template_id": TEMPLATE, "data": DATA, **fields}
    status, answer = await rig.api.post("/v1/messages", body, headers=headers)
    assert status == 202, answer
    return str(answer["id"])


async def _settled(exporter: InMemorySpanExporter, msg_id: str) -> list[ReadableSpan]:
    """Wait for the whole story: the sent and delivered webhooks POSTed (and their spans
    ended) and the receipt recorded."""

    def done() -> list[ReadableSpan] | None:
        spans = _spans(exporter, msg_id)
        statuses = {
            (s.attributes or {}).get("wxgate.status") for s in _named(spans, "wxgate.webhook")
        }
        if {"sent", "delivered"} <= statuses and _named(spans, "wxgate.receipt"):
            return spans
        return None

    return await wait_until(
        done,
        20,
        f"the spans of {msg_id}",
        progress=lambda: [s.name for s in _spans(exporter, msg_id)],
    )


async def test_one_message_is_one_trace_under_the_callers_span(
    tmp_path: Path, receiver: Receiver, exporter: InMemorySpanExporter
) -> None:
    async with rig(tmp_path, receiver, _tracer(exporter)) as r:
        msg_id = await _send(r, {"traceparent": CALLER, "tracestate": "congo=t61rcWkgMzE"})
        spans = await _settled(exporter, msg_id)
    [accept] = _named(spans, "wxgate.accept")
    [send] = _named(spans, "wxgate.send")
    [receipt] = _named(spans, "wxgate.receipt")
    hooks = _named(spans, "wxgate.webhook")
    assert {_hex(s)[0] for s in spans} == {CALLER_TRACE}, "one trace, the caller's"
    assert _parent(accept) == CALLER_SPAN
    accept_id = _hex(accept)[1]
    assert {_parent(s) for s in [send, receipt, *hooks]} == {accept_id}
    assert accept.context is not None and accept.context.trace_state.get("congo") == "t61rcWkgMzE"
    attrs = send.attributes or {}
    assert (attrs["wxgate.attempt"], attrs["wechat.errcode"], attrs["wxgate.disposition"]) == (
        1,
        0,
        "ok",
    )
    assert attrs["wxgate.outcome"] == "sent"
    assert (receipt.attributes or {})["wxgate.status"] == "delivered"
    # The order of the story: accept ends before the send starts, the receipt after it.
    assert (accept.end_time or 0) <= (send.start_time or 0) <= (receipt.start_time or 0)
    # Each POST carries its own span's traceparent, so the receiver's work joins the trace.
    sent_to = {d.body["status"]: d.headers.get("traceparent") for d in receiver.deliveries}
    by_status = {(s.attributes or {})["wxgate.status"]: _hex(s) for s in hooks}
    for status in ("sent", "delivered"):
        trace_id, span_id = by_status[status]
        assert sent_to[status] == f"00-{trace_id}-{span_id}-01"
    assert all(d.headers.get("tracestate") == "congo=t61rcWkgMzE" for d in receiver.deliveries)
    assert all(d.signature_ok for d in receiver.deliveries)


async def test_retries_are_separate_attempt_spans(
    tmp_path: Path, receiver: Receiver, exporter: InMemorySpanExporter
) -> None:
    faults = Faults(error_rates={"-1": 1.0})  # WeChat busy until the test clears it
    async with rig(tmp_path, receiver, _tracer(exporter), faults) as r:
        msg_id = await _send(r, {"traceparent": CALLER})
        await wait_until(
            lambda: _named(_spans(exporter, msg_id), "wxgate.send"), 20, "a first failed attempt"
        )
        await r.sim.set_faults(error_rates={})
        spans = await _settled(exporter, msg_id)
    sends = _named(spans, "wxgate.send")
    assert len(sends) >= 2
    attempts = [(s.attributes or {}) for s in sends]
    assert [a["wxgate.attempt"] for a in attempts] == list(range(1, len(sends) + 1))
    *failed, ok = attempts
    assert {
        (a["wechat.errcode"], a["wxgate.disposition"], a["wxgate.outcome"]) for a in failed
    } == {(-1, "retry", "retry")}
    assert (ok["wechat.errcode"], ok["wxgate.outcome"]) == (0, "sent")
    assert all(s.status.status_code.name == "ERROR" for s in sends[:-1])
    [accept] = _named(spans, "wxgate.accept")
    assert {_parent(s) for s in sends} == {_hex(accept)[1]}
    assert len({_hex(s)[1] for s in sends}) == len(sends), "one span per attempt"
    assert {_hex(s)[0] for s in spans} == {CALLER_TRACE}


async def test_a_bad_traceparent_starts_a_new_trace(
    tmp_path: Path, receiver: Receiver, exporter: InMemorySpanExporter
) -> None:
    async with rig(tmp_path, receiver, _tracer(exporter)) as r:
        bad = f"00-{CALLER_TRACE.upper()}-{CALLER_SPAN}-01"
        msg_id = await _send(r, {"traceparent": bad, "tracestate": "congo=1"})
        none_id = await _send(r, {})
        spans = await _settled(exporter, msg_id)
        others = await _settled(exporter, none_id)
    [accept] = _named(spans, "wxgate.accept")
    assert accept.parent is None, "a root: the bad header was ignored"
    trace_id = _hex(accept)[0]
    assert trace_id != CALLER_TRACE.lower()
    assert {_hex(s)[0] for s in spans} == {trace_id}, "still one trace for the message"
    [root] = _named(others, "wxgate.accept")
    assert root.parent is None and _hex(root)[0] not in (trace_id, CALLER_TRACE)


async def test_a_batch_is_one_trace_for_all_its_messages(
    tmp_path: Path, receiver: Receiver, exporter: InMemorySpanExporter
) -> None:
    async with rig(tmp_path, receiver, _tracer(exporter)) as r:
        body = {
            "template_id": TEMPLATE,
            "data": DATA,
            "recipients": [{"touser": "o_b1"}, {"touser": "o_b2"}],
        }
        status, answer = await r.api.post("/v1/batches", body, headers={"traceparent": CALLER})
        assert status == 202, answer
        [accept] = [
            s
            for s in exporter.get_finished_spans()
            if (s.attributes or {}).get("wxgate.batch_id") == answer["id"]
        ]

        def sends() -> list[ReadableSpan]:
            found = [s for s in exporter.get_finished_spans() if s.name == "wxgate.send"]
            return found if len(found) >= 2 else []

        found = await wait_until(sends, 20, "both batch messages sent")
    assert _parent(accept) == CALLER_SPAN and (accept.attributes or {})["wxgate.recipients"] == 2
    assert {(_hex(s)[0], _parent(s)) for s in found} == {(CALLER_TRACE, _hex(accept)[1])}


async def test_a_streamed_batch_is_one_trace_too(
    tmp_path: Path, receiver: Receiver, exporter: InMemorySpanExporter
) -> None:
    lines = [
        json.dumps({"header": {"template_id": TEMPLATE, "data": DATA}}),
        *(json.dumps({"touser": f"o_s{i}"}) for i in range(3)),
    ]
    async with rig(tmp_path, receiver, _tracer(exporter)) as r:
        headers = {"traceparent": CALLER, "Content-Type": "application/x-ndjson"}
        async with r.api.session.post(
            "/v1/batches", data="\n".join(lines).encode(), headers=headers
        ) as resp:
            answer = await resp.json()
            assert resp.status == 202, answer
        [accept] = [
            s
            for s in exporter.get_finished_spans()
            if (s.attributes or {}).get("wxgate.batch_id") == answer["id"]
        ]

        def sends() -> list[ReadableSpan]:
            found = [s for s in exporter.get_finished_spans() if s.name == "wxgate.send"]
            return found if len(found) >= 3 else []

        found = await wait_until(sends, 20, "the streamed batch's messages sent")
    assert _parent(accept) == CALLER_SPAN and (accept.attributes or {})["wxgate.recipients"] == 3
    assert {(_hex(s)[0], _parent(s)) for s in found} == {(CALLER_TRACE, _hex(accept)[1])}


async def test_tracing_off_records_nothing_and_passes_the_callers_context_on(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with rig(tmp_path, receiver, None) as r:  # the tracer [tracing] makes: none
        assert r.runtime.tracer is NO_TRACER
        msg_id = await _send(r, {"traceparent": CALLER, "tracestate": "congo=t61rcWkgMzE"})
        plain_id = await _send(r, {"traceparent": "nonsense"})

        def hooked() -> bool:
            got = {(d.body["message_id"], d.body["status"]) for d in receiver.deliveries}
            return {(i, s) for i in (msg_id, plain_id) for s in ("sent", "delivered")} <= got

        await wait_until(hooked, 20, "the four webhooks")
        stored = await r.api.message(msg_id)
    assert stored["status"] == "delivered"
    for d in receiver.deliveries:
        if d.body["message_id"] == msg_id:
            assert d.headers.get("traceparent") == CALLER
            assert d.headers.get("tracestate") == "congo=t61rcWkgMzE"
        else:  # an invalid header is kept nowhere and sent to no one
            assert "traceparent" not in d.headers and "tracestate" not in d.headers
