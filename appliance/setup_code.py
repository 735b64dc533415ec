"""The one-time setup code printed at first start: no default password anywhere.

Only a salted hash is kept on disk (0600). A code works once; after too many wrong tries it
stops working until the service is restarted, which prints a fresh code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from pathlib import Path

from appliance.files import write_private

# No 0/O, 1/I/L: the code is read off a console and typed on a tablet.
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
MAX_FAILURES = 10


def _digest(salt: bytes, code: str) -> str:
    normalised = code.strip().upper().replace("-", "").replace(" ", "")
    return hashlib.scrypt(normalised.encode(), salt=salt, n=2**14, r=8, p=1).hex()


class SetupCode:
    """Issues and checks the single-use setup code stored (hashed) at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._failures = 0

    def issue(self) -> str:
        """Make a new code, replacing any earlier one, and return it for printing once."""
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        code = f"{raw[:5]}-{raw[5:]}"
        salt = secrets.token_bytes(16)
        record = {"salt": salt.hex(), "hash": _digest(salt, code)}
        with self._lock:
            write_private(self.path, json.dumps(record).encode())
            self._failures = 0
        return code

    def pending(self) -> bool:
        return self.path.exists()

    def redeem(self, code: str) -> bool:
        """True once for the right code; the code is then gone. False otherwise."""
        with self._lock:
            if self._failures >= MAX_FAILURES:
                return False
            try:
                record = json.loads(self.path.read_text())
            except (OSError, ValueError):
                return False
            candidate = _digest(bytes.fromhex(record["salt"]), code)
            if not hmac.compare_digest(candidate, record["hash"]):
                self._failures += 1
                return False
            self.path.unlink(missing_ok=True)
            return True
