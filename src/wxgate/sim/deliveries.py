"""Every message WeChat accepted, stored compactly so millions of them stay small.

Fixed-size fields live in arrays. openid, client_msg_id and the request body are packed per
delivery and zlib-compressed in blocks of `_BLOCK` (sends are repetitive JSON, so a block
shrinks several-fold). The client_msg_id dedupe index maps a 64-bit hash of
(app, openid, client_msg_id) to the delivery; a hit is confirmed against the stored fields,
and entries are pruned from the oldest end once they leave the 10-minute window.
"""

from __future__ import annotations

import zlib
from array import array
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgspec

KINDS = ("template", "subscribe", "oa_subscribe")  # by the server's kind number
STATUSES = ("success", "failed:user block", "failed: system failed")
_BLOCK = 256
_NO_CMID = 0xFFFFFFFF
_TEMPLATES_MAX = 65_535  # distinct template ids tracked; more share one "(other)" slot


def dedupe_key(appid: str, openid: str, client_msg_id: str) -> int:
    return hash((appid, openid, client_msg_id))


class DeliveryLog:
    def __init__(self, dedupe_window_s: float = 600.0, keep_data: bool = True) -> None:
        self.dedupe_window_s = dedupe_window_s
        self.keep_data = keep_data
        self._decoder = msgspec.json.Decoder()
        self.clear()

    def clear(self) -> None:
        self._times = array("d")
        self._msgids = array("q")
        self._keys = array("q")  # dedupe hash, 0 without client_msg_id
        self._kinds = array("B")
        self._statuses = array("B")
        self._apps = array("H")
        self._tpls = array("H")
        self._app_names: list[str] = []
        self._app_index: dict[str, int] = {}
        self._tpl_names: list[str] = []
        self._tpl_index: dict[str, int] = {}
        # Per delivery: byte lengths of openid, client_msg_id (_NO_CMID = none) and body.
        self._len_openid = array("I")
        self._len_cmid = array("I")
        self._len_body = array("I")
        self._blocks: list[bytes] = []  # sealed, compressed
        self._open: list[bytes] = []  # the block being filled, uncompressed
        self._cache: tuple[int, bytes, array[int]] | None = None  # last unpacked block
        self._dedupe: dict[int, int] = {}
        self._pruned = 0  # deliveries before this index have left the dedupe window

    def __len__(self) -> int:
        return len(self._msgids)

    def __repr__(self) -> str:
        return (
            f"<DeliveryLog deliveries={len(self)} dedupe_keys={len(self._dedupe)} "
            f"blocks={len(self._blocks)}>"
        )

    @staticmethod
    def _slot(name: str, names: list[str], index: dict[str, int], cap: int) -> int:
        n = index.get(name)
        if n is None:
            if len(names) >= cap:
                return cap
            n = index[name] = len(names)
            names.append(name)
        return n

    def add(
        self,
        now: float,
        appid: str,
        kind: int,
        status: int,
        openid: str,
        template_id: str,
        client_msg_id: str | None,
        msgid: int,
        body: bytes,
    ) -> int:
        i = len(self._msgids)
        self._times.append(now)
        self._msgids.append(msgid)
        self._kinds.append(kind)
        self._statuses.append(status)
        self._apps.append(self._slot(appid, self._app_names, self._app_index, 65_535))
        self._tpls.append(self._slot(template_id, self._tpl_names, self._tpl_index, _TEMPLATES_MAX))
        o = openid.encode()
        c = client_msg_id.encode() if client_msg_id is not None else b""
        b = body if self.keep_data else b""
        self._len_openid.append(len(o))
        self._len_cmid.append(len(c) if client_msg_id is not None else _NO_CMID)
        self._len_body.append(len(b))
        self._open.append(o + c + b)
        if len(self._open) == _BLOCK:
            self._blocks.append(zlib.compress(b"".join(self._open), 1))
            self._open = []
        if client_msg_id is None:
            self._keys.append(0)
        else:
            key = dedupe_key(appid, openid, client_msg_id)
            self._keys.append(key)
            self._dedupe[key] = i
        return i

    def find_recent(self, now: float, appid: str, openid: str, client_msg_id: str) -> int | None:
        """The delivery this (app, openid, client_msg_id) produced within the window, if any."""
        self._prune(now)
        i = self._dedupe.get(dedupe_key(appid, openid, client_msg_id))
        if i is None:
            return None
        o, c, _ = self._fields(i)
        same = o == openid and c == client_msg_id and self._app_names[self._apps[i]] == appid
        return i if same else None  # a 64-bit hash collision: treat as new

    def _prune(self, now: float) -> None:
        horizon = now - self.dedupe_window_s
        i, times, n = self._pruned, self._times, len(self._times)
        keys, dedupe = self._keys, self._dedupe
        while i < n and times[i] <= horizon:
            key = keys[i]
            if key and dedupe.get(key) == i:
                del dedupe[key]
            i += 1
        self._pruned = i

    def _raw(self, i: int) -> tuple[bytes, int]:
        """The packed bytes holding delivery i, and where its record starts in them."""
        block = i // _BLOCK
        first = block * _BLOCK
        if block == len(self._blocks):
            return self._open[i - first], 0
        cache = self._cache
        if cache is None or cache[0] != block:
            data = zlib.decompress(self._blocks[block])
            starts = array("I", [0])
            for j in range(first, first + _BLOCK):
                c = self._len_cmid[j]
                size = self._len_openid[j] + (0 if c == _NO_CMID else c) + self._len_body[j]
                starts.append(starts[-1] + size)
            cache = self._cache = (block, data, starts)
        return cache[1], cache[2][i - first]

    def _fields(self, i: int) -> tuple[str, str | None, bytes]:
        data, at = self._raw(i)
        lo, lc, lb = self._len_openid[i], self._len_cmid[i], self._len_body[i]
        openid = data[at : at + lo].decode()
        at += lo
        cmid = None
        if lc != _NO_CMID:
            cmid = data[at : at + lc].decode()
            at += lc
        return openid, cmid, data[at : at + lb]

    def msgid(self, i: int) -> int:
        return self._msgids[i]

    def status(self, i: int) -> int:
        return self._statuses[i]

    def indices(
        self,
        openid: str | None = None,
        app: str | None = None,
        client_msg_id: str | None = None,
    ) -> Iterator[int]:
        app_no = self._app_index.get(app, -1) if app is not None else None
        if app_no == -1:
            return
        needle = (openid or client_msg_id or "").encode()
        n = len(self._msgids)
        for first in range(0, n, _BLOCK):
            if needle:
                block = first // _BLOCK
                if block == len(self._blocks):
                    data = b"".join(self._open)
                else:
                    data, _ = self._raw(first)
                if needle not in data:
                    continue  # skips a whole block without unpacking its records
            for i in range(first, min(first + _BLOCK, n)):
                if app_no is not None and self._apps[i] != app_no:
                    continue
                if needle:
                    o, c, _ = self._fields(i)
                    if openid is not None and o != openid:
                        continue
                    if client_msg_id is not None and c != client_msg_id:
                        continue
                yield i

    def duplicate_indices(self) -> list[int]:
        """Deliveries whose (app, openid, client_msg_id) reached the user more than once."""
        counts = Counter(k for k in self._keys if k)
        suspects = [i for i, k in enumerate(self._keys) if k and counts[k] > 1]
        # Confirm with the real fields, so a hash collision is not reported as a duplicate.
        exact: Counter[tuple[int, str, str | None]] = Counter()
        fields = {}
        for i in suspects:
            o, c, _ = self._fields(i)
            fields[i] = (self._apps[i], o, c)
            exact[fields[i]] += 1
        return [i for i in suspects if exact[fields[i]] > 1]

    def record(self, i: int) -> dict[str, Any]:
        openid, cmid, body = self._fields(i)
        fields: dict[str, Any] = {}
        if body:
            try:
                decoded = self._decoder.decode(body)
            except msgspec.DecodeError:
                decoded = None
            if isinstance(decoded, dict):
                fields = decoded
        tpl = self._tpls[i]
        out: dict[str, Any] = {
            "app": self._app_names[self._apps[i]],
            "openid": openid,
            "template_id": fields.get("template_id")
            or (self._tpl_names[tpl] if tpl < len(self._tpl_names) else None),
            "data": fields.get("data"),
            "client_msg_id": cmid,
            "msgid": self._msgids[i],
            "kind": KINDS[self._kinds[i]],
            "status": STATUSES[self._statuses[i]],
            "time": self._times[i],
        }
        for extra in ("url", "miniprogram", "page", "miniprogram_state", "lang"):
            if extra in fields:
                out[extra] = fields[extra]
        return out
