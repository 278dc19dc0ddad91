"""WeChat callbacks: URL verification and event pushes (docs/wechat-api.md §5).

Checks the signature (plain) or msg_signature (AES safe mode), decrypts, parses the XML with
no DTDs allowed (or the JSON a mini program may choose instead: the same field names, `List`
an object for one item and an array for several), and turns TEMPLATESENDJOBFINISH /
subscribe_msg_sent_event into Receipts.
"""

from __future__ import annotations

import hashlib
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping

import msgspec

from wxgate.errors import WxgateError
from wxgate.settings import AppSettings
from wxgate.wechat import crypto

MAX_BODY_BYTES = 64 * 1024  # real pushes are well under 2 KiB

# WeChat gives up after 3 tries 5 s apart, so a genuine push is seconds old; the window only
# has to absorb clock skew (either way). It bounds how long a captured, validly signed push
# URL can be replayed, and the nonces the store must remember: in plain mode the signature
# does not cover the body, so a replay with a forged body is NOT harmless (it could turn a
# `sent` message `failed`); the route refuses it by its remembered (timestamp, nonce).
DEFAULT_MAX_SKEW_S = 300.0

MSGID_LIMIT = 1 << 64  # WeChat msgids are unsigned 64-bit; the store keeps exactly that range
_DIGITS = re.compile(r"[0-9]{1,20}")  # int() also takes "+1", " 1", "1_0", non-ASCII digits
_MAX_NONCE_CHARS = 128

# Any markup declaration except CDATA sections and comments: DOCTYPE, ENTITY, ELEMENT, ...
# Without a DTD there are no entities to expand, so no billion laughs and no external fetches.
_DECLARATION = re.compile(r"<!(?!\[CDATA\[|--)")


class CallbackError(WxgateError):
    """A callback request failed a check (signature, timestamp, size, XML, appid).

    `forbidden`: the request is not (or no longer) authentic: a bad signature, a stale
    timestamp, a plain push to an AES app. Else it is signed but unreadable.
    """

    def __init__(self, reason: str, *, forbidden: bool = False) -> None:
        super().__init__(reason)
        self.forbidden = forbidden


class Receipt(msgspec.Struct, frozen=True):
    """The outcome WeChat reports for one sent message."""

    msgid: int
    openid: str
    status: str  # "success", "failed:user block", "failed: system failed", ...
    event_key: str  # FromUserName:CreateTime:MsgID, to drop WeChat's retries of the same push
    create_time: int
    # A subscribe_msg_sent_event's TemplateId: links the receipt when no message has its
    # msgid (the send answered without one; policy/receipt_links.py). None for templates.
    template_id: str | None = None


# ---------------------------------------------------------------- URL verification


def verify_url(token: str, signature: str, timestamp: str, nonce: str, echostr: str) -> str:
    """The echostr to answer verbatim when sha1(sorted [token, timestamp, nonce]) matches."""
    if not crypto.check_signature(signature, token, timestamp, nonce):
        raise CallbackError("bad signature", forbidden=True)
    return echostr


# ---------------------------------------------------------------- XML


def parse_xml(body: bytes, max_bytes: int = MAX_BODY_BYTES) -> ET.Element:
    """Parse untrusted XML: size-bounded, UTF-8 only, no DOCTYPE or other declarations."""
    if len(body) > max_bytes:
        raise CallbackError(f"body over {max_bytes} bytes")
    try:
        # Decode first and parse the str: a declared encoding (UTF-16, ...) cannot then
        # smuggle a DOCTYPE past the check below.
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CallbackError("body is not UTF-8") from None
    if _DECLARATION.search(text):
        raise CallbackError("XML declarations (DOCTYPE/ENTITY) are not accepted")
    try:
        return ET.fromstring(text)
    except ET.ParseError:
        raise CallbackError("malformed XML") from None


def _is_json(body: bytes) -> bool:
    return body.lstrip()[:1] == b"{"


def _element(tag: str, value: object, depth: int = 0) -> ET.Element:
    """A JSON value as the XML WeChat would have pushed: objects are children, arrays
    repeated children of one tag, scalars text. So both formats share one reader."""
    if depth > 8:
        raise CallbackError("JSON nested too deeply")
    element = ET.Element(tag)
    if isinstance(value, dict):
        for key, item in value.items():
            for one in item if isinstance(item, list) else [item]:
                element.append(_element(str(key), one, depth + 1))
    elif value is not None:
        element.text = str(value).lower() if isinstance(value, bool) else str(value)
    return element


