"""Shared helpers for tests/wechat: the sandbox app, client settings and message factory."""

from __future__ import annotations

import time

from wxgate.models import Message, MessageKind, new_id
from wxgate.settings import AppSettings, WeChatSettings

APP = AppSettings(name="sandbox", appid="wx_sandbox", secret="sandbox_secret")


def settings_for(base_url: str, **overrides: float | str | bool | None) -> WeChatSettings:
    values: dict[str, object] = {
        "base_url": base_url,
        "connect_timeout_s": 2.0,
        "read_timeout_s": 10.0,
        "total_timeout_s": 15.0,
    }
    values.update(overrides)
    return WeChatSettings(**values)  # type: ignore[arg-type]


def message(
    touser: str = "o_alice",
    template_id: str = "tpl_order",
    kind: MessageKind = MessageKind.TEMPLATE,
    msg_id: str | None = None,
) -> Message:
    now = time.time()
    return Message(
        id=msg_id or new_id(),
        app=APP.name,
        kind=kind,
        touser=touser,
        template_id=template_id,
        data={"thing1": {"value": "Order 42"}},
        created_at=now,
        not_before=now,
    )
