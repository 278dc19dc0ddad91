"""Turning validated request bodies into stored Messages: app, data shape, kind, times.

Pure functions (no I/O) so the rules are tested with literals. Everything a caller can get
wrong is refused here with the field named, before anything reaches the store.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from msgspec.structs import replace

from wxgate.api.callback_url import caller_callback_url
from wxgate.api.data_limits import DEFAULT_LIMITS, BatchBudget, DataLimits, encode_data
from wxgate.api.errors import invalid
from wxgate.models import (
    Batch,
    BatchIn,
    Message,
    MessageIn,
    MessageKind,
    SharedFields,
    Status,
    new_ids,
)
from wxgate.policy.quiet_hours import PRIORITY_ALIASES
from wxgate.policy.quiet_hours import for_app as quiet_hours_of
from wxgate.settings import AppSettings
from wxgate.store.batch_shared import merged

Data = dict[str, dict[str, str]]

MINIPROGRAM_STATES = frozenset({"developer", "trial", "formal"})
LANGS = frozenset({"zh_CN", "en_US", "zh_HK", "zh_TW"})
# A send_at this far ahead is almost always epoch milliseconds passed as seconds.
MAX_AHEAD_S = 366 * 86400
_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")


def resolve_app(apps: Mapping[str, AppSettings], name: str | None) -> AppSettings:
    if name is None:
        if len(apps) == 1:
            return next(iter(apps.values()))
        if not apps:
            raise invalid("app", "no app is configured on this gateway")
        raise invalid("app", "required when more than one app is configured")
    app = apps.get(name)
    if app is None:
        raise invalid("app", f"unknown app {name!r}")
    return app


def _value(v: Any, field: str) -> str:
    if isinstance(v, str):
        return v
    # bool is an int subclass, but "True" is never what a template wanted.
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    raise invalid(field, "expected a string or a number")


def normalize_data(data: Mapping[str, Any], prefix: str = "data") -> Data:
    """{"k": "v"} and {"k": {"value": "v", "color": "#hex"}} both become WeChat's shape.

    `color` is accepted and passed on, but WeChat ignores it since 2023-05-04
    (docs/wechat-api.md §2.2): old callers keep working, and nothing changes on screen."""
    out: Data = {}
    for key, item in data.items():
        if type(item) is str and key:  # the common case first: batches call this per recipient
            out[key] = {"value": item}
            continue
        if not key:
            raise invalid(prefix, "keys must not be empty")
        if isinstance(item, dict):
            field = f"{prefix}.{key}"
            if "value" not in item:
                raise invalid(f"{field}.value", "missing required field `value`")
            entry = {"value": _value(item["value"], f"{field}.value")}
            for extra, v in item.items():
                if extra == "value":
                    continue
                if extra != "color":
                    raise invalid(f"{field}.{extra}", "unknown field (only value and color)")
                if not isinstance(v, str) or not _COLOR.match(v):
                    raise invalid(f"{field}.color", "expected a color like #173177")
                entry["color"] = v
            out[key] = entry
        else:
            out[key] = {"value": _value(item, f"{prefix}.{key}")}
    return out


def _check_time(value: float | None, field: str, now: float) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0:
        raise invalid(field, "expected epoch seconds")
    if value > now + MAX_AHEAD_S:
        raise invalid(field, "more than a year ahead; expected epoch seconds, not milliseconds")


def _times(
    send_at: float | None,
    expire_at: float | None,
    now: float,
    app: AppSettings,
    priority: str = "normal",
) -> tuple[float, float | None, bool]:
    """(not_before, expire_at, already expired). A message that may wait and is due inside
    the app's quiet hours is held to the window's end; if that is past expire_at it would only
    ever be sent late, so it is expired at once."""
    if send_at is None and expire_at is None and app.quiet_hours is None:
        return now, None, False  # the common case: due now, never expires
    _check_time(send_at, "send_at", now)
    _check_time(expire_at, "expire_at", now)
    if send_at is not None and expire_at is not None and expire_at <= send_at:
        raise invalid("expire_at", "must be later than send_at")
    not_before = send_at if send_at is not None and send_at > now else now
    expired = expire_at is not None and expire_at <= now
    quiet = quiet_hours_of(app) if app.quiet_hours is not None else None
    if quiet is not None and not expired:
        not_before, expired = quiet.hold(not_before, priority, expire_at)
    return not_before, expire_at, expired


def _priority(value: str) -> str:
    """urgent | normal | low; "high" is urgent's older spelling and is stored as "urgent"."""
    priority = PRIORITY_ALIASES.get(value)
    if priority is None:
        raise invalid("priority", "expected urgent, normal or low (high means urgent)")
    return priority


