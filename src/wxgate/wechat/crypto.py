"""WeChat's callback signature and AES safe-mode primitives (docs/wechat-api.md §5.1, §5.5).

The only code the simulator shares with the client, so it is checked against known vectors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_BLOCK = 32  # WeChat pads PKCS#7 to 32 bytes, not AES's 16


class CryptoError(ValueError):
    """A signature, key, padding or appid did not check out."""


def signature(*parts: str) -> str:
    """sha1 of the parts sorted lexicographically and concatenated (signature, msg_signature)."""
    # surrogatepass: a query value with a lone surrogate must fail the compare, not raise.
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8", "surrogatepass")).hexdigest()


def check_signature(expected: str, *parts: str) -> bool:
    """Constant-time compare as bytes: compare_digest raises TypeError on a non-ASCII str, and
    `expected` comes from the query string of an unauthenticated request."""
    given = expected.lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(signature(*parts).encode("ascii"), given)


def aes_key(encoding_aes_key: str) -> bytes:
    if len(encoding_aes_key) != 43:
        raise CryptoError("EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=")
    except ValueError:
        raise CryptoError("EncodingAESKey is not base64") from None
    if len(key) != 32:
        raise CryptoError("EncodingAESKey must decode to 32 bytes")
    return key


def _pad(data: bytes) -> bytes:
    n = _BLOCK - len(data) % _BLOCK
    return data + bytes([n]) * n


def _unpad(data: bytes) -> bytes:
    if not data:
        raise CryptoError("empty plaintext")
    n = data[-1]
    if not 1 <= n <= _BLOCK or len(data) < n:
        raise CryptoError("bad padding")
    return data[:-n]


def encrypt(encoding_aes_key: str, appid: str, message: bytes, nonce16: bytes | None = None) -> str:
    """base64(AES-256-CBC(random16 + len(msg) + msg + appid)) with IV = key[:16]."""
    key = aes_key(encoding_aes_key)
    rand = nonce16 if nonce16 is not None else os.urandom(16)
    plain = _pad(rand + struct.pack(">I", len(message)) + message + appid.encode("utf-8"))
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode("ascii")


def decrypt(encoding_aes_key: str, appid: str, encrypted: str) -> bytes:
    """The inverse of `encrypt`; raises CryptoError when the trailing appid is not `appid`."""
    key = aes_key(encoding_aes_key)
    try:
        raw = base64.b64decode(encrypted, validate=True)
    except ValueError:
        raise CryptoError("Encrypt is not base64") from None
    if not raw or len(raw) % 16:
        raise CryptoError("ciphertext length is not a multiple of 16")
    dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = _unpad(dec.update(raw) + dec.finalize())
    if len(plain) < 20:
        raise CryptoError("plaintext too short")
    (length,) = struct.unpack(">I", plain[16:20])
    body, tail = plain[20 : 20 + length], plain[20 + length :]
    if len(body) != length:
        raise CryptoError("length field exceeds plaintext")
    if tail.decode("utf-8", "replace") != appid:
        raise CryptoError("appid mismatch")
    return body
