"""Server-side staff sessions: revocable sign-ins kept in the record store.

The portal's cookie carries a random 256-bit token; the store keeps only its SHA-256, the
user and two times. So logging out, disabling an account (`clinicbox user disable`) or an
expiry ends the session for every copy of the cookie, and neither the cookie-signing key nor a
copy of the database lets anyone make a cookie that works: the token itself is never stored.

Limits: idle (`idle_logoff_minutes`, since the last request) and absolute
(`session_max_hours`, since sign-in, however active).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

TOKEN_BYTES = 32
# `last_seen` is written at most this often per session, so ordinary page loads do not each
# cost a synchronous SQLite commit; the idle limit is minutes, this is well under it.
TOUCH_EVERY_S = 30.0


@dataclass(frozen=True)
class SessionLimits:
    """How long a staff session may sit idle, and may last at all, in seconds."""

    idle_s: float
    absolute_s: float

    @property
    def touch_every_s(self) -> float:
        return min(TOUCH_EVERY_S, self.idle_s / 4)


@dataclass(frozen=True)
class Resumed:
    """What a cookie's token turned out to be: the signed-in user, or why there is none.

    `ended` is "idle", "expired", "disabled" or "unknown" (logged out, revoked, never issued)
    when `user` is None.
    """

    user: Any | None
    ended: str | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(store: Any, user: Any, now: float | None = None) -> str:
    """Open a session for `user`; return the token for the cookie (never stored)."""
    now = time.time() if now is None else now
    token = secrets.token_urlsafe(TOKEN_BYTES)
    store.StaffSession.create(token_hash=_hash(token), user=user.id, created_at=now, last_seen=now)
    return token


def resume(store: Any, token: str, limits: SessionLimits, now: float | None = None) -> Resumed:
    """The user of a live session with `token`; expired or revoked sessions are deleted."""
    now = time.time() if now is None else now
    S = store.StaffSession  # noqa: N806 - the store's model class
    User = store.User  # noqa: N806
    # One query for session and account: this runs on every staff request.
    record = S.select(S, User).join(User).where(S.token_hash == _hash(token)).first()
    if record is None:
        return Resumed(None, "unknown")
    ended = None
    if now - record.created_at > limits.absolute_s:
        ended = "expired"
    elif now - record.last_seen > limits.idle_s:
        ended = "idle"
    if ended is not None:
        S.delete().where(S.token_hash == record.token_hash).execute()
        return Resumed(None, ended)
    user = record.user
    if not user.active:
        # An account disabled by any path (not only `user disable`) loses every session.
        S.delete().where(S.user == record.user_id).execute()
        return Resumed(None, "disabled")
    if now - record.last_seen >= limits.touch_every_s:
        S.update(last_seen=now).where(S.token_hash == record.token_hash).execute()
    return Resumed(user)


def end(store: Any, token: str) -> None:
    """End the session with `token` (logout); nothing happens for an unknown token."""
    S = store.StaffSession  # noqa: N806
    S.delete().where(S.token_hash == _hash(token)).execute()


def end_all_for(store: Any, user_id: int) -> int:
    """End every session of the user `user_id`; return how many there were."""
    S = store.StaffSession  # noqa: N806
    return S.delete().where(S.user == user_id).execute()


def purge_expired(store: Any, limits: SessionLimits, now: float | None = None) -> int:
    """Delete sessions past either limit (abandoned tabs); return how many."""
    now = time.time() if now is None else now
    S = store.StaffSession  # noqa: N806
    return (
        S.delete()
        .where((S.created_at < now - limits.absolute_s) | (S.last_seen < now - limits.idle_s))
        .execute()
    )
