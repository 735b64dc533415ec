"""Pins: short fingerprints by which a box recognises its centre without any CA.

- A TLS pin is the SHA-256 of the centre certificate's SubjectPublicKeyInfo (base64url, no
  padding, 43 characters). It names the TLS key, not the certificate, so the centre can renew
  its certificate with the same key without breaking the boxes that pinned it.
- A key pin is the SHA-256 of the centre's raw Ed25519 signing public key, same encoding.

The box learns both from the claim token or voucher, checks the TLS pin on every connection
(before a byte of the request is sent) and checks the centre's signed claim answer with the
key the key pin names.
"""

from __future__ import annotations

import base64
import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sync.protocol.canonical import b64d
from sync.protocol.errors import ProtocolError

PIN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def _b64url(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def tls_pin_of_der(cert_der: bytes) -> str:
    """The TLS pin of a DER certificate (SHA-256 of its SubjectPublicKeyInfo)."""
    cert = x509.load_der_x509_certificate(cert_der)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _b64url(hashlib.sha256(spki).digest())


def tls_pin_of_pem(cert_pem: bytes) -> str:
    """The TLS pin of the first certificate in a PEM file's bytes."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return tls_pin_of_der(cert.public_bytes(serialization.Encoding.DER))


def key_pin(signing_key_b64: str) -> str:
    """The key pin of an Ed25519 public key given as raw base64 (as the centre sends it)."""
    try:
        raw = b64d(signing_key_b64)
    except ValueError:
        raise ProtocolError("not a base64 signing key") from None
    return _b64url(hashlib.sha256(raw).digest())


def check_pin(pin: str) -> str:
    """`pin` if it has a pin's shape (43 base64url characters), else ProtocolError."""
    if not isinstance(pin, str) or not PIN_RE.match(pin):
        raise ProtocolError("not a ClinicBox pin (43 base64url characters)")
    return pin
