"""Sans-IO WeChat protocol: build request bodies and classify answers, with no network code.

The client (`client.py`) moves the bytes; everything here is a pure function of its inputs,
so it is tested with literals.
"""

from __future__ import annotations

import msgspec

from wxgate.errors import BadTokenEndpoint, Disposition, OutcomeUnknown, TokenAnswer, WeChatError
from wxgate.models import Message, MessageKind, MiniProgram, TokenEntry
from wxgate.policy.errcodes import Context, disposition
from wxgate.settings import AppSettings

TEMPLATE_SEND_PATH = "/cgi-bin/message/template/send"
SUBSCRIBE_SEND_PATH = "/cgi-bin/message/subscribe/send"
BIZSEND_PATH = "/cgi-bin/message/subscribe/bizsend"
TOKEN_PATH = "/cgi-bin/token"
STABLE_TOKEN_PATH = "/cgi-bin/stable_token"


class SendAnswer(msgspec.Struct, frozen=True):
    errcode: int
    errmsg: str
    msgid: int | None = None


# ---------------------------------------------------------------- wire shapes


class _TemplateBody(msgspec.Struct, omit_defaults=True):
    touser: str
    template_id: str
    data: dict[str, dict[str, str]]
    # WeChat keeps one message per openid + client_msg_id for 10 minutes, so a re-send after
    # an ambiguous failure is dropped by WeChat instead of reaching the user twice.
    client_msg_id: str
    url: str | None = None
    miniprogram: MiniProgram | None = None


class _SubscribeBody(msgspec.Struct, omit_defaults=True):
    touser: str
    template_id: str
    data: dict[str, dict[str, str]]
    page: str | None = None
    miniprogram_state: str | None = None
    lang: str | None = None


class _BizsendBody(msgspec.Struct, omit_defaults=True):
    """An OA subscription notification: `page` is a web URL (our `url`); a miniprogram wins
    over it on the phone. No client_msg_id exists in this API (docs/wechat-api.md §3.2)."""

    touser: str
    template_id: str
    data: dict[str, dict[str, str]]
    page: str | None = None
    miniprogram: MiniProgram | None = None


class _StableTokenBody(msgspec.Struct):
    grant_type: str
    appid: str
    secret: str
    force_refresh: bool


class _Answer(msgspec.Struct):
    """Every API answer: errcode is absent on success for token endpoints."""

    errcode: int = 0
    errmsg: str = ""
    # 64-bit; SDKs disagree on int vs string, so take either.
    msgid: int | str | None = None
    access_token: str | None = None
    expires_in: float | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Answer)


# ---------------------------------------------------------------- sending


def build_send(message: Message) -> tuple[str, bytes]:
    """(path, JSON body) for one message; the access_token goes in the query, not here."""
    if message.kind is MessageKind.SUBSCRIBE:
        sub = _SubscribeBody(
            touser=message.touser,
            template_id=message.template_id,
            data=message.data,
            page=message.page,
            miniprogram_state=message.miniprogram_state,
            lang=message.lang,
        )
        return SUBSCRIBE_SEND_PATH, _encoder.encode(sub)
    if message.kind is MessageKind.OA_SUBSCRIBE:
        biz = _BizsendBody(
            touser=message.touser,
            template_id=message.template_id,
            data=message.data,
            page=message.url,
            miniprogram=message.miniprogram,
        )
        return BIZSEND_PATH, _encoder.encode(biz)
    tpl = _TemplateBody(
        touser=message.touser,
        template_id=message.template_id,
        data=message.data,
        client_msg_id=message.id,
        url=message.url,
        miniprogram=message.miniprogram,
    )
    return TEMPLATE_SEND_PATH, _encoder.encode(tpl)


def _decode(http_status: int, body: bytes) -> _Answer:
    """Decode an answer, or raise OutcomeUnknown: the request was written, its fate unknown."""
    if http_status != 200:
        # WeChat answers 200 even for errors; anything else came from something in between
        # (a proxy, a load balancer). Whether WeChat saw the request is unknown.
        raise OutcomeUnknown(f"HTTP {http_status}")
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError:
        raise OutcomeUnknown(f"unparseable answer ({len(body)} bytes)") from None


def _shape(http_status: int, body: bytes) -> str:
    return f"HTTP {http_status} with {len(body)} bytes"


def _parse_msgid(raw: int | str | None) -> int | None:
    if raw is None or isinstance(raw, int):
        return raw
    try:
        return int(raw.strip())
    except ValueError:
        return None


def parse_send(http_status: int, body: bytes) -> SendAnswer:
    """Classify a send answer. Raises OutcomeUnknown for 5xx / non-JSON; errcodes are returned."""
    answer = _decode(http_status, body)
    return SendAnswer(
        errcode=answer.errcode, errmsg=answer.errmsg, msgid=_parse_msgid(answer.msgid)
    )


def error_for(errcode: int, errmsg: str, context: Context = "send") -> WeChatError:
    """The WeChatError for a non-zero errcode, carrying its disposition (a TokenAnswer when a
    token endpoint gave it)."""
    if context == "token":
        return TokenAnswer(errcode, errmsg, disposition(errcode, context))
    return WeChatError(errcode, errmsg, disposition(errcode, context))


def check_send(answer: SendAnswer) -> int | None:
    """The msgid of a successful answer; raise the errcode's WeChatError otherwise."""
    if answer.errcode != 0:
        raise error_for(answer.errcode, answer.errmsg, "send")
    return answer.msgid


# ---------------------------------------------------------------- tokens


def build_classic_token(app: AppSettings) -> tuple[str, dict[str, str]]:
    """GET /cgi-bin/token: (path, query). The query holds the secret: never log the URL."""
    return TOKEN_PATH, {
        "grant_type": "client_credential",
        "appid": app.appid,
        "secret": app.secret,
    }


def build_stable_token(app: AppSettings, force_refresh: bool = False) -> tuple[str, bytes]:
    """POST /cgi-bin/stable_token: (path, JSON body).

    Normal mode (force_refresh=False) returns the same token while it is valid and never kills
    it, so every process may call it safely; force_refresh is limited to 20/day and kills the
    old token at once, for leaked tokens only.
    """
    body = _StableTokenBody(
        grant_type="client_credential",
        appid=app.appid,
        secret=app.secret,
        force_refresh=force_refresh,
    )
    return STABLE_TOKEN_PATH, _encoder.encode(body)


def parse_token(http_status: int, body: bytes, now: float, url: str = "") -> TokenEntry:
    """TokenEntry(expires_at = now + expires_in), or the errcode's WeChatError (token context).

    `url` (no query: it would hold the secret) is named when the answer is not WeChat's: an
    HTTP 4xx or a 200 that is not JSON means base_url points elsewhere (BadTokenEndpoint,
    `config`), where a retry would only open the breaker and dead-letter every message. A 5xx
    stays a retry: a proxy in between having a bad moment."""
    if http_status < 500:
        try:
            answer = _decode(http_status, body)
        except OutcomeUnknown:
            raise BadTokenEndpoint(
                f"token endpoint {url or '(unknown URL)'} answered "
                f"{_shape(http_status, body)}, not WeChat's JSON: check wechat.base_url"
            ) from None
    else:
        answer = _decode(http_status, body)
    if answer.errcode != 0:
        raise error_for(answer.errcode, answer.errmsg, "token")
    if not answer.access_token or answer.expires_in is None or answer.expires_in <= 0:
        raise WeChatError(-1, "token answer without access_token/expires_in", Disposition.RETRY)
    return TokenEntry(
        access_token=answer.access_token,
        expires_at=now + answer.expires_in,
        fetched_at=now,
    )
