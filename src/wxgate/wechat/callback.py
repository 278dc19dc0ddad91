"""WeChat callbacks: URL verification and event pushes (wechat-api.md section 5).

Checks the signature (plain) or msg_signature (AES safe mode), decrypts, parses the XML with
no DTDs allowed, and turns TEMPLATESENDJOBFINISH / subscribe_msg_sent_event into Receipts.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping

import msgspec

from wxgate.errors import WxgateError
from wxgate.settings import AppSettings
from wxgate.wechat import crypto

MAX_BODY_BYTES = 64 * 1024  # real pushes are well under 2 KiB

# WeChat gives up after 3 tries 5 s apart, so a genuine push is seconds old. The window is
# still wide because it only guards against replays, and a replayed (validly signed) receipt
# is harmless: receipts are applied idempotently by event_key. A tight window would instead
# reject genuine pushes whenever our clock or WeChat's drifts.
DEFAULT_MAX_AGE_S = 86_400.0

# Any markup declaration except CDATA sections and comments: DOCTYPE, ENTITY, ELEMENT, ...
# Without a DTD there are no entities to expand, so no billion laughs and no external fetches.
_DECLARATION = re.compile(r"<!(?!\[CDATA\[|--)")


class CallbackError(WxgateError):
    """A callback request failed a check (signature, timestamp, size, XML, appid)."""


class Receipt(msgspec.Struct, frozen=True):
    """The outcome WeChat reports for one sent message."""

    msgid: int
    openid: str
    status: str  # "success", "failed:user block", "failed: system failed", ...
    event_key: str  # FromUserName:CreateTime:MsgID, to drop WeChat's retries of the same push
    create_time: int


# ---------------------------------------------------------------- URL verification


def verify_url(token: str, signature: str, timestamp: str, nonce: str, echostr: str) -> str:
    """The echostr to answer verbatim when sha1(sorted [token, timestamp, nonce]) matches."""
    if not crypto.check_signature(signature, token, timestamp, nonce):
        raise CallbackError("bad signature")
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


def _fields(element: ET.Element) -> dict[str, str]:
    """Direct children as {lower-case tag: stripped text}: MsgID and MsgId both read as msgid."""
    return {child.tag.lower(): (child.text or "").strip() for child in element}


def _children(element: ET.Element, tag: str) -> list[ET.Element]:
    return [child for child in element if child.tag.lower() == tag]


def _int(fields: Mapping[str, str], name: str) -> int:
    try:
        return int(fields[name])
    except (KeyError, ValueError):
        raise CallbackError(f"{name}: missing or not an integer") from None


def normalise_status(raw: str) -> str:
    """Canonical receipt status: WeChat's own spellings, whatever whitespace arrived.

    "failed:user block" has no space and "failed: system failed" has one (wechat-api.md 5.3);
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


def _check_age(timestamp: str, now: float | None, max_age_s: float | None) -> None:
    if max_age_s is None:
        return
    try:
        sent = int(timestamp)
    except ValueError:
        raise CallbackError("timestamp: not an integer") from None
    current = time.time() if now is None else now
    if abs(current - sent) > max_age_s:
        raise CallbackError("timestamp outside the accepted window")


def _open_envelope(app: AppSettings, query: Mapping[str, str], body: bytes) -> ET.Element:
    """Check the signature and return the plaintext event XML (decrypted in safe mode)."""
    token = app.callback_token
    timestamp = query.get("timestamp", "")
    nonce = query.get("nonce", "")
    if query.get("encrypt_type", "raw").lower() == "aes":
        outer = parse_xml(body)
        if not app.encoding_aes_key:
            raise CallbackError("AES push but the app has no encoding_aes_key")
        encrypted = _fields(outer).get("encrypt", "")
        if not encrypted:
            raise CallbackError("AES push without Encrypt")
        msg_signature = query.get("msg_signature", "")
        if not crypto.check_signature(msg_signature, token, timestamp, nonce, encrypted):
            raise CallbackError("bad msg_signature")
        try:
            plain = crypto.decrypt(app.encoding_aes_key, app.appid, encrypted)
        except crypto.CryptoError as exc:
            raise CallbackError(f"cannot decrypt: {exc}") from None
        return parse_xml(plain)
    # Plain mode: the signature does not cover the body, but checking it before parsing keeps
    # unauthenticated senders away from the XML parser.
    if not crypto.check_signature(query.get("signature", ""), token, timestamp, nonce):
        raise CallbackError("bad signature")
    return parse_xml(body)


def _template_receipt(fields: Mapping[str, str]) -> Receipt:
    openid = fields.get("fromusername", "")
    create_time = _int(fields, "createtime")
    msgid = _int(fields, "msgid")
    return Receipt(
        msgid=msgid,
        openid=openid,
        status=normalise_status(fields.get("status", "")),
        event_key=f"{openid}:{create_time}:{msgid}",
        create_time=create_time,
    )


def _subscribe_receipts(root: ET.Element, fields: Mapping[str, str]) -> list[Receipt]:
    openid = fields.get("fromusername", "")
    create_time = _int(fields, "createtime")
    receipts = []
    for event in _children(root, "subscribemsgsentevent"):
        for item in _children(event, "list"):  # one <List> or several
            entry = _fields(item)
            msgid = _int(entry, "msgid")
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
                )
            )
    return receipts


def parse_push(
    app: AppSettings,
    query: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    max_age_s: float | None = DEFAULT_MAX_AGE_S,
) -> list[Receipt]:
    """Receipts in a verified push; [] for events that carry none. Raises CallbackError.

    `now` defaults to the wall clock; `max_age_s=None` turns the timestamp check off.
    """
    root = _open_envelope(app, query, body)
    _check_age(query.get("timestamp", ""), now, max_age_s)
    fields = _fields(root)
    if fields.get("msgtype", "").lower() != "event":
        return []
    event = fields.get("event", "").lower()
    if event == "templatesendjobfinish":
        return [_template_receipt(fields)]
    if event == "subscribe_msg_sent_event":
        return _subscribe_receipts(root, fields)
    return []
