"""The centre's two key pairs: Ed25519 to sign receipts/changes/vouchers, X25519 to open seals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.files import write_private
from sync.protocol.sealing import sealing_key_b64
from sync.protocol.signing import public_key_b64

SIGNING_FILE = "centre-ed25519.pem"
SEALING_FILE = "centre-x25519.pem"


def _load_or_make(
    path: Path, make: type[Ed25519PrivateKey] | type[X25519PrivateKey]
) -> object:
    if path.exists():
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    key = make.generate()
    write_private(path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return key


@dataclass(frozen=True)
class CentreKeys:
    """The centre's private keys and their public halves as sent to boxes."""

    signing: Ed25519PrivateKey
    sealing: X25519PrivateKey

    @property
    def signing_public_b64(self) -> str:
        return public_key_b64(self.signing.public_key())

    @property
    def sealing_public_b64(self) -> str:
        return sealing_key_b64(self.sealing.public_key())

    @classmethod
    def load_or_create(cls, data_dir: Path) -> CentreKeys:
        data_dir.mkdir(parents=True, exist_ok=True)
        signing = _load_or_make(data_dir / SIGNING_FILE, Ed25519PrivateKey)
        sealing = _load_or_make(data_dir / SEALING_FILE, X25519PrivateKey)
        if not isinstance(signing, Ed25519PrivateKey) or not isinstance(sealing, X25519PrivateKey):
            raise ValueError(f"the key files in {data_dir} hold the wrong key types")
        return cls(signing, sealing)