def parse_json(body: bytes, max_bytes: int = MAX_BODY_BYTES) -> ET.Element:
    """Parse an untrusted JSON push (size-bounded, an object) into parse_xml's shape."""
    if len(body) > max_bytes:
        raise CallbackError(f"body over {max_bytes} bytes")
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise CallbackError("malformed JSON") from None
    if not isinstance(raw, dict):
        raise CallbackError("JSON push is not an object")
    return _element("xml", raw)


def parse_event(body: bytes, max_bytes: int = MAX_BODY_BYTES) -> ET.Element:
    """A push body in either format WeChat sends: JSON when it starts with `{`, else XML."""
    return parse_json(body, max_bytes) if _is_json(body) else parse_xml(body, max_bytes)


def _fields(element: ET.Element) -> dict[str, str]:
    """Direct children as {lower-case tag: stripped text}: MsgID and MsgId both read as msgid."""
    return {child.tag.lower(): (child.text or "").strip() for child in element}


def _children(element: ET.Element, tag: str) -> list[ET.Element]:
    return [child for child in element if child.tag.lower() == tag]


def _uint(fields: Mapping[str, str], name: str, limit: int = MSGID_LIMIT) -> int:
    """A decimal in [0, limit): a MsgID of 2**64 or -1 is a 400 here, not an OverflowError
    where the store binds it to a 64-bit column."""
    text = fields.get(name, "")
    if not _DIGITS.fullmatch(text) or int(text) >= limit:
        raise CallbackError(f"{name}: missing or not an integer in [0, {limit})")
    return int(text)


def normalise_status(raw: str) -> str:
    """Canonical receipt status: WeChat's own spellings, whatever whitespace arrived.

    "failed:user block" has no space and "failed: system failed" has one (docs/wechat-api.md §5.3);
    some builds send "failed: user block", so spacing is rebuilt from the words.
    """
    text = " ".join(raw.split())
    lower = text.lower()
    if lower == "success":
        return "success"
    if lower.startswith("failed"):
        rest = text[len("failed") :].lstrip(" :").strip()
        if rest.lower() == "user block":
            return "failed:user block"
        return f"failed: {rest}" if rest else "failed"
    return text


# ---------------------------------------------------------------- pushes


class Choice(msgspec.Struct, frozen=True):
    """A user's accept or reject of one subscribe template (subscribe_msg_popup_event, or
    subscribe_msg_change_event, which reports rejections only)."""

    openid: str
    template_id: str
    accepted: bool
    create_time: int


class Push(msgspec.Struct, frozen=True):
    """A verified push: its receipts, and what tells a retry of it from a forged replay."""

    receipts: list[Receipt]
    timestamp: int
    nonce: str
    # sha256 (hex) of the event XML, decrypted in safe mode: a push sent again (WeChat's retry,
    # or a replay of the captured request) has the same digest, a forged body does not.
    digest: str
    choices: list[Choice] = msgspec.field(default_factory=list)


def _timestamp(query: Mapping[str, str], now: float | None, max_skew_s: float | None) -> int:
    text = query.get("timestamp", "")
    if not _DIGITS.fullmatch(text):
        raise CallbackError("timestamp: missing or not an integer", forbidden=True)
    sent = int(text)
    current = time.time() if now is None else now
    if max_skew_s is not None and abs(current - sent) > max_skew_s:
        raise CallbackError("timestamp outside the accepted window", forbidden=True)
    return sent


def _nonce(query: Mapping[str, str]) -> str:
    nonce = query.get("nonce", "")
    if not nonce or len(nonce) > _MAX_NONCE_CHARS:
        raise CallbackError(f"nonce: missing or over {_MAX_NONCE_CHARS} characters")
    return nonce


def _open_envelope(app: AppSettings, query: Mapping[str, str], body: bytes) -> bytes:
    """Check the signature and return the plaintext event XML (decrypted in safe mode)."""
    token = app.callback_token
    timestamp = query.get("timestamp", "")
    nonce = query.get("nonce", "")
    if query.get("encrypt_type", "raw").lower() == "aes":
        outer = parse_event(body)
        if not app.encoding_aes_key:
            raise CallbackError("AES push but the app has no encoding_aes_key")
        encrypted = _fields(outer).get("encrypt", "")
        if not encrypted:
            raise CallbackError("AES push without Encrypt")
        msg_signature = query.get("msg_signature", "")
        if not crypto.check_signature(msg_signature, token, timestamp, nonce, encrypted):
            raise CallbackError("bad msg_signature", forbidden=True)
        try:
            return crypto.decrypt(app.encoding_aes_key, app.appid, encrypted)
        except crypto.CryptoError as exc:
            raise CallbackError(f"cannot decrypt: {exc}") from None
    if app.encoding_aes_key:
        # WeChat's compatible and safe modes both send encrypt_type=aes. A plain push to an
        # app with a key is someone using the unsigned-body mode to get around msg_signature.
        raise CallbackError("plain push to an app in AES safe mode", forbidden=True)
    # Plain mode: the signature does not cover the body (a captured URL signs any body; the
    # timestamp window and the remembered nonce limit it), but checking it before parsing
    # keeps unauthenticated senders away from the XML parser.
    if not crypto.check_signature(query.get("signature", ""), token, timestamp, nonce):
        raise CallbackError("bad signature", forbidden=True)
    return body


