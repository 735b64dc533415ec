"""Seal a payload to the centre: zlib, then X25519 ECDH + HKDF-SHA256 + AES-256-GCM.

Sealed blob: `version (1) | ephemeral X25519 public key (32) | nonce (12) | ciphertext+tag`.
A fresh ephemeral key per message means a fresh AES key per message. The associated data
names the sending device, so a blob cannot be replayed under another device's signature.
A TLS-terminating proxy in between sees only this blob.
"""

from __future__ import annotations

import os
import zlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sync.protocol.canonical import b64d, b64e
from sync.protocol.errors import ProtocolError, TooLarge

VERSION = 1
INFO = b"clinicbox/sync/seal/v1"
_CHUNK = 64 * 1024


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=INFO)
    return hkdf.derive(shared)


def seal(recipient: X25519PublicKey, plaintext: bytes, aad: bytes) -> bytes:
    """Compress and encrypt `plaintext` so only the holder of `recipient`'s key can read it."""
    ephemeral = X25519PrivateKey.generate()
    eph_raw = _raw(ephemeral.public_key())
    key = _key(ephemeral.exchange(recipient), eph_raw, _raw(recipient))
    nonce = os.urandom(12)
    body = AESGCM(key).encrypt(nonce, zlib.compress(plaintext, 6), aad)
    return bytes([VERSION]) + eph_raw + nonce + body


def open_sealed(private_key: X25519PrivateKey, blob: bytes, aad: bytes,
                max_plaintext: int) -> bytes:
    """The plaintext of a sealed blob, or ProtocolError (TooLarge past `max_plaintext`)."""
    if len(blob) < 1 + 32 + 12 + 16 or blob[0] != VERSION:
        raise ProtocolError("not a sealed payload (wrong version or too short)")
    eph_raw, nonce, body = blob[1:33], blob[33:45], blob[45:]
    recipient = _raw(private_key.public_key())
    try:
        ephemeral = X25519PublicKey.from_public_bytes(eph_raw)
        key = _key(private_key.exchange(ephemeral), eph_raw, recipient)
        compressed = AESGCM(key).decrypt(nonce, body, aad)
    except (InvalidTag, ValueError):
        raise ProtocolError("sealed payload does not decrypt (tampered, or sealed to another key)"
                            ) from None
    return inflate_bounded(compressed, max_plaintext)


def inflate_bounded(compressed: bytes, limit: int) -> bytes:
    """Inflate zlib data as a stream, stopping (TooLarge) as soon as it passes `limit` bytes.

    Memory stays near `limit` whatever the ratio: a 255 KB body that would inflate to
    250 MB is refused after `limit` bytes, not after 250 MB.
    """
    inflater = zlib.decompressobj()
    out = bytearray()
    data = compressed
    try:
        while data:
            out += inflater.decompress(data, _CHUNK)
            if len(out) > limit:
                raise TooLarge(f"payload inflates beyond {limit // (1024 * 1024)} MiB; "
                               "send smaller batches")
            data = inflater.unconsumed_tail
        out += inflater.flush()
    except zlib.error:
        raise ProtocolError("sealed payload is not valid zlib") from None
    if len(out) > limit:
        raise TooLarge(f"payload inflates beyond {limit // (1024 * 1024)} MiB; "
                       "send smaller batches")
    if not inflater.eof:
        raise ProtocolError("sealed payload is truncated zlib")
    return bytes(out)


def sealing_key_b64(key: X25519PublicKey) -> str:
    return b64e(_raw(key))


def load_sealing_key(text: str) -> X25519PublicKey:
    """An X25519 public key from raw base64, or ProtocolError."""
    try:
        raw = b64d(text)
        if len(raw) != 32:
            raise ValueError
        return X25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError):
        raise ProtocolError("not an X25519 public key (32 raw bytes, base64)") from None
