"""Every route once: method, path, handler, scope and OpenAPI operation (ROUTES).

app.py registers ROUTES on the router (a worker-only process: the `probe` ones alone), each
handler picked from the app's views (views.py), and openapi.py documents the same list, so the
served document lists exactly the served routes. Every query parameter a handler reads is
declared here with the bounds the handler enforces (400 naming it).
"""

from __future__ import annotations

from wxgate.api.auth import Scope
from wxgate.api.batch_results import FORMATS
from wxgate.api.batches import MAX_LIST
from wxgate.api.deadletters import ERRCODE_MAX, ERRCODE_MIN, MAX_LIMIT
from wxgate.api.find import DEFAULT_LIMIT as FIND_DEFAULT_LIMIT
from wxgate.api.find import MAX_EPOCH_S
from wxgate.api.operation import Op, Route, Schema
from wxgate.api.schemas import (
    AccessToken,
    AppList,
    AppView,
    BatchList,
    BatchPatch,
    DeadLetterPage,
    Health,
    Invalidated,
    InvalidateIn,
    MessagePage,
    MessageView,
    PauseIn,
    Requeued,
    RequeueIn,
    Stats,
    ThroughputHistory,
)
from wxgate.models import (
    Accepted,
    BatchAccepted,
    BatchIn,
    BatchProgress,
    MessageIn,
    MessageKind,
    Status,
)
from wxgate.policy.quiet_hours import PRIORITY_ALIASES
from wxgate.store.search import MAX_LIMIT as FIND_MAX_LIMIT

# intake.idempotency_key's bound for the header (and MessageIn's for the body field)
MAX_IDEMPOTENCY_KEY = 256


def _limit(most: int, default: int) -> tuple[str, str, Schema, str]:
    schema = {"type": "integer", "minimum": 1, "maximum": most, "default": default}
    return ("limit", "query", schema, f"1-{most}, default {default}")


# The streamed batch bodies' media types (batch_stream.py takes a few aliases of each too)
_STREAM_TYPES = ("application/x-ndjson", "text/csv")

