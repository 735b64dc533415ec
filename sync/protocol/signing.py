"""Ed25519 signatures: requests from a box, documents (receipts, changes, vouchers) from the centre.

A request signature covers `METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nSHA256(BODY)`, so neither the
body nor the target can be swapped, and the centre refuses stale timestamps and nonces it has
already seen (replays). A signed document is `{"document": {...}, "signature": b64}` where the
signature covers the document's canonical JSON.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync.protocol.canonical import b64d, b64e, canonical_json
from sync.protocol.errors import ProtocolError

H_DEVICE = "X-CB-Device"
H_TIMESTAMP = "X-CB-Timestamp"
H_NONCE = "X-CB-Nonce"
H_SIGNATURE = "X-CB-Signature"
# A request older or newer than this is refused; the centre keeps nonces this long.
MAX_SKEW_S = 300.0


def request_message(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The bytes a request signature covers."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join([method.upper(), path, timestamp, nonce, digest]).encode()


def sign_request(
    sign: Callable[[bytes], bytes], device_id: str, method: str, path: str, body: bytes,
    now: float | None = None,
) -> dict[str, str]:
    """The headers that authenticate one request (fresh nonce each call)."""
    timestamp = f"{time.time() if now is None else now:.3f}"
    nonce = os.urandom(16).hex()
    signature = sign(request_message(method, path, timestamp, nonce, body))
    return {
        H_DEVICE: device_id,
        H_TIMESTAMP: timestamp,
        H_NONCE: nonce,
        H_SIGNATURE: b64e(signature),
    }


class HeaderLookup(Protocol):
    """Request headers as a server framework offers them (a dict, werkzeug's `Headers`)."""

    def get(self, key: str, default: str) -> str: ...


def verify_request(
    public_key: Ed25519PublicKey, headers: HeaderLookup, method: str, path: str,
    body: bytes, now: float | None = None, max_skew_s: float = MAX_SKEW_S,
) -> tuple[float, str]:
    """Check a request's signature and freshness; return (timestamp, nonce) or ProtocolError.

    The caller must still refuse a nonce it has seen before.
    """
    timestamp, nonce = headers.get(H_TIMESTAMP, ""), headers.get(H_NONCE, "")
    try:
        ts = float(timestamp)
        signature = b64d(headers.get(H_SIGNATURE, ""))
    except ValueError:
        raise ProtocolError("malformed signature headers") from None
    if not (16 <= len(nonce) <= 64) or not nonce.isalnum():
        raise ProtocolError("malformed nonce")
    current = time.time() if now is None else now
    if abs(current - ts) > max_skew_s:
        raise ProtocolError(f"stale timestamp (clock off by {current - ts:+.0f} s)")
    try:
        public_key.verify(signature, request_message(method, path, timestamp, nonce, body))
    except InvalidSignature:
        raise ProtocolError("bad request signature") from None
    return ts, nonce


def sign_document(
    signer: Ed25519PrivateKey | Callable[[bytes], bytes], document: dict[str, Any]
) -> dict[str, Any]:
    """Wrap `document` with a signature over its canonical JSON (a key or a sign function)."""
    sign = signer.sign if isinstance(signer, Ed25519PrivateKey) else signer
    return {"document": document, "signature": b64e(sign(canonical_json(document)))}


def verify_document(public_key: Ed25519PublicKey, envelope: Any) -> dict[str, Any]:
    """The document inside a signed envelope, or ProtocolError (unsigned, foreign, altered)."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("document"), dict):
        raise ProtocolError("not a signed document")
    if not isinstance(envelope.get("signature"), str):
        raise ProtocolError("unsigned document")
    try:
        signature = b64d(envelope["signature"])
        public_key.verify(signature, canonical_json(envelope["document"]))
    except (ValueError, InvalidSignature):
        raise ProtocolError("document signature does not verify with the expected key") from None
    return envelope["document"]


def public_key_b64(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return b64e(raw)


def load_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from raw base64, or ProtocolError."""
    try:
        raw = b64d(text)
        if len(raw) != 32:
            raise ValueError
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError):
        raise ProtocolError("not an Ed25519 public key (32 raw bytes, base64)") from None
