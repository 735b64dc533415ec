"""The sync wire format, shared by the box's agent and the central server.

- `canonical`: canonical JSON (sorted keys, no spaces, UTF-8) used for everything signed.
- `signing`: Ed25519 request signatures and signed documents (receipts, changes, vouchers).
- `sealing`: zlib then X25519 ECDH + HKDF-SHA256 + AES-256-GCM to the centre's key.
- `bundle`: courier bundles and receipt files for links that do not exist.
"""

from sync.protocol.canonical import canonical_json
from sync.protocol.errors import ProtocolError

__all__ = ["ProtocolError", "canonical_json"]
