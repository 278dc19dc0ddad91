"""The OpenAPI 3.1 document of a route list (api/routes.py), its schemas generated from the
msgspec models so they cannot drift from them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

import wxgate
from wxgate.api.auth import Scope
from wxgate.api.operation import Content, Op, Route, Schema
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
    ErrorBody,
    MessageIn,
)

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
    MessagePage,
    ThroughputHistory,
    RequeueIn,
    Requeued,
    AccessToken,
    InvalidateIn,
    Invalidated,
    Health,
    Stats,
    AppList,
    AppView,
    PauseIn,
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


def document(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes`, in their order."""
    _, components = msgspec.json.schema_components(
        _MODELS, ref_template="#/components/schemas/{name}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r.method, r.path, r.op, r.scope)
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
