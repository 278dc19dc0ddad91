"""wxgate.sdk against a real running gateway: the sync GatewayClient from a blocking thread,
the AsyncGatewayClient in the test's loop; and the deprecated wxgate.client alias."""

from __future__ import annotations

import importlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.api import KEY, ThreadServer, make_settings, running_gateway
from wxgate.models import ErrorInfo, SendResult, Status
from wxgate.sdk import AsyncGatewayClient, GatewayClient, GatewayError, GatewayUnreachable


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadServer]:
    srv = ThreadServer(tmp_path / "wx.db", make_settings()).start()
    yield srv
    srv.stop()


def _lease_all(srv: ThreadServer) -> list[str]:
    assert srv.store is not None
    store = srv.store
    return [m.id for m in srv.run(lambda: store.lease(100, 30.0, srv.clock.now()))]


def test_sync_client_round_trip(server: ThreadServer) -> None:
    with GatewayClient(server.base_url, KEY, timeout=5) as gw:
        a = gw.send("o_user_1", "tpl_order", {"first": "Paid", "n": 2}, idempotency_key="k1")
        assert a.status is Status.QUEUED
        again = gw.send("o_user_1", "tpl_order", {"first": "Paid", "n": 2}, idempotency_key="k1")
        assert again.id == a.id  # the same request again: the first message
        with pytest.raises(GatewayError) as refused:  # the key reused for another message
            gw.send("o_user_1", "tpl_order", {"first": "Paid"}, idempotency_key="k1")
        assert refused.value.status == 409 and "'k1'" in str(refused.value)
        b = gw.send("o_user_2", "tpl_order", {"first": "x"}, send_at=server.clock.now() + 60)
        assert b.status is Status.SCHEDULED and b.id != a.id
        view = gw.get_message(a.id)
        assert view.touser == "o_user_1" and view.status is Status.QUEUED
        assert gw.cancel(b.id).status is Status.CANCELLED

        batch = gw.send_batch("tpl", ["o_1", {"touser": "o_2", "data": {"k": "own"}}], {"k": "v"})
        assert batch.total == 2
        assert gw.batch_progress(batch.id).counts == {"queued": 2}
        assert gw.cancel_batch(batch.id).status == "cancelled"

        stats = gw.stats()
        assert stats.queue_depth == 1 and stats.by_status["cancelled"] == 3

        with pytest.raises(GatewayError) as info:
            gw.send("o", "tpl", {"k": None})
        assert (info.value.status, info.value.error, info.value.field) == (
            400,
            "invalid_request",
            "data.k",
        )
        with pytest.raises(GatewayError) as info:
            gw.get_message("nope")
        assert info.value.status == 404
        assert _lease_all(server) == [a.id]
        with pytest.raises(GatewayError) as info:
            gw.cancel(a.id)
        assert info.value.status == 409


def test_sync_dead_letters_and_wait_for(server: ThreadServer) -> None:
    assert server.store is not None
    store = server.store
    with GatewayClient(server.base_url + "/", KEY) as gw:
        ids = [gw.send(f"o_{i}", "tpl", {"k": "v"}).id for i in range(3)]
        for msg in server.run(lambda: store.lease(100, 30.0, server.clock.now())):
            server.run(lambda m=msg: store.dead(m.id, m.lease_token, ErrorInfo(40003, "invalid")))
        page = gw.dead_letters(errcode=40003, limit=2)
        assert len(page.items) == 2 and page.next_cursor
        rest = gw.dead_letters(errcode=40003, cursor=page.next_cursor)
        assert {m.id for m in page.items + rest.items} == set(ids)
        assert gw.requeue(ids=ids[:1]) == 1
        assert gw.requeue(errcode=40003) == 2

        # A worker sends it a moment later; wait_for sees it.
        target = ids[0]

        def deliver() -> None:
            time.sleep(0.2)
            for m in server.run(lambda: store.lease(100, 30.0, server.clock.now())):
                sent = SendResult(42, server.clock.now())
                server.run(lambda m=m, sent=sent: store.ack(m.id, m.lease_token, sent))

        worker = threading.Thread(target=deliver)
        worker.start()
        done = gw.wait_for(target, {Status.SENT}, timeout=5, poll_s=0.05)
        worker.join()
        assert done.status is Status.SENT and done.wechat_msgid == 42
        with pytest.raises(TimeoutError):
            gw.wait_for(target, {"delivered"}, timeout=0.2, poll_s=0.05)


def test_sync_client_errors(server: ThreadServer) -> None:
    with GatewayClient(server.base_url, "wrong-key") as gw, pytest.raises(GatewayError) as info:
        gw.stats()
    assert info.value.status == 401 and info.value.error == "unauthorized"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with (
        GatewayClient(f"http://127.0.0.1:{port}", KEY, timeout=2) as gw,
        pytest.raises(GatewayUnreachable),
    ):
        gw.stats()
    with pytest.raises(ValueError):
        GatewayClient("ftp://x", KEY)


def test_old_import_path_warns_and_still_works(server: ThreadServer) -> None:
    sys.modules.pop("wxgate.client", None)  # import it afresh, so the warning fires here
    with pytest.warns(DeprecationWarning, match="wxgate.sdk"):
        old = importlib.import_module("wxgate.client")
    assert (old.Client, old.AsyncClient) == (GatewayClient, AsyncGatewayClient)
    assert (old.GatewayError, old.GatewayUnreachable) == (GatewayError, GatewayUnreachable)
    with old.Client(server.base_url, KEY, timeout=5) as gw:
        accepted = gw.send("o_user_old", "tpl_order", {"first": "Paid"})
        assert gw.get_message(accepted.id).touser == "o_user_old"


async def test_async_client(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "wx.db") as g:
        base = str(g.client.make_url("/"))
        async with AsyncGatewayClient(base, KEY) as gw:
            a = await gw.send("o_user_1", "tpl", {"k": "v"}, kind="template")
            view = await gw.get_message(a.id)
            assert view.status is Status.QUEUED
            assert (await gw.wait_for(a.id, {"queued"}, timeout=1)).id == a.id
            batch = await gw.send_batch("tpl", ["o_1", "o_2"], {"k": "v"})
            assert (await gw.batch_progress(batch.id)).total == 2
            assert (await gw.stats()).queue_depth == 3
            assert (await gw.dead_letters()).items == []
            assert await gw.requeue(app="shop") == 0
            assert (await gw.cancel(a.id)).status is Status.CANCELLED
            assert (await gw.cancel_batch(batch.id)).status == "cancelled"
            with pytest.raises(GatewayError) as info:
                await gw.send("o", "tpl", {"k": "v"}, app="nope")
            assert info.value.field == "app"
            with pytest.raises(GatewayError) as info:
                await gw.access_token("shop")
            assert info.value.status == 503
        assert "Bearer" not in repr(gw)
