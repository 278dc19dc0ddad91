"""WebhookSender on a real SQLite store and a real receiver: it yields to a send backlog, and
the settings that feed it keep the secret masked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.webhooks import SECRET, Receiver
from wxgate.clock import SystemClock
from wxgate.delivery.webhooks import WebhookSender
from wxgate.models import Message, new_id
from wxgate.settings import AppSettings, WebhookSettings, from_dict
from wxgate.store.sqlite import SQLiteStore


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.close()


async def outbox(tmp_path: Path, url: str, n: int) -> SQLiteStore:
    """A store holding n cancelled messages' events, due now."""
    clock = SystemClock()
    store = SQLiteStore(str(tmp_path / "w.db"), clock)
    await store.open()
    now = clock.now()
    msgs = [
        Message(
            id=new_id(),
            app="a",
            touser="o_x",
            template_id="t",
            data={"k": {"value": "v"}},
            created_at=now,
            not_before=now + 3600,
            callback_url=url,
        )
        for _ in range(n)
    ]
    await store.enqueue(msgs)
    for m in msgs:
        await store.cancel(m.id)
    assert (await store.webhook_stats()).pending == n
    return store


async def test_a_send_backlog_slows_webhooks_to_busy_rate_then_they_catch_up(
    tmp_path: Path, receiver: Receiver
) -> None:
    store = await outbox(tmp_path, f"{receiver.url}/hooks", 60)
    busy = True
    settings = WebhookSettings(poll_s=0.05, busy_rate_per_s=20.0)  # 1 event per 50 ms tick
    # The app's own callback_url (the operator's, so loopback is fine): a URL no app has
    # would be a caller's, refused on loopback.
    hooks = f"{receiver.url}/hooks"
    app = AppSettings(name="a", appid="wx_a", secret="s", webhook_secret=SECRET, callback_url=hooks)
    sender = WebhookSender(store, {"a": app}, settings, SystemClock(), busy=lambda: busy)
    await sender.start()
    try:
        await asyncio.sleep(0.5)
        while_busy = len(receiver.deliveries)
        assert 3 <= while_busy <= 15, while_busy  # ~10 at 20/s, never all 60
        busy = False
        for _ in range(100):
            if (await store.webhook_stats()).pending == 0:
                break
            await asyncio.sleep(0.05)
        stats = await store.webhook_stats()
        assert (stats.pending, stats.delivered) == (0, 60)
        assert len(receiver.accepted()) == 60
        assert all(d.signature_ok for d in receiver.deliveries)
    finally:
        await sender.close()
        await store.close()


def test_the_webhook_secret_is_masked_and_settings_checked() -> None:
    data = {
        "apps": [
            {
                "name": "a",
                "appid": "wx_a",
                "secret": "s",
                "callback_url": "https://caller.example/hook",
                "webhook_secret": "whsec-very-secret",
                "validate": "truncate",
            }
        ]
    }
    settings = from_dict(data)
    assert settings.apps[0].validate == "truncate"
    assert settings.masked()["apps"][0]["webhook_secret"] == "***"
    assert "whsec-very-secret" not in repr(settings)
    assert "whsec-very-secret" not in repr(settings.apps[0])
    with pytest.raises(Exception, match="callback_url"):
        from_dict({"apps": [{**data["apps"][0], "callback_url": "ftp://x"}]})
    with pytest.raises(Exception, match="validate"):
        from_dict({"apps": [{**data["apps"][0], "validate": "maybe"}]})
    with pytest.raises(Exception, match="lease_s"):
        from_dict({**data, "webhooks": {"lease_s": 1.0, "timeout_s": 5.0}})
