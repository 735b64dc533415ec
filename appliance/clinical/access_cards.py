"""Patient access cards: how a patient opens their own space on the box without email or SMS.

A clinician in the patient's care issues a card: a random 12-character code (60 bits, shown as
three groups of four) printed with a QR code of the card's link. Only the code's keyed hash is
stored, so the code can be printed once, when issued; a lost card or phone is handled by
revoking it, and re-issuing revokes the card before. Guessing is bounded by the portal's
session-code throttle (web/join_throttle.py). Plain functions over the store, no Flask.
"""

from __future__ import annotations

import secrets
from typing import Any

from appliance.store.models import Patient, User, utcnow
from appliance.store.store import Store

# No 0/O, 1/I/L: read off paper and typed on a phone without confusion.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 12
GROUP = 4


def new_card_code() -> str:
    """A fresh card code, without separators."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def format_card_code(code: str) -> str:
    """`ABCD-EFGH-JKMN`: easier to read aloud and to type."""
    return "-".join(code[i : i + GROUP] for i in range(0, len(code), GROUP))


def clean_card_code(raw: str) -> str | None:
    """The code as typed (any case, spaces or dashes), or None when it cannot be a code."""
    code = "".join(ch for ch in (raw or "").upper() if ch not in " -\t")
    if len(code) != CODE_LENGTH or any(ch not in ALPHABET for ch in code):
        return None
    return code


def _index(store: Store, code: str) -> str:
    return store.keyring.blind_index("patient_card", "code", code)


def issue_card(store: Store, patient: Patient, user: User | None) -> str:
    """Revoke `patient`'s cards and issue a new one; returns its code (shown once, then gone)."""
    PatientCard = store.PatientCard  # noqa: N806
    code = new_card_code()
    with store.transaction():
        revoke_cards(store, patient)
        PatientCard.create(
            patient=patient.id,
            code_index=_index(store, code),
            issued_by=user.id if user is not None else None,
        )
    return code


def revoke_cards(store: Store, patient: Patient) -> int:
    """Revoke every live card of `patient`; returns how many were live."""
    PatientCard = store.PatientCard  # noqa: N806
    return (
        PatientCard.update(revoked_at=utcnow())
        .where((PatientCard.patient == patient.id) & PatientCard.revoked_at.is_null())
        .execute()
    )


def live_card(store: Store, patient: Patient) -> Any | None:
    """The patient's card that still opens their space, if any."""
    PatientCard = store.PatientCard  # noqa: N806
    return PatientCard.get_or_none(
        (PatientCard.patient == patient.id) & PatientCard.revoked_at.is_null()
    )


def find_card(store: Store, code: str) -> Any | None:
    """The live card with this (cleaned) code, or None (unknown, or revoked)."""
    PatientCard = store.PatientCard  # noqa: N806
    card = PatientCard.get_or_none(PatientCard.code_index == _index(store, code))
    if card is None or card.revoked_at is not None or not card.patient.active:
        return None
    return card


def card_is_live(store: Store, card_id: int) -> Any | None:
    """The card `card_id` if it still opens its patient's space (checked on every request,
    so a revoked card ends every session opened with it at once)."""
    PatientCard = store.PatientCard  # noqa: N806
    card = PatientCard.get_or_none(PatientCard.id == card_id)
    if card is None or card.revoked_at is not None or not card.patient.active:
        return None
    return card
