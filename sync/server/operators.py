"""The centre's operator accounts: made only by `clinicbox-central operator add`, no default.

Passwords are checked and hashed as the box's staff accounts are (Argon2id, same rules).
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from appliance.accounts import check_password, check_username, dummy_hash, normalise_username
from sync.server.models import Operator

_hasher = PasswordHasher()


def add_operator(username: str, password: str) -> str:
    """Create (or reset the password of) an operator; ValueError on weak input."""
    name = normalise_username(username)
    check_username(name)
    check_password(password, name)
    Operator.insert(username=name, password_hash=_hasher.hash(password)).on_conflict(
        conflict_target=[Operator.username],
        update={Operator.password_hash: _hasher.hash(password)},
    ).execute()
    return name


def check_operator(username: str, password: str) -> str | None:
    """The operator's username if the password matches, else None."""
    row = Operator.get_or_none(Operator.username == normalise_username(username))
    try:
        _hasher.verify(row.password_hash if row else dummy_hash(), password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return row.username if row else None


def operator_count() -> int:
    return Operator.select().count()