def _check_url(value: str | None, field: str) -> None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise invalid(field, "expected an http:// or https:// URL")


# The fields each kind's WeChat API has (WeChat's own names; `url` is sent as bizsend's `page`,
# a web URL, since `page` here is a mini-program page path).
_KIND_FIELDS = {
    MessageKind.TEMPLATE: frozenset({"url", "miniprogram"}),
    MessageKind.SUBSCRIBE: frozenset({"page", "miniprogram_state", "lang"}),
    MessageKind.OA_SUBSCRIBE: frozenset({"url", "miniprogram"}),
}
_KIND_HINT = {
    "url": "only for kind=template and kind=oa_subscribe (subscribe messages use page)",
    "miniprogram": "only for kind=template and kind=oa_subscribe (subscribe messages use page)",
    "page": "only for kind=subscribe (template messages and oa_subscribe use url)",
    "miniprogram_state": "only for kind=subscribe",
    "lang": "only for kind=subscribe",
}


def check_kind_fields(kind: MessageKind, present: Sequence[tuple[str, object]]) -> None:
    """400 naming the first field set that `kind`'s WeChat API does not have."""
    allowed = _KIND_FIELDS[kind]
    for name, value in present:
        if value is not None and name not in allowed:
            raise invalid(name, _KIND_HINT[name])


def _check_kind(body: MessageIn) -> None:
    if body.kind is MessageKind.TEMPLATE:
        if body.page is None and body.miniprogram_state is None and body.lang is None:
            return  # the common case, without the loop
    check_kind_fields(
        body.kind,
        [(name, getattr(body, name)) for name in _KIND_HINT],
    )
    if body.kind is MessageKind.SUBSCRIBE:
        if body.miniprogram_state is not None and body.miniprogram_state not in MINIPROGRAM_STATES:
            raise invalid("miniprogram_state", "expected developer, trial or formal")
        if body.lang is not None and body.lang not in LANGS:
            raise invalid("lang", "expected zh_CN, en_US, zh_HK or zh_TW")


def idempotency_key(body_key: str | None, header_key: str | None) -> str | None:
    if header_key is None:
        return body_key
    if not 1 <= len(header_key) <= 256:
        raise invalid("idempotency_key", "the Idempotency-Key header must be 1-256 characters")
    if body_key is not None and body_key != header_key:
        raise invalid("idempotency_key", "differs from the Idempotency-Key header")
    return header_key


def message_from(
    body: MessageIn,
    app: AppSettings,
    now: float,
    msg_id: str,
    idem_key: str | None,
    key_hosts: Sequence[str] | None = None,
) -> Message:
    """`key_hosts`: the calling key's callback_hosts (callback_url.py), None if it has none."""
    _check_kind(body)
    priority = _priority(body.priority)
    _check_url(body.url, "url")
    own_callback = caller_callback_url(body.callback_url, app, key_hosts)
    not_before, expire_at, expired = _times(body.send_at, body.expire_at, now, app, priority)
    return Message(
        id=msg_id,
        app=app.name,
        kind=body.kind,
        touser=body.touser,
        template_id=body.template_id,
        data=normalize_data(body.data),
        url=body.url,
        miniprogram=body.miniprogram,
        page=body.page,
        miniprogram_state=body.miniprogram_state,
        lang=body.lang,
        idempotency_key=idem_key,
        callback_url=own_callback or app.callback_url,  # fixed at accept time
        priority=priority,
        created_at=now,
        not_before=not_before,
        expire_at=expire_at,
        # Too late already: never sent. (A store that files it as queued anyway leaves it to
        # the dispatcher, which expires it on lease; GET reads expired either way.)
        status=Status.EXPIRED if expired else Status.QUEUED,
        finished_at=now if expired else None,
    )


