"""Ways in for patients: a 9-digit session code and an invite-link token per session.

The store keeps only keyed hashes of both (blind indexes), so the portal derives them from a
box secret and the session id: the clinician can be shown the same code again days later,
and nothing readable is stored. On the rare clash with another open session's code the next
derivation (`attempt`) is used; `join_code_of` finds which one a session holds.

Nine digits (a billion codes, shown as `123 456 789`) stay easy to type on a phone's number
pad; with the portal's attempt throttle (web/join_throttle.py) guessing one is out of reach.
Six-digit codes from before are replaced by `reissue_short_codes` when the portal starts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any

from appliance.store.models import GroupSession

CODE_DIGITS = 9
_CODE = re.compile(rf"^\d{{{CODE_DIGITS}}}$")
MAX_ATTEMPTS = 20


def _mac(secret: bytes, label: str) -> bytes:
    return hmac.new(secret, label.encode(), hashlib.sha256).digest()


def derive_code(secret: bytes, session_id: str, attempt: int = 0) -> str:
    """Nine digits, easy to read out over a phone call."""
    value = int.from_bytes(_mac(secret, f"join-code:{session_id}:{attempt}")[:8], "big")
    return f"{value % 10**CODE_DIGITS:0{CODE_DIGITS}d}"


def format_code(code: str) -> str:
    """The code in groups of three (`123 456 789`), as clinicians read it out."""
    return " ".join(code[i : i + 3] for i in range(0, len(code), 3))


def derive_invite_token(secret: bytes, session_id: str) -> str:
    """A URL-safe invite token (128 bits)."""
    raw = _mac(secret, f"invite:{session_id}")[:16]
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


OPEN_STATES = ("scheduled", "live")


def _code_index(model: Any, code: str) -> str:
    probe = model()
    probe.set_join_code(code)
    return probe.join_code_index


def find_open_session(model: Any, code: str) -> Any | None:
    """The scheduled or live session (of store model `model`) holding join `code`, or None."""
    return model.get_or_none(
        (model.join_code_index == _code_index(model, code)) & (model.state << OPEN_STATES)
    )


def assign_codes(group: GroupSession, secret: bytes) -> None:
    """Give `group` (a store GroupSession, saved or not) a free join code and an invite token."""
    model = type(group)
    for attempt in range(MAX_ATTEMPTS):
        code = derive_code(secret, group.id, attempt)
        other = find_open_session(model, code)
        if other is None or other.id == group.id:
            group.set_join_code(code)
            group.set_invite_token(derive_invite_token(secret, group.id))
            return
    raise RuntimeError("no free session code found; end some old sessions")


def join_code_of(group: GroupSession, secret: bytes) -> str | None:
    """The code `group` was given by `assign_codes`, or None."""
    for attempt in range(MAX_ATTEMPTS):
        code = derive_code(secret, group.id, attempt)
        if _code_index(type(group), code) == group.join_code_index:
            return code
    return None


def reissue_short_codes(model: Any, secret: bytes) -> int:
    """Give every open session whose code is not a current-length one a new code.

    Returns how many sessions got one (their invite links stay the same).
    """
    changed = 0
    for group in model.select().where(model.state << OPEN_STATES):
        if join_code_of(group, secret) is None:
            assign_codes(group, secret)
            group.save()
            changed += 1
    return changed


def clean_code(raw: object) -> str | None:
    """The code with spaces and dashes removed, or None when it is not 9 digits."""
    if not isinstance(raw, str) or len(raw) > 40:
        return None
    code = re.sub(r"[\s-]", "", raw)
    return code if code.isascii() and _CODE.match(code) else None
