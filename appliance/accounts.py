"""Staff accounts: create and authenticate clinicians, technicians and admins.

Passwords are hashed with Argon2id (argon2-cffi's PasswordHasher defaults); a hash made with
older parameters is upgraded on the next successful login. Patients have no account.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES = ("admin", "clinician", "technician")
MIN_PASSWORD_LENGTH = 10
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,31}$")

_hasher = PasswordHasher()


@functools.cache
def dummy_hash() -> str:
    """A hash to verify against when the user does not exist, so reply time does not reveal
    which usernames exist. Made on first use: importing this module costs no Argon2id hash
    (64 MiB, ~50 ms), which matters in every forked worker of the centre."""
    return _hasher.hash("not-a-real-password-for-timing")


def normalise_username(username: str) -> str:
    """Usernames compare case-insensitively and without surrounding spaces."""
    return (username or "").strip().lower()


def _check_new(username: str, password: str, role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    check_username(username)
    check_password(username, password)


def check_password(username: str, password: str) -> None:
    """ValueError if `password` is too short or too easy to guess for `username`."""
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters long")
    if password.strip().lower() == username or len(set(password)) < 4:
        raise ValueError("password is too easy to guess; use a longer phrase")


def check_username(username: str) -> None:
    """ValueError unless `username` (normalised) is 3-32 safe characters."""
    if not _USERNAME.match(username):
        raise ValueError(
            "username must be 3-32 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def create_user(store: Any, username: str, password: str, role: str) -> Any:
    """Create a staff account and return its `User`; ValueError on weak or duplicate input."""
    username = normalise_username(username)
    _check_new(username, password, role)
    User = store.User  # noqa: N806 - the store's model class
    if User.select().where(User.username == username).exists():
        raise ValueError(f"username {username!r} is already taken")
    return User.create(username=username, password_hash=_hasher.hash(password), role=role)


def authenticate(store: Any, username: str, password: str) -> Any | None:
    """The `User` whose password matches, or None. Never says which part was wrong."""
    User = store.User  # noqa: N806
    user = User.get_or_none(User.username == normalise_username(username))
    if user is None or not user.active:
        try:
            _hasher.verify(dummy_hash(), password or "")
        except VerificationError:
            pass
        return None
    try:
        _hasher.verify(user.password_hash, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
        user.save()
    return user
