"""503 store_timeout: the store did not answer in time, so whether a write applied is unknown.

The answer says so and carries the ids the gateway assigned before the write, so the caller
can look (GET /v1/messages/{id}, GET /v1/batches/{batch_id}) instead of blindly sending again;
a retry with the same Idempotency-Key cannot duplicate either way.
"""

from __future__ import annotations

from aiohttp import web

from wxgate.api.errors import RETRY_AFTER_STORE_S, ApiError
from wxgate.api.responses import json_response
from wxgate.errors import StoreTimeout
from wxgate.models import ErrorBody

STORE_TIMEOUT = "store_timeout"


class OutcomeUnknownBody(ErrorBody):
    id: str | None = None
    batch_id: str | None = None


class OutcomeUnknown(ApiError):
    """The 503 for a write that timed out, with the ids it was given."""

    def __init__(
        self, exc: StoreTimeout, *, message_id: str | None = None, batch_id: str | None = None
    ) -> None:
        if batch_id is not None:
            what = f"batch {batch_id} may or may not have been accepted: GET /v1/batches/{batch_id}"
        else:
            what = (
                f"message {message_id} may or may not have been accepted: "
                f"GET /v1/messages/{message_id}, or retry with the same Idempotency-Key"
            )
        super().__init__(
            503,
            STORE_TIMEOUT,
            f"{exc}, so the outcome is unknown: {what}",
            headers={"Retry-After": str(RETRY_AFTER_STORE_S)},
        )
        self.message_id = message_id
        self.batch_id = batch_id

    def response(self) -> web.Response:
        body = OutcomeUnknownBody(self.error, self.message, None, self.message_id, self.batch_id)
        return json_response(body, status=self.status, headers=self.headers)