def batch_from(
    body: BatchIn,
    app: AppSettings,
    now: float,
    batch_id: str,
    max_recipients: int,
    *,
    key_hosts: Sequence[str] | None = None,
    limits: DataLimits = DEFAULT_LIMITS,
    trace: str | None = None,
) -> tuple[Batch, list[Message]]:
    """The Batch record and one Message per recipient; recipient data overrides shared data.

    The shared fields are one SharedFields object, referenced by the batch and every message
    (the store keeps them once); a recipient without data of its own shares the shared data
    object itself. Data over `limits` is a 413 (data_limits.py). `key_hosts` as for
    message_from. `trace`: the trace context every message keeps (tracing/context.py)."""
    total = len(body.recipients)
    if total == 0:
        raise invalid("recipients", "must not be empty")
    if total > max_recipients:
        raise invalid("recipients", f"at most {max_recipients} per batch, got {total}")
    kind = body.kind
    check_kind_fields(
        kind, [("url", body.url), ("miniprogram", body.miniprogram), ("page", body.page)]
    )
    _check_url(body.url, "url")
    own_callback = caller_callback_url(body.callback_url, app, key_hosts)
    priority = _priority(body.priority)
    not_before, expire_at, expired = _times(body.send_at, body.expire_at, now, app, priority)
    shared = normalize_data(body.data)
    budget = BatchBudget(shared, limits)
    common = SharedFields(data=shared, url=body.url, miniprogram=body.miniprogram, page=body.page)
    # One prototype, copied per recipient: msgspec's replace is several times cheaper than
    # building each Message from a dozen keyword arguments (batch ingest is a hot path).
    proto = Message(
        id="",
        app=app.name,
        kind=kind,
        touser="",
        template_id=body.template_id,
        data=shared,
        url=body.url,
        miniprogram=body.miniprogram,
        page=body.page,
        batch_id=batch_id,
        callback_url=own_callback or app.callback_url,  # fixed at accept time
        priority=priority,
        created_at=now,
        not_before=not_before,
        expire_at=expire_at,
        status=Status.EXPIRED if expired else Status.QUEUED,
        finished_at=now if expired else None,
        shared=common,
        trace=trace,
    )
    messages: list[Message] = []
    append = messages.append
    room, own_total = budget.room, 0
    for i, (msg_id, r) in enumerate(zip(new_ids(total), body.recipients, strict=True)):
        if r.data:
            own: Data = {}
            for key, item in r.data.items():
                if type(item) is str and key:  # the common case, without normalize_data's
                    own[key] = {"value": item}  # call and its error-path field name
                else:
                    own.update(normalize_data({key: item}, f"recipients[{i}].data"))
            data = merged(shared, own)
            size = len(encode_data(own))
            if size > room:
                budget.check_effective(data, f"recipients[{i}].data")
            own_total += size
            append(replace(proto, id=msg_id, touser=r.touser, data=data))
        else:
            # `data` is shared by reference: nothing mutates a stored message's data.
            append(replace(proto, id=msg_id, touser=r.touser))
    budget.add(own_total)
    batch = Batch(
        id=batch_id,
        app=app.name,
        template_id=body.template_id,
        total=total,
        created_at=now,
        shared=common,
    )
    return batch, messages
