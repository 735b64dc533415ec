"""Secure messages between a patient and their care team, outside any session.

A message is a `SecureMessage` record: its body encrypted, written with its outbox entry in
one transaction (ClinicalModel.save) so it syncs like every clinical record. `author` is the
clinician who wrote it, NULL for the patient. A message is "read" once the other side opens
the thread. Plain functions over the store, no Flask.
"""

from __future__ import annotations

from typing import Any

from appliance.clinical.access import care_patient_ids, is_clinical
from appliance.store.models import Patient, User, utcnow
from appliance.store.store import Store

MAX_MESSAGE = 2000
THREAD_LIMIT = 200
EMERGENCY_CONTACT = "emergency_contact"
MAX_EMERGENCY_CONTACT = 300


class MessageError(ValueError):
    """The message cannot be sent as given; the message says what to fix."""


def clean_body(text: str) -> str:
    """The message text, stripped; MessageError when empty or too long."""
    body = (text or "").strip()
    if not body:
        raise MessageError("Write a message first.")
    if len(body) > MAX_MESSAGE:
        raise MessageError(f"Keep the message under {MAX_MESSAGE} characters.")
    return body


def send(store: Store, patient: Patient, text: str, author: User | None = None) -> Any:
    """Store a message in `patient`'s thread: from `author` (a clinician) or the patient."""
    body = clean_body(text)
    return store.SecureMessage.create(
        patient=patient.id, author=author.id if author is not None else None, body=body
    )


def thread(store: Store, patient: Patient) -> list[Any]:
    """The latest messages of `patient`'s thread, oldest first."""
    Message = store.SecureMessage  # noqa: N806
    latest = (
        Message.select()
        .where(Message.patient == patient.id)
        .order_by(Message.created_at.desc())
        .limit(THREAD_LIMIT)
    )
    return list(reversed(list(latest)))


def mark_read(store: Store, patient: Patient, by_patient: bool) -> int:
    """Mark the other side's unread messages of the thread read; returns how many."""
    Message = store.SecureMessage  # noqa: N806
    from_other = Message.author.is_null(False) if by_patient else Message.author.is_null()
    unread = Message.select().where(
        (Message.patient == patient.id) & from_other & Message.read_at.is_null()
    )
    count = 0
    with store.transaction():
        for message in unread:
            # Through save(): the read time is part of the record the centre keeps.
            message.read_at = utcnow()
            message.save()
            count += 1
    return count


def unread_for_patient(store: Store, patient: Patient) -> int:
    """Messages from the care team the patient has not opened."""
    Message = store.SecureMessage  # noqa: N806
    return (
        Message.select()
        .where(
            (Message.patient == patient.id)
            & Message.author.is_null(False)
            & Message.read_at.is_null()
        )
        .count()
    )


def unread_by_patient(store: Store, user: User) -> dict[str, int]:
    """Patient id -> messages from that patient nobody on the team has opened, for the
    patients in `user`'s care (none for non-clinical users)."""
    if not is_clinical(user):
        return {}
    Message = store.SecureMessage  # noqa: N806
    rows = Message.select(Message.patient).where(
        Message.author.is_null()
        & Message.read_at.is_null()
        & Message.patient.in_(care_patient_ids(store, user))
    )
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.patient_id] = counts.get(row.patient_id, 0) + 1
    return counts


def emergency_contact(store: Store) -> str:
    """The clinic's emergency contact as the admin set it, or an empty string."""
    setting = store.ClinicSetting.get_or_none(store.ClinicSetting.key == EMERGENCY_CONTACT)
    return setting.value if setting is not None else ""


def set_emergency_contact(store: Store, text: str) -> str:
    """Set the clinic's emergency contact (public clinic information, not a patient's)."""
    value = " ".join((text or "").split())
    if not value:
        raise MessageError("Write who to call in an emergency (a number or a service).")
    if len(value) > MAX_EMERGENCY_CONTACT:
        raise MessageError(f"Keep it under {MAX_EMERGENCY_CONTACT} characters.")
    Setting = store.ClinicSetting  # noqa: N806
    Setting.insert(key=EMERGENCY_CONTACT, value=value, updated_at=utcnow()).on_conflict(
        conflict_target=[Setting.key], update={Setting.value: value, Setting.updated_at: utcnow()}
    ).execute()
    return value
