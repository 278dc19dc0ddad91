"""How many bytes of `data` one request may make the gateway store (pure, no I/O).

Sizes are of the data as stored: msgspec JSON of WeChat's shape ({"k": {"value": "v"}}).
A message's limit is on its effective data (a batch's shared data updated by the recipient's
own); a batch's is on what the store keeps of it: the shared data once plus every
recipient's own. Over either limit: 413 naming the field, and the request stores nothing
(a streamed upload that goes over is cancelled, like one with too many recipients).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from wxgate.api.errors import ApiError
from wxgate.settings import ServerSettings

Data = dict[str, dict[str, str]]

encode_data = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class DataLimits:
    max_data_bytes: int  # server.max_data_bytes
    max_batch_data_bytes: int  # server.max_batch_data_bytes

    @classmethod
    def of(cls, server: ServerSettings) -> DataLimits:
        return cls(server.max_data_bytes, server.max_batch_data_bytes)


DEFAULT_LIMITS = DataLimits.of(ServerSettings())


def size_of(data: Data) -> int:
    return len(encode_data(data)) if data else 0


def _too_large(field: str, what: str, size: int, limit: int, setting: str) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"{what} is {size} bytes as stored, more than the {limit} allowed ({setting})",
        field,
    )


def check_message_data(data: Data, max_data_bytes: int, field: str = "data") -> int:
    """The encoded size of one message's data; 413 when it is over server.max_data_bytes."""
    size = size_of(data)
    if size > max_data_bytes:
        raise _too_large(field, field, size, max_data_bytes, "server.max_data_bytes")
    return size


class BatchBudget:
    """A batch's data bytes as the store keeps them, checked as recipients are added.

    Per recipient with data of its own the caller encodes it once (`size_of`) and, only when
    that is over `room`, has the merge checked exactly (shared + own bounds the merged size
    from above); the sizes are added up per call of `add` (a batch, or a streamed chunk)."""

    def __init__(self, shared: Data, limits: DataLimits) -> None:
        self.limits = limits
        self.shared_bytes = check_message_data(shared, limits.max_data_bytes)
        self.room = limits.max_data_bytes - self.shared_bytes
        self.total_bytes = self.shared_bytes

    def check_effective(self, effective: Data, field: str) -> None:
        check_message_data(effective, self.limits.max_data_bytes, field)

    def add(self, own_bytes: int) -> None:
        """Count recipients' own bytes; 413 once the batch is over max_batch_data_bytes."""
        self.total_bytes += own_bytes
        limit = self.limits.max_batch_data_bytes
        if self.total_bytes > limit:
            raise _too_large(
                "recipients",
                "the batch's data (shared data once, plus every recipient's own)",
                self.total_bytes,
                limit,
                "server.max_batch_data_bytes",
            )
