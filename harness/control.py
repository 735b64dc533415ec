"""The client side of the link emulator's control socket (one JSON line each way)."""

from __future__ import annotations

import json
import socket
from typing import Any


class ControlError(RuntimeError):
    """The emulator refused a request or did not answer."""


def request(control_path: str, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the emulator listening on control_path and return its reply."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(control_path)
            sock.sendall(json.dumps(message).encode() + b"\n")
            line = sock.makefile("rb").readline(1 << 20)
    except OSError as exc:
        raise ControlError(f"link emulator unreachable ({message.get('op')}): {exc}") from exc
    reply = json.loads(line) if line else {"ok": False, "error": "no answer"}
    if not reply.get("ok"):
        raise ControlError(f"link emulator refused {message.get('op')}: {reply.get('error')}")
    return reply
