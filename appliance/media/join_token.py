"""Join tokens: the portal admits someone, the SFU lets exactly that seat into that room.

A token is `base64url(claims).base64url(HMAC-SHA256(secret, claims))`. Claims carry the room
(group session id), a participant id, a role and an expiry: no names, nothing clinical, so a
token in a browser's history reveals nothing about the person.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.files import read_or_create_private

ROLES = ("facilitator", "patient")
DEFAULT_TTL_S = 4 * 3600
KEY_FILE = "join-token.key"


class JoinTokenError(ValueError):
    """The token is malformed, forged or expired; the message says which."""


@dataclass(frozen=True)
class JoinClaims:
    room_id: str
    participant_id: str
    role: str
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_secret(secrets_dir: Path) -> bytes:
    """The box's join-token key, made (0600) on first use; one key even when callers race."""
    return read_or_create_private(secrets_dir / KEY_FILE, lambda: secrets.token_bytes(32))


def issue_join_token(
    secret: bytes, room_id: str, participant_id: str, role: str, ttl_s: int = DEFAULT_TTL_S
) -> str:
    """A URL-safe HMAC-SHA256-signed token: room, participant, role, expiry (no names)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    claims = {"r": room_id, "p": participant_id, "o": role, "e": int(time.time() + ttl_s)}
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    mac = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def verify_join_token(secret: bytes, token: str, now: float | None = None) -> JoinClaims:
    """The claims of a token signed with `secret`; JoinTokenError if forged, malformed or old."""
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > 1024:
        raise JoinTokenError("the join token is malformed")
    body, mac = token.split(".")
    expected = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(mac, expected):
        raise JoinTokenError("the join token is not valid for this box")
    try:
        claims: dict[str, Any] = json.loads(_unb64(body))
        parsed = JoinClaims(str(claims["r"]), str(claims["p"]), str(claims["o"]), claims["e"])
    except (ValueError, KeyError, TypeError):
        raise JoinTokenError("the join token is malformed") from None
    if parsed.expires_at < (time.time() if now is None else now):
        raise JoinTokenError("the join token has expired; reopen the call page")
    return parsed


def issue(box: Any, session_id: str, participant: str, role: str) -> str:
    """A token for `participant` in group session `session_id` (the portal's entry point)."""
    secret = token_secret(box.settings.secrets_dir)
    return issue_join_token(secret, str(session_id), participant, role)


def verify(box: Any, token: str) -> JoinClaims:
    """Check a token against this box's join-token secret."""
    return verify_join_token(token_secret(box.settings.secrets_dir), token)