_ID = (("id", "path", "string", "Message or batch id"),)
# W3C trace context (tracing/context.py): kept with the message, passed to its webhooks.
_TRACE_HEADERS: tuple[tuple[str, Schema, str], ...] = (
    (
        "traceparent",
        {"type": "string"},
        "W3C trace context; a malformed one is ignored (a new trace starts), never refused",
    ),
    ("tracestate", {"type": "string"}, "W3C vendor trace state"),
)
_APP = (("app", "path", "string", "App name from the gateway's settings"),)
_SIG = (
    ("signature", "query", "string", "sha1 signature (plain mode)"),
    ("timestamp", "query", "string", ""),
    ("nonce", "query", "string", ""),
)

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/messages",
        lambda v: v.messages.create,
        Scope.SEND,
        Op(
            "Enqueue one message",
            ("202", Accepted),
            MessageIn,
            ("400", "401", "403", "409", "413", "415", "429", "503"),
            headers=(
                (
                    "Idempotency-Key",
                    {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
                    "Same key and body: a repeat returns the first id (202); the same key "
                    "with another body is 409 idempotency_conflict",
                ),
                *_TRACE_HEADERS,
            ),
            description="Answered only after the message is committed to the store.",
        ),
    ),
    Route(
        "GET",
        "/v1/messages",
        lambda v: v.find.list,
        Scope.READ,
        Op(
            "Find messages, newest first",
            ("200", MessagePage),
            None,
            ("400", "401", "403"),
            (
                ("touser", "query", "string", "Only this recipient's (openid)"),
                (
                    "status",
                    "query",
                    {"type": "string", "enum": [s.value for s in Status]},
                    "Only messages in this status now",
                ),
                (
                    "app",
                    "query",
                    "string",
                    "Only this app (a key limited to apps: required unless it has one)",
                ),
                ("batch", "query", "string", "Only this batch's"),
                (
                    "since",
                    "query",
                    {"type": "number", "minimum": 0, "maximum": MAX_EPOCH_S},
                    "Created at or after (epoch s)",
                ),
                (
                    "until",
                    "query",
                    {"type": "number", "minimum": 0, "maximum": MAX_EPOCH_S},
                    "Created before (epoch s)",
                ),
                ("cursor", "query", "string", "next_cursor of the previous page"),
                _limit(FIND_MAX_LIMIT, FIND_DEFAULT_LIMIT),
            ),
            description="Each page looks at a bounded number of messages, so a page of a "
            "rare filter may be short, or empty, and still carry a next_cursor: page on "
            "until next_cursor is null.",
        ),
    ),
    Route(
        "GET",
        "/v1/messages/{id}",
        lambda v: v.messages.get,
        Scope.READ,
        Op("Status of one message", ("200", MessageView), None, ("401", "403", "404"), _ID),
    ),
    Route(
        "DELETE",
        "/v1/messages/{id}",
        lambda v: v.messages.cancel,
        Scope.SEND,
        Op(
            "Cancel a message not yet sent",
            ("200", Accepted),
            None,
            ("401", "403", "404", "409"),
            _ID,
        ),
    ),
    Route(
        "POST",
        "/v1/batches",
        lambda v: v.batches.create,
        Scope.SEND,
        Op(
            "Enqueue one template to many recipients",
            ("202", BatchAccepted),
            (BatchIn, *_STREAM_TYPES),
            ("400", "401", "403", "409", "413", "415", "429", "503"),
            (
                ("template_id", "query", "string", "Streamed bodies: the template"),
                ("app", "query", "string", "Streamed bodies: the app"),
                ("data", "query", "string", "Streamed bodies: shared data as a JSON object"),
                ("miniprogram", "query", "string", "Streamed bodies: {appid, pagepath} as JSON"),
                (
                    "kind",
                    "query",
                    {"type": "string", "enum": [k.value for k in MessageKind]},
                    "Streamed bodies: template, subscribe or oa_subscribe",
                ),
                ("url", "query", "string", "Streamed bodies"),
                ("page", "query", "string", "Streamed bodies"),
                ("send_at", "query", "number", "Streamed bodies: epoch seconds"),
                ("expire_at", "query", "number", "Streamed bodies: epoch seconds"),
                ("callback_url", "query", "string", "Streamed bodies"),
                (
                    "priority",
                    "query",
                    {"type": "string", "enum": sorted(PRIORITY_ALIASES)},
                    "Streamed bodies: urgent, normal or low (high: urgent's older name)",
                ),
                ("rate_per_s", "query", "number", "Streamed bodies: the batch's own send rate"),
            ),
            headers=_TRACE_HEADERS,
            description=(
                "A JSON body (BatchIn) is one commit of up to server.max_batch_recipients. "
                "With Content-Type application/x-ndjson (one {touser, data} per line, optionally "
                'led by a {"header": {...}} line with the shared settings) or text/csv (a touser '
                "column; other columns fill the template fields of their names) the body is read "
                "as it arrives and committed every 5,000 recipients; the batch is held "
                "(`loading`) until the body ends. Bad input cancels it (400); a broken upload "
                "leaves it `incomplete` (resume or cancel it)."
            ),
        ),
    ),
    Route(
        "GET",
        "/v1/batches",
        lambda v: v.batches.list,
        Scope.READ,
        Op(
            "The newest batches first, with their progress",
            ("200", BatchList),
            None,
            ("400", "401", "403"),
            (_limit(MAX_LIST, 20),),
        ),
    ),
    Route(
        "GET",
        "/v1/batches/{id}",
        lambda v: v.batches.get,
        Scope.READ,
        Op("Batch progress by status", ("200", BatchProgress), None, ("401", "403", "404"), _ID),
    ),
    Route(
        "POST",
        "/v1/batches/{id}/pause",
        lambda v: v.batches.pause,
        Scope.SEND,
        Op(
            "Stop sending the batch's messages until it is resumed",
            ("200", BatchProgress),
            None,
            ("401", "403", "404", "409"),
            _ID,
            description="Messages already in flight finish; the rest wait in the store.",
        ),
    ),
    Route(
        "POST",
        "/v1/batches/{id}/resume",
        lambda v: v.batches.resume,
        Scope.SEND,
        Op(
            "Send a paused batch's messages again",
            ("200", BatchProgress),
            None,
            ("401", "403", "404", "409"),
            _ID,
        ),
    ),
    Route(
        "POST",
        "/v1/batches/{id}/cancel",
        lambda v: v.batches.cancel,
        Scope.SEND,
        Op(
            "Cancel the batch's pending messages",
            ("200", BatchProgress),
            None,
            ("401", "403", "404", "409"),
            _ID,
        ),
    ),
    Route(
        "PATCH",
        "/v1/batches/{id}",
        lambda v: v.batches.patch,
        Scope.SEND,
        Op(
            "Change the batch's own send rate while it runs",
            ("200", BatchProgress),
            BatchPatch,
            ("400", "401", "403", "404", "409", "413", "415"),
            _ID,
        ),
    ),
    Route(
        "GET",
        "/v1/batches/{id}/results",
        lambda v: v.batches.results,
        Scope.READ,
        Op(
            "One row per recipient: final status, errcode, WeChat msgid (streamed; CSV times "
            "in ISO 8601 UTC, NDJSON times in epoch seconds)",
            ("200", tuple(sorted(FORMATS.values()))),
            None,
            ("400", "401", "403", "404"),
            (
                *_ID,
                (
                    "format",
                    "query",
                    {"type": "string", "enum": sorted(FORMATS), "default": "csv"},
                    "csv (default) or ndjson",
                ),
            ),
        ),
    ),
    Route(
        "GET",
        "/v1/dead-letters",
        lambda v: v.dead_letters.list,
        Scope.READ,
        Op(
            "Dead letters, newest first",
            ("200", DeadLetterPage),
            None,
            ("400", "401", "403"),
            (
                ("app", "query", "string", "Only this app"),
                (
                    "errcode",
                    "query",
                    {"type": "integer", "minimum": ERRCODE_MIN, "maximum": ERRCODE_MAX},
                    "Only this last errcode",
                ),
                ("cursor", "query", "string", "next_cursor of the previous page"),
                _limit(MAX_LIMIT, 100),
            ),
        ),
    ),
    Route(
        "POST",
        "/v1/dead-letters/requeue",
        lambda v: v.dead_letters.requeue,
        Scope.ADMIN,
        Op(
            "Requeue dead letters by ids or filter",
            ("200", Requeued),
            RequeueIn,
            ("400", "401", "403", "413", "415"),
        ),
    ),
    Route(
        "GET",
        "/v1/apps",
        lambda v: v.apps.list,
        Scope.READ,
        Op(
            "Configured apps: state, pause, breaker, rate, quota used today",
            ("200", AppList),
            None,
            ("401", "403"),
        ),
    ),
    Route(
        "POST",
        "/v1/apps/{app}/pause",
        lambda v: v.apps.pause,
        Scope.ADMIN,
        Op(
            "Pause an app by hand (until a time, or until resumed)",
            ("200", AppView),
            PauseIn,
            ("400", "401", "403", "404", "413", "415"),
            _APP,
            description="Every process stops sending for the app; its messages stay queued. "
            "The gateway's own quota, throttle and config pauses never replace it.",
        ),
    ),
    Route(
        "POST",
        "/v1/apps/{app}/resume",
        lambda v: v.apps.resume,
        Scope.ADMIN,
        Op(
            "Resume an app: ends any pause (by hand, quota, throttle or config)",
            ("200", AppView),
            None,
            ("401", "403", "404"),
            _APP,
        ),
    ),
    Route(
        "GET",
        "/v1/stats",
        lambda v: v.ops.stats,
        Scope.READ,
        Op("Queue depth, pauses, delivery state", ("200", Stats), None),
    ),
    Route(
        "GET",
        "/v1/stats/throughput",
        lambda v: v.chart.throughput,
        Scope.READ,
        Op(
            "The last hour of per-second throughput (the dashboard chart's history)",
            ("200", ThroughputHistory),
            None,
            ("400", "401", "403"),
            (
                (
                    "since",
                    "query",
                    {"type": "number"},
                    "From this second on (epoch s; at most an hour back, the default)",
                ),
            ),
        ),
    ),
    Route(
        "GET",
        "/v1/apps/{app}/access-token",
        lambda v: v.tokens.get,
        Scope.TOKEN,
        Op(
            "The app's current access_token (token service)",
            ("200", AccessToken),
            None,
            ("401", "403", "404", "503"),
            _APP,
        ),
    ),
    Route(
        "POST",
        "/v1/apps/{app}/access-token/invalidate",
        lambda v: v.tokens.invalidate,
        Scope.TOKEN,
        Op(
            "Drop the cached token if it is still the one that failed",
            ("200", Invalidated),
            InvalidateIn,
            ("400", "401", "403", "404", "503"),
            _APP,
        ),
    ),
    Route(
        "GET",
        "/wechat/callback/{app}",
        lambda v: v.callback.verify,
        None,
        Op(
            "WeChat server URL verification: echoes echostr",
            ("200", "text/plain"),
            None,
            ("403", "404"),
            (*_APP, *_SIG, ("echostr", "query", "string", "")),
        ),
    ),
    Route(
        "POST",
        "/wechat/callback/{app}",
        lambda v: v.callback.push,
        None,
        Op(
            "WeChat event push (delivery receipts); answers `success`",
            ("200", "text/plain"),
            "text/xml",
            ("400", "403", "404", "503"),
            (
                *_APP,
                *_SIG,
                ("msg_signature", "query", "string", "AES safe mode signature"),
                ("encrypt_type", "query", "string", "aes in safe mode"),
            ),
        ),
    ),
    Route(
        "GET",
        "/healthz",
        lambda v: v.ops.healthz,
        None,
        Op("The process is up", ("200", Health)),
        probe=True,
    ),
    Route(
        "GET",
        "/readyz",
        lambda v: v.ops.readyz,
        None,
        Op("The store is reachable", ("200", Health), None, ("503",)),
        probe=True,
    ),
    Route(
        "GET",
        "/metrics",
        lambda v: v.ops.metrics,
        None,
        Op("Prometheus metrics", ("200", "text/plain"), None, ("404",)),
        probe=True,
    ),
    Route(
        "GET",
        "/dashboard",
        lambda v: v.dashboard.page,
        None,
        Op(
            "The operator dashboard (HTML; its data comes from /v1 with the key entered)",
            ("200", "text/html"),
        ),
    ),
    Route(
        "GET",
        "/dashboard/",
        lambda v: v.dashboard.slash,
        None,
        Op("Redirects to /dashboard", ("301", None)),
    ),
    Route(
        "GET",
        "/dashboard/{name}",
        lambda v: v.dashboard.asset,
        None,
        Op(
            "The dashboard's static files",
            ("200", "text/plain"),
            None,
            ("404",),
            (("name", "path", "string", "A file of the dashboard"),),
        ),
    ),
    Route(
        "GET",
        "/openapi.json",
        lambda v: v.openapi.get,
        None,
        Op("This document", ("200", "application/json")),
    ),
)

# The operations by (method, path), for tests that walk the document's operations.
OPERATIONS: dict[tuple[str, str], Op] = {(r.method, r.path): r.op for r in ROUTES}
