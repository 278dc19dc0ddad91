"""Delivery receipts pushed to each app's callback URL as WeChat does (docs/wechat-api.md §5.2-5.5).

One queue and a small pool of sender tasks on one pooled session: receipts never cost a task
each. Each push is signed (AES in safe mode), XML or JSON (the app's push_format). As WeChat
does, a push is tried again only when no answer came within `receipt_timeout_s` (or no
connection), up to `receipt_tries` tries in all: an HTTP error is an answer, not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from typing import NamedTuple

import aiohttp

from wxgate.sim.state import SimState
from wxgate.wechat import crypto


class Receipt(NamedTuple):
    due: float  # loop.time() when it may be posted
    appid: str
    openid: str
    msgid: int
    template_id: str
    subscribe: bool
    status: str
    create_time: int


class ChoiceEvent(NamedTuple):
    """A user's accept/reject of a subscribe template: subscribe_msg_popup_event, or
    subscribe_msg_change_event (which WeChat pushes for rejections only)."""

    due: float
    appid: str
    openid: str
    template_id: str
    accepted: bool
    change: bool
    create_time: int


def _choice_parts(c: ChoiceEvent) -> tuple[str, str, dict[str, str]]:
    event, wrapper = (
        ("subscribe_msg_change_event", "SubscribeMsgChangeEvent")
        if c.change
        else ("subscribe_msg_popup_event", "SubscribeMsgPopupEvent")
    )
    item = {
        "TemplateId": c.template_id,
        "SubscribeStatusString": "accept" if c.accepted else "reject",
    }
    if not c.change:
        item["PopupScene"] = "2"
    return event, wrapper, item


def choice_xml(original_id: str, c: ChoiceEvent) -> str:
    event, wrapper, item = _choice_parts(c)
    inner = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in item.items())
    return (
        f"<xml><ToUserName><![CDATA[{original_id}]]></ToUserName>"
        f"<FromUserName><![CDATA[{c.openid}]]></FromUserName>"
        f"<CreateTime>{c.create_time}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event>"
        f"<{wrapper}><List>{inner}</List></{wrapper}></xml>"
    )


def choice_json(original_id: str, c: ChoiceEvent) -> str:
    event, wrapper, item = _choice_parts(c)
    body = {
        "ToUserName": original_id,
        "FromUserName": c.openid,
        "CreateTime": c.create_time,
        "MsgType": "event",
        "Event": event,
        wrapper: {"List": item},
    }
    return json.dumps(body, ensure_ascii=False)


def template_xml(original_id: str, r: Receipt) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{original_id}]]></ToUserName>"
        f"<FromUserName><![CDATA[{r.openid}]]></FromUserName>"
        f"<CreateTime>{r.create_time}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>"
        f"<MsgID>{r.msgid}</MsgID>"
        f"<Status><![CDATA[{r.status}]]></Status></xml>"
    )


# Non-zero ErrorCodes of subscribe_msg_sent_event are undocumented; these are our convention.
_SUBSCRIBE_CODES = {"success": 0, "failed:user block": 43101, "failed: system failed": -1}


def subscribe_xml(original_id: str, r: Receipt) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{original_id}]]></ToUserName>"
        f"<FromUserName><![CDATA[{r.openid}]]></FromUserName>"
        f"<CreateTime>{r.create_time}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[subscribe_msg_sent_event]]></Event>"
        "<SubscribeMsgSentEvent><List>"
        f"<TemplateId><![CDATA[{r.template_id}]]></TemplateId>"
        f"<MsgID>{r.msgid}</MsgID>"
        f"<ErrorCode>{_SUBSCRIBE_CODES.get(r.status, -1)}</ErrorCode>"
        f"<ErrorStatus><![CDATA[{r.status}]]></ErrorStatus>"
        "</List></SubscribeMsgSentEvent></xml>"
    )


def _event(original_id: str, r: Receipt) -> dict[str, object]:
    head: dict[str, object] = {
        "ToUserName": original_id,
        "FromUserName": r.openid,
        "CreateTime": r.create_time,
        "MsgType": "event",
    }
    if not r.subscribe:
        return {**head, "Event": "TEMPLATESENDJOBFINISH", "MsgID": r.msgid, "Status": r.status}
    item = {
        "TemplateId": r.template_id,
        "MsgID": str(r.msgid),
        "ErrorCode": str(_SUBSCRIBE_CODES.get(r.status, -1)),
        "ErrorStatus": r.status,
    }
    return {**head, "Event": "subscribe_msg_sent_event", "SubscribeMsgSentEvent": {"List": item}}


def json_event(original_id: str, r: Receipt) -> str:
    """The same event as JSON, as mini programs may choose to receive it."""
    return json.dumps(_event(original_id, r), ensure_ascii=False)


def signed_push(
    token: str,
    aes_key: str | None,
    appid: str,
    original_id: str,
    xml: str,
    timestamp: str,
    as_json: bool = False,
) -> tuple[dict[str, str], bytes]:
    """Query parameters and body of one push (`xml`: the event, XML or JSON), plain or AES."""
    nonce = str(secrets.randbelow(10**10))
    params = {
        "signature": crypto.signature(token, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
    }
    if aes_key is None:
        return params, xml.encode()
    encrypted = crypto.encrypt(aes_key, appid, xml.encode())
    params["encrypt_type"] = "aes"
    params["msg_signature"] = crypto.signature(token, timestamp, nonce, encrypted)
    if as_json:
        envelope = {"ToUserName": original_id, "Encrypt": encrypted}
        return params, json.dumps(envelope).encode()
    body = (
        f"<xml><ToUserName><![CDATA[{original_id}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    )
    return params, body.encode()


_HEADERS = {"Content-Type": "text/xml", "User-Agent": "Mozilla/4.0"}
_JSON_HEADERS = {"Content-Type": "application/json", "User-Agent": "Mozilla/4.0"}


class ReceiptSender:
    def __init__(self, state: SimState) -> None:
        self.state = state
        cfg = state.config
        self._queue: asyncio.Queue[Receipt | ChoiceEvent] = asyncio.Queue(
            maxsize=cfg.receipt_queue_max
        )
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._in_flight = 0

    @property
    def pending(self) -> int:
        return self._queue.qsize() + self._in_flight

    def __repr__(self) -> str:
        return (
            f"<ReceiptSender queued={self._queue.qsize()} in_flight={self._in_flight} "
            f"workers={len(self._workers)}>"
        )

    async def start(self) -> None:
        cfg = self.state.config
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=cfg.receipt_workers),
            timeout=aiohttp.ClientTimeout(total=cfg.receipt_timeout_s),
        )
        self._workers = [
            asyncio.create_task(self._work(), name=f"sim-receipts-{i}")
            for i in range(max(1, cfg.receipt_workers))
        ]

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    def enqueue(self, receipt: Receipt | ChoiceEvent) -> None:
        try:
            self._queue.put_nowait(receipt)
        except asyncio.QueueFull:
            self.state.receipts_dropped += 1

    async def join(self) -> None:
        """Wait until every queued receipt was posted or given up on."""
        await self._queue.join()

    def clear(self) -> None:
        """Drop receipts not yet posted (on /_sim/reset)."""
        while True:
            try:
                self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            self._queue.task_done()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            r = await self._queue.get()
            self._in_flight += 1
            try:
                wait = r.due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._post(r)
            finally:
                self._in_flight -= 1
                self._queue.task_done()

    async def _post(self, r: Receipt | ChoiceEvent) -> None:
        app = self.state.apps.get(r.appid)
        session = self._session
        url = app.cfg.callback_url if app is not None else None
        if app is None or url is None or session is None:
            return
        cfg = app.cfg
        as_json = cfg.push_format == "json"
        if isinstance(r, ChoiceEvent):
            event = (choice_json if as_json else choice_xml)(cfg.original_id, r)
        elif as_json:
            event = json_event(cfg.original_id, r)
        else:
            event = (subscribe_xml if r.subscribe else template_xml)(cfg.original_id, r)
        headers = _JSON_HEADERS if as_json else _HEADERS
        tries = max(1, self.state.config.receipt_tries)
        for attempt in range(tries):
            timestamp = str(int(self.state.clock.now()))
            params, body = signed_push(
                cfg.callback_token,
                cfg.encoding_aes_key,
                cfg.appid,
                cfg.original_id,
                event,
                timestamp,
                as_json,
            )
            try:
                async with session.post(url, params=params, data=body, headers=headers) as resp:
                    await resp.read()
                    # Any answer ends it: WeChat retries only a push that got none in time.
                    if resp.status < 400:
                        self.state.receipts_sent += 1
                    else:
                        self.state.receipts_refused += 1
                    return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if attempt + 1 < tries:
                self.state.receipts_retried += 1
        self.state.receipts_failed += 1
