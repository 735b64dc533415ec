"""The device identity: an Ed25519 key pair made once per box, kept 0600 in the secrets dir.

The fingerprint (first 16 hex digits of SHA-256 over the raw public key) names the box in
mDNS adverts, the technician's tools and the central server's device registry.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.files import write_private

KEY_FILE = "device-ed25519.pem"


def fingerprint_of(public_key: Ed25519PublicKey) -> str:
    """Short, stable, non-secret name of a device key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class DeviceIdentity:
    """The box's signing key and the names derived from it."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_key_b64(self) -> str:
        raw = self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode()

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    @classmethod
    def load_or_create(cls, secrets_dir: Path) -> DeviceIdentity:
        """Load the key from `secrets_dir`, making it (0600) on first use."""
        path = secrets_dir / KEY_FILE
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{path} does not hold an Ed25519 key")
            return cls(key)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(path, pem)
        return cls(key)
