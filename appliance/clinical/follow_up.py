"""Risk flags that need follow-up: which are open for whom, and recording what was done.

A flag (e.g. PHQ-9 item 9 above zero) stays on the care team's "needs follow-up" list until a
clinician records what was done: a closing note (`closed`) or a referral on (`referred`, which
also writes a `Referral` record to the urgent lane). The note is encrypted like every clinical
text; who recorded it and when are kept beside it. Plain functions over the store, no Flask.
"""

from __future__ import annotations

from typing import Any

from appliance.clinical.access import care_patient_ids, is_clinical
from appliance.store.models import GroupSession, User, utcnow
from appliance.store.store import Store

# What a clinician may record, as (state, label shown on the form).
OUTCOMES: dict[str, str] = {
    "closed": "Followed up: safe for now, no referral",
    "referred": "Referred on (crisis team, GP or emergency service)",
}
MAX_NOTE = 2000


class FollowUpError(ValueError):
    """The follow-up cannot be recorded as given; the message says what to fix."""


def open_flags(store: Store) -> Any:
    """Every open risk flag, oldest first (the longest waiting is the most urgent)."""
    RiskFlag = store.RiskFlag  # noqa: N806
    return RiskFlag.select().where(RiskFlag.state == "open").order_by(RiskFlag.created_at)


def open_flags_in_care(store: Store, user: User) -> list[Any]:
    """The open risk flags of the patients in `user`'s care (none for non-clinical users)."""
    if not is_clinical(user):
        return []
    RiskFlag = store.RiskFlag  # noqa: N806
    return list(open_flags(store).where(RiskFlag.patient.in_(care_patient_ids(store, user))))


def open_flags_of_session(store: Store, group: GroupSession) -> list[Any]:
    """The open risk flags of everyone with a seat in `group`, whatever its status."""
    RiskFlag, Attendance = store.RiskFlag, store.Attendance  # noqa: N806
    seats = Attendance.select(Attendance.patient).where(Attendance.session == group.id)
    return list(open_flags(store).where(RiskFlag.patient.in_(seats)))


def record_follow_up(store: Store, flag: Any, user: User, outcome: str, note: str) -> Any:
    """Close `flag` with what `user` did; a referral also becomes a `Referral` record.

    Raises FollowUpError for an unknown outcome, an empty or overlong note, or a flag that
    was already followed up (two clinicians at once: the first one's record stands).
    """
    note = (note or "").strip()
    if outcome not in OUTCOMES:
        raise FollowUpError("Choose what was done: followed up, or referred on.")
    if not note:
        raise FollowUpError("Write what was done (who spoke with the patient, what was agreed).")
    if len(note) > MAX_NOTE:
        raise FollowUpError(f"Keep the note under {MAX_NOTE} characters.")
    RiskFlag = store.RiskFlag  # noqa: N806
    with store.transaction():
        current = RiskFlag.get_by_id(flag.id)
        if current.state != "open":
            raise FollowUpError("A colleague has already recorded the follow-up of this flag.")
        current.state = outcome
        current.follow_up = note
        current.followed_up_by = user
        current.followed_up_at = utcnow()
        current.save()
        if outcome == "referred":
            store.Referral.create(
                patient=current.patient_id,
                risk_flag=current.id,
                referred_by=user.id,
                details=note,
            )
    return current