def _openid(fields: Mapping[str, str]) -> str:
    """The event's FromUserName: the recipient a receipt must match (never empty)."""
    openid = fields.get("fromusername", "")
    if not openid:
        raise CallbackError("FromUserName: missing")
    return openid


def _template_receipt(fields: Mapping[str, str]) -> Receipt:
    openid = _openid(fields)
    create_time = _uint(fields, "createtime")
    msgid = _uint(fields, "msgid")
    return Receipt(
        msgid=msgid,
        openid=openid,
        status=normalise_status(fields.get("status", "")),
        event_key=f"{openid}:{create_time}:{msgid}",
        create_time=create_time,
    )


def _subscribe_receipts(root: ET.Element, fields: Mapping[str, str]) -> list[Receipt]:
    openid = _openid(fields)
    create_time = _uint(fields, "createtime")
    receipts = []
    for event in _children(root, "subscribemsgsentevent"):
        for item in _children(event, "list"):  # one <List> or several
            entry = _fields(item)
            msgid = _uint(entry, "msgid")
            template_id = entry.get("templateid") or None
            if template_id is not None and len(template_id) > 128:
                raise CallbackError("TemplateId: over 128 characters")
            code = entry.get("errorcode", "0")
            error_status = entry.get("errorstatus", "")
            if code == "0":
                status = "success"
            elif error_status.lower().startswith("failed"):
                status = normalise_status(error_status)
            else:
                status = f"failed: {error_status or 'errorcode ' + code}"
            receipts.append(
                Receipt(
                    msgid=msgid,
                    openid=openid,
                    status=status,
                    event_key=f"{openid}:{create_time}:{msgid}",
                    create_time=create_time,
                    template_id=template_id,
                )
            )
    return receipts


def open_push(
    app: AppSettings,
    query: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    max_skew_s: float | None = DEFAULT_MAX_SKEW_S,
) -> Push:
    """Verify a push (signature, mode, timestamp) and read its receipts. Raises CallbackError.

    `now` defaults to the wall clock; `max_skew_s=None` turns the timestamp check off.
    """
    plain = _open_envelope(app, query, body)
    timestamp = _timestamp(query, now, max_skew_s)
    nonce = _nonce(query)
    root = parse_event(plain)
    digest = hashlib.sha256(plain).hexdigest()
    return Push(_receipts(root), timestamp, nonce, digest, _choices(root))


_CHOICE_EVENTS = {
    "subscribe_msg_popup_event": "subscribemsgpopupevent",
    "subscribe_msg_change_event": "subscribemsgchangeevent",
}


def _choices(root: ET.Element) -> list[Choice]:
    """accept/reject per template from a popup or change event (docs/wechat-api.md §5.4)."""
    fields = _fields(root)
    if fields.get("msgtype", "").lower() != "event":
        return []
    wrapper = _CHOICE_EVENTS.get(fields.get("event", "").lower())
    if wrapper is None:
        return []
    openid = _openid(fields)
    create_time = _uint(fields, "createtime")
    out = []
    for event in _children(root, wrapper):
        for item in _children(event, "list"):
            entry = _fields(item)
            template_id = entry.get("templateid", "")
            if not template_id or len(template_id) > 128:
                raise CallbackError("TemplateId: missing or over 128 characters")
            status = entry.get("subscribestatusstring", "").lower()
            if status not in ("accept", "reject"):
                continue  # e.g. "ban" (the template was banned): not the user's choice
            out.append(Choice(openid, template_id, status == "accept", create_time))
    return out


def _receipts(root: ET.Element) -> list[Receipt]:
    fields = _fields(root)
    if fields.get("msgtype", "").lower() != "event":
        return []
    event = fields.get("event", "").lower()
    if event == "templatesendjobfinish":
        return [_template_receipt(fields)]
    if event == "subscribe_msg_sent_event":
        return _subscribe_receipts(root, fields)
    return []


def parse_push(
    app: AppSettings,
    query: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    max_age_s: float | None = DEFAULT_MAX_SKEW_S,
) -> list[Receipt]:
    """The receipts of `open_push` (for callers that do not check replays themselves)."""
    return open_push(app, query, body, now=now, max_skew_s=max_age_s).receipts
