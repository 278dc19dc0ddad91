"""The SDK's errors: a non-2xx answer is a GatewayError; no answer at all, GatewayUnreachable."""

from __future__ import annotations

from wxgate.errors import WxgateError


class GatewayError(WxgateError):
    """The gateway answered non-2xx (or, as GatewayUnreachable, not at all)."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        field: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        where = f" ({field})" if field else ""
        super().__init__(f"{status} {error}: {message}{where}")
        self.status = status
        self.error = error
        self.message = message
        self.field = field
        self.retry_after_s = retry_after_s


class GatewayUnreachable(GatewayError):
    """No answer: connection refused, reset or timed out (status 0)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "unreachable", message)
