"""Ways in for patients: a 6-digit session code and an unguessable invite-link token."""

from __future__ import annotations

import re
import secrets

_CODE = re.compile(r"^\d{6}$")


def new_session_code() -> str:
    """Six random digits, easy to read out over a phone call."""
    return f"{secrets.randbelow(1_000_000):06d}"


def new_invite_token() -> str:
    """A URL-safe token for invite links (128 bits)."""
    return secrets.token_urlsafe(16)


def clean_code(raw: str) -> str | None:
    """The code with spaces and dashes removed, or None when it is not 6 digits."""
    code = re.sub(r"[\s-]", "", raw or "")
    return code if _CODE.match(code) else None
