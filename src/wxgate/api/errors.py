"""Every failure becomes one JSON error body {error, message, field}, mapped here once.

Handlers raise ApiError (or a WxgateError from below); `guarded` in app.py calls
`response_for`. Unexpected exceptions get a 500 with an error id that is also logged, so the
body carries no stack trace and no secret.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from aiohttp import web

from wxgate.api.responses import json_response
from wxgate.errors import (
    ConfigError,
    Conflict,
    NotFound,
    StoreTimeout,
    StoreUnavailable,
    TransportError,
    ValidationError,
    WeChatError,
)
from wxgate.models import ErrorBody

log = logging.getLogger("wxgate.api")

RETRY_AFTER_STORE_S = 5


class ApiError(Exception):
    """An HTTP error answer with a machine-readable `error` code and the offending `field`."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return error_response(self.status, self.error, self.message, self.field, self.headers)


def invalid(field: str | None, message: str) -> ApiError:
    return ApiError(400, "invalid_request", message, field)


def error_response(
    status: int,
    error: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    return json_response(ErrorBody(error, message, field), status=status, headers=headers)


# aiohttp's own exceptions (unmatched route, wrong method, body over client_max_size).
_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _http_exception(exc: web.HTTPException) -> web.Response:
    if exc.status == 413:
        message = "request body is larger than the limit"
    elif exc.status == 404:
        message = "no such route"
    else:
        message = exc.reason
    headers = {}
    if exc.status == 405 and "Allow" in exc.headers:
        headers["Allow"] = exc.headers["Allow"]
    error = _HTTP_CODES.get(exc.status, "http_error")
    return error_response(exc.status, error, message, None, headers)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def response_for(exc: BaseException, request: web.Request) -> web.StreamResponse:
    """The answer for an exception that escaped a handler (CancelledError never gets here)."""
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            return exc  # redirects stay what aiohttp made them
        return _http_exception(exc)
    if isinstance(exc, ValidationError):
        return error_response(400, "invalid_request", exc.reason, exc.field)
    if isinstance(exc, NotFound):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, Conflict):
        return error_response(409, "conflict", str(exc))
    if isinstance(exc, StoreTimeout):  # a read, or a write whose handler adds no ids
        return error_response(
            503,
            "store_timeout",
            f"{exc}; what this request changed, if anything, is unknown",
            headers={"Retry-After": str(RETRY_AFTER_STORE_S)},
        )
    if isinstance(exc, StoreUnavailable):
        return error_response(
            503,
            "store_unavailable",
            "the store cannot be reached; try again",
            headers={"Retry-After": str(RETRY_AFTER_STORE_S)},
        )
    if isinstance(exc, TransportError):
        return error_response(504, "wechat_unreachable", "no usable answer from WeChat")
    if isinstance(exc, WeChatError):
        return error_response(
            502, "wechat_error", f"WeChat answered errcode {exc.errcode}: {exc.errmsg}"
        )
    if isinstance(exc, ConfigError):
        return error_response(409, "app_misconfigured", str(exc))
    if isinstance(exc, ConnectionResetError) and _client_gone(request):
        # The caller hung up mid-body: nobody reads this answer, and a traceback per dropped
        # upload would let anyone fill the log. Nothing half-read was stored (bodies are read
        # whole before intake; a streamed batch's own handler marks it incomplete).
        log.debug("client went away on %s %s", request.method, request.rel_url.path)
        return error_response(400, "client_disconnected", "the connection closed mid-request")
    error_id = os.urandom(6).hex()
    log.error(
        "unhandled error %s on %s %s",
        error_id,
        request.method,
        request.rel_url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return error_response(500, "internal", f"internal error; reference {error_id}")
