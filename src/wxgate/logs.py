"""Log output: the plain text a terminal reads, or one JSON object per line for a log pipeline.

Log calls that concern one message, app, batch or WeChat errcode pass them as `extra`
(`log.warning("...", id, extra=fields(message_id=id, app=app))`): the text format keeps them
inside the message as today, the JSON format also gives each its own key, so a pipeline can
filter on `app` or `errcode` without parsing sentences. Nothing else of the record is copied
out: a field reaches the output only if it is named in CONTEXT_FIELDS, so no secret can leak
through an `extra` added for another reason.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
# The per-message context a JSON line may carry, in this order.
CONTEXT_FIELDS = ("message_id", "app", "batch", "errcode")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def fields(
    *,
    message_id: str | None = None,
    app: str | None = None,
    batch: str | None = None,
    errcode: int | None = None,
) -> dict[str, Any]:
    """The `extra` of a log call: only the context given (None is left out), under names the
    JSON format knows; typed so a misspelt field is a mypy error, not a silently lost key."""
    given = {"message_id": message_id, "app": app, "batch": batch, "errcode": errcode}
    return {k: v for k, v in given.items() if v is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: time (UTC, ISO 8601, ms), level, logger,
    message, the context fields the call passed, `process` for a supervised child, and the
    traceback as `exc` (a string: embedded newlines are escaped, so it stays one line)."""

    def __init__(self, process_index: int | None = None) -> None:
        super().__init__()
        self._index = process_index

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if self._index is not None:
            out["process"] = self._index
            out["pid"] = record.process
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


def parse_format(value: str) -> LogFormat:
    """`text` or `json`, else ValueError naming both (the CLI turns it into exit code 2)."""
    for fmt in FORMATS:
        if value == fmt:
            return fmt
    raise ValueError(f"log format must be text or json, not {value!r}")


def setup(level: int, fmt: LogFormat, process_index: int | None = None) -> None:
    """Send every log record at `level` or above to stderr in `fmt`, replacing any handler a
    previous call installed (the CLI sets up once it has read the settings' log_format)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(process_index))
    elif process_index is None:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    else:
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s %(levelname)s %(name)s[{process_index}:%(process)d]: %(message)s"
            )
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
