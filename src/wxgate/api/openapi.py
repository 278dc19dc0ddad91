"""The OpenAPI 3.1 document, generated from the msgspec models so it cannot drift from them.

app.py registers each route with the operation named here; a route without an entry in
OPERATIONS fails at startup, so the document always lists every route. Every query parameter
a handler reads is declared here with the bounds the handler enforces (400 naming it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

import wxgate
from wxgate.api.auth import Scope
from wxgate.api.batch_results import FORMATS
from wxgate.api.batches import MAX_LIST
from wxgate.api.deadletters import ERRCODE_MAX, ERRCODE_MIN, MAX_LIMIT
from wxgate.api.schemas import (
    AccessToken,
    BatchList,
    BatchPatch,
    DeadLetterPage,
    Health,
    Invalidated,
    InvalidateIn,
    MessageView,
    Requeued,
    RequeueIn,
    Stats,
)
from wxgate.models import (
    Accepted,
    BatchAccepted,
    BatchIn,
    BatchProgress,
    ErrorBody,
    MessageIn,
    MessageKind,
)
from wxgate.policy.quiet_hours import PRIORITY_ALIASES

_MODELS: tuple[type[msgspec.Struct], ...] = (
    MessageIn,
    BatchIn,
    Accepted,
    BatchAccepted,
    BatchProgress,
    BatchList,
    BatchPatch,
    MessageView,
    DeadLetterPage,
    RequeueIn,
    Requeued,
    AccessToken,
    InvalidateIn,
    Invalidated,
    Health,
    Stats,
    ErrorBody,
)

_ERRORS = {
    "400": "Invalid request; `field` names the offending input",
    "401": "Missing or unknown API key",
    "403": "The key lacks the scope this route needs, or may not use this app (or this "
    "callback_url: callback_url_not_allowed)",
    "404": "Not found",
    "409": "Conflict with the current state",
    "413": "Body, or the `data` it makes the gateway store, over a size limit; `field` names it",
    "415": "Body is not JSON",
    "429": "The key's rate limit or the queue depth limit reached; see Retry-After",
    "503": (
        "Store unavailable (store_unavailable), or no answer in time (store_timeout: a "
        "write's outcome is unknown; its id or batch_id says what to look up); see Retry-After"
    ),
}


Schema = str | dict[str, Any]  # a JSON type name, or a whole JSON schema
# A model (JSON), a media type (a raw body), or several of these
Content = type[msgspec.Struct] | str | tuple[type[msgspec.Struct] | str, ...]
# intake.idempotency_key's bound for the header (and MessageIn's for the body field)
MAX_IDEMPOTENCY_KEY = 256


@dataclass(frozen=True)
class Op:
    summary: str
    ok: tuple[str, Content | None]  # (status, what it carries; None: no body)
    body: Content | None = None
    errors: tuple[str, ...] = ()
    params: tuple[tuple[str, str, Schema, str], ...] = ()  # (name, in, schema, description)
    description: str = ""
    headers: tuple[tuple[str, Schema, str], ...] = field(default=())  # (name, schema, desc)


def _limit(most: int, default: int) -> tuple[str, str, Schema, str]:
    schema = {"type": "integer", "minimum": 1, "maximum": most, "default": default}
    return ("limit", "query", schema, f"1-{most}, default {default}")


# The streamed batch bodies' media types (batch_stream.py takes a few aliases of each too)
_STREAM_TYPES = ("application/x-ndjson", "text/csv")

_ID = (("id", "path", "string", "Message or batch id"),)
_APP = (("app", "path", "string", "App name from the gateway's settings"),)
_SIG = (
    ("signature", "query", "string", "sha1 signature (plain mode)"),
    ("timestamp", "query", "string", ""),
    ("nonce", "query", "string", ""),
)

OPERATIONS: dict[tuple[str, str], Op] = {
    ("POST", "/v1/messages"): Op(
        "Enqueue one message",
        ("202", Accepted),
        MessageIn,
        ("400", "401", "403", "413", "415", "429", "503"),
        headers=(
            (
                "Idempotency-Key",
                {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
                "Same key, same message: a repeat returns the first id",
            ),
        ),
        description="Answered only after the message is committed to the store.",
    ),
    ("GET", "/v1/messages/{id}"): Op(
        "Status of one message", ("200", MessageView), None, ("401", "403", "404"), _ID
    ),
    ("DELETE", "/v1/messages/{id}"): Op(
        "Cancel a message not yet sent",
        ("200", Accepted),
        None,
        ("401", "403", "404", "409"),
        _ID,
    ),
    ("POST", "/v1/batches"): Op(
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
                "Streamed bodies: template or subscribe",
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
    ("GET", "/v1/batches"): Op(
        "The newest batches first, with their progress",
        ("200", BatchList),
        None,
        ("400", "401", "403"),
        (_limit(MAX_LIST, 20),),
    ),
    ("GET", "/v1/batches/{id}"): Op(
        "Batch progress by status", ("200", BatchProgress), None, ("401", "403", "404"), _ID
    ),
    ("POST", "/v1/batches/{id}/pause"): Op(
        "Stop sending the batch's messages until it is resumed",
        ("200", BatchProgress),
        None,
        ("401", "403", "404", "409"),
        _ID,
        description="Messages already in flight finish; the rest wait in the store.",
    ),
    ("POST", "/v1/batches/{id}/resume"): Op(
        "Send a paused batch's messages again",
        ("200", BatchProgress),
        None,
        ("401", "403", "404", "409"),
        _ID,
    ),
    ("PATCH", "/v1/batches/{id}"): Op(
        "Change the batch's own send rate while it runs",
        ("200", BatchProgress),
        BatchPatch,
        ("400", "401", "403", "404", "409", "415"),
        _ID,
    ),
    ("GET", "/v1/batches/{id}/results"): Op(
        "One row per recipient: final status, errcode, WeChat msgid (streamed)",
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
    ("POST", "/v1/batches/{id}/cancel"): Op(
        "Cancel the batch's pending messages",
        ("200", BatchProgress),
        None,
        ("401", "403", "404", "409"),
        _ID,
    ),
    ("GET", "/v1/dead-letters"): Op(
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
    ("POST", "/v1/dead-letters/requeue"): Op(
        "Requeue dead letters by ids or filter",
        ("200", Requeued),
        RequeueIn,
        ("400", "401", "403", "415"),
    ),
    ("GET", "/v1/stats"): Op("Queue depth, pauses, delivery state", ("200", Stats), None),
    ("GET", "/v1/apps/{app}/access-token"): Op(
        "The app's current access_token (token service)",
        ("200", AccessToken),
        None,
        ("401", "403", "404", "503"),
        _APP,
    ),
    ("POST", "/v1/apps/{app}/access-token/invalidate"): Op(
        "Drop the cached token if it is still the one that failed",
        ("200", Invalidated),
        InvalidateIn,
        ("400", "401", "403", "404", "503"),
        _APP,
    ),
    ("GET", "/wechat/callback/{app}"): Op(
        "WeChat server URL verification: echoes echostr",
        ("200", "text/plain"),
        None,
        ("403", "404"),
        (*_APP, *_SIG, ("echostr", "query", "string", "")),
    ),
    ("POST", "/wechat/callback/{app}"): Op(
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
    ("GET", "/healthz"): Op("The process is up", ("200", Health)),
    ("GET", "/readyz"): Op("The store is reachable", ("200", Health), None, ("503",)),
    ("GET", "/openapi.json"): Op("This document", ("200", "application/json")),
    ("GET", "/metrics"): Op("Prometheus metrics", ("200", "text/plain"), None, ("404",)),
    ("GET", "/dashboard"): Op(
        "The operator dashboard (HTML; its data comes from /v1 with the key entered)",
        ("200", "text/html"),
    ),
    ("GET", "/dashboard/"): Op("Redirects to /dashboard", ("301", None)),
    ("GET", "/dashboard/{name}"): Op(
        "The dashboard's static files",
        ("200", "text/plain"),
        None,
        ("404",),
        (("name", "path", "string", "A file of the dashboard"),),
    ),
}


def _content(model: Content) -> dict[str, Any]:
    if isinstance(model, tuple):
        return {k: v for media in model for k, v in _content(media).items()}
    if isinstance(model, str):
        kind = "object" if model == "application/json" else "string"
        return {model: {"schema": {"type": kind}}}
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}


def _schema(schema: Schema) -> dict[str, Any]:
    return {"type": schema} if isinstance(schema, str) else dict(schema)


def _operation_id(method: str, path: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "_", f"{method} {path}".lower()).strip("_")
    return base + "_slash" if path.endswith("/") else base  # /x and /x/ need distinct ids


def _operation(method: str, path: str, op: Op, scope: Scope | None) -> dict[str, Any]:
    ok_status, ok_model = op.ok
    ok: dict[str, Any] = {"description": "OK"}
    if ok_model is not None:
        ok["content"] = _content(ok_model)
    responses: dict[str, Any] = {ok_status: ok}
    errors = list(op.errors)
    if scope is not None:
        errors += [e for e in ("401", "403", "429") if e not in errors]
    for code in sorted(errors):
        responses[code] = {"description": _ERRORS[code], "content": _content(ErrorBody)}
    out: dict[str, Any] = {
        "operationId": _operation_id(method, path),
        "summary": op.summary,
        "responses": responses,
    }
    description = op.description
    if scope is not None:
        description = f"{description} Needs scope `{scope.value}`.".strip()
        out["security"] = [{"bearer": []}]
        out["x-wxgate-scope"] = scope.value
    else:
        out["security"] = []
    if description:
        out["description"] = description
    params = [
        {
            "name": name,
            "in": where,
            "required": where == "path",
            "schema": _schema(schema),
            **({"description": desc} if desc else {}),
        }
        for name, where, schema, desc in op.params
    ]
    params += [
        {
            "name": name,
            "in": "header",
            "required": False,
            "schema": _schema(schema),
            "description": desc,
        }
        for name, schema, desc in op.headers
    ]
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": _content(op.body)}
    return out


def document(routes: Iterable[tuple[str, str, Scope | None]]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for the registered (method, path, scope) routes."""
    _, components = msgspec.json.schema_components(
        _MODELS, ref_template="#/components/schemas/{name}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for method, path, scope in routes:
        op = OPERATIONS[(method, path)]
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, op, scope)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "wxgate",
            "version": wxgate.__version__,
            "description": "Push gateway for WeChat template and subscribe messages.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from server.api_keys",
                }
            },
        },
    }
