"""Staff accounts: create and authenticate clinicians, technicians and admins.

Passwords are hashed with Argon2id (argon2-cffi's PasswordHasher defaults); a hash made with
older parameters is upgraded on the next successful login. Patients have no account.

Password policy (NIST SP 800-63B, 5.1.1.2): at least 12 characters, any characters, no
composition rules; refused when it is a commonly used password (the bundled list of 20,000,
compared case-insensitively), a run of sequential or repeated characters, the username, or the
product's name.
"""

from __future__ import annotations

import functools
import gzip
import re
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES = ("admin", "clinician", "technician")
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common-passwords.txt.gz")
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


class AccountRefused(ValueError):
    """A new or changed account breaks a rule; `field` names what to fix (username, password
    or role), so a form can say which of its fields is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _check_new(username: str, password: str, role: str) -> None:
    if role not in ROLES:
        raise AccountRefused("role", f"role must be one of {', '.join(ROLES)}, got {role!r}")
    check_username(username)
    check_password(password, username)


def check_username(username: str) -> None:
    """AccountRefused unless `username` (normalised) is 3-32 safe characters."""
    if not _USERNAME.match(username):
        raise AccountRefused(
            "username",
            "username must be 3-32 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


# Runs along the digits, the alphabet and keyboard rows, repeated: "123456789012",
# "qwertyuiopas" and their reverses are sequences NIST lists as guessable.
_SEQUENCES = tuple(run * 3 for run in ("0123456789", "1234567890", "abcdefghijklmnopqrstuvwxyz",
                                        "qwertyuiopasdfghjklzxcvbnm", "qwertzuiopasdfghjklyxcvbnm",
                                        "azertyuiopqsdfghjklmwxcvbn"))


def _sequential_or_repetitive(folded: str) -> bool:
    if len(set(folded)) <= 2:
        return True
    return any(folded in run or folded[::-1] in run for run in _SEQUENCES)


@functools.cache
def _common_passwords() -> frozenset[str]:
    with gzip.open(COMMON_PASSWORDS_FILE, "rt", encoding="utf-8") as fh:
        return frozenset(line.strip().lower() for line in fh if line.strip())


def check_password(password: str, username: str = "") -> None:
    """Refuse a password that breaks the policy (AccountRefused saying what to do instead)."""
    password = password or ""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountRefused("password",
                             f"password must be at least {MIN_PASSWORD_LENGTH} characters "
                             "long; a phrase of several words is easiest to remember")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountRefused("password",
                             f"password must be at most {MAX_PASSWORD_LENGTH} characters long")
    folded = password.strip().lower()
    guessable = {normalise_username(username), "clinicbox", "clinic box"}
    if (folded in _common_passwords() or folded in guessable
            or _sequential_or_repetitive(folded)):
        raise AccountRefused("password", "that password is too commonly used or easy to guess; "
                             "choose another, e.g. a phrase of several unrelated words")


def create_user(store: Any, username: str, password: str, role: str) -> Any:
    """Create a staff account and return its `User`; AccountRefused on weak or duplicate input."""
    username = normalise_username(username)
    _check_new(username, password, role)
    User = store.User  # noqa: N806 - the store's model class
    if User.select().where(User.username == username).exists():
        raise AccountRefused("username", f"username {username!r} is already taken")
    return User.create(username=username, password_hash=_hasher.hash(password), role=role)


def set_password(store: Any, username: str, password: str) -> Any:
    """Give the account `username` a new password (same policy as new accounts); AccountRefused
    for an unknown account or a weak password. The caller ends the user's sessions."""
    User = store.User  # noqa: N806
    user = User.get_or_none(User.username == normalise_username(username))
    if user is None:
        raise AccountRefused("username", f"no staff account named {normalise_username(username)!r}")
    check_password(password, user.username)
    user.password_hash = _hasher.hash(password)
    user.save()
    return user


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
