"""Reminders for a patient: which measures are due and when their next session starts.

Shown on the patient's space and in the waiting room. They are computed from records the box
already keeps and syncs (`MeasureSchedule`, `Attendance`, `GroupSession`), so a reminder is
never out of step with what it reminds of. Each has a stable `key` (what, for whom, which
occurrence): an SMS sender at the centre, added later, can compute the same reminders from
the synced records and keep the keys it has sent, so nobody gets the same text twice. No
reminder carries clinical content: "a questionnaire is due", never a score.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from appliance.clinical.measures_between import due
from appliance.store.models import Patient, utcnow
from appliance.store.store import Store


@dataclass(frozen=True)
class Reminder:
    """One thing to remind a patient of."""

    key: str  # e.g. "measure:<schedule id>:<due date>", "session:<session id>"
    kind: str  # "measure" or "session"
    what: str  # PHQ9, GAD7, MOOD, or "session"
    when: datetime  # when it fell due (UTC), or the session's start (clinic time)


def next_session(store: Store, patient: Patient, now: datetime | None = None) -> Any | None:
    """The next scheduled or live session the patient has a seat in, if any."""
    GroupSession, Attendance = store.GroupSession, store.Attendance  # noqa: N806
    # Session times are the clinic's local wall-clock time, as scheduled.
    now = now or datetime.now()
    seats = Attendance.select(Attendance.session).where(
        (Attendance.patient == patient.id) & (Attendance.status != "removed")
    )
    return (
        GroupSession.select()
        .where(
            GroupSession.id.in_(seats)
            & (GroupSession.state << ("scheduled", "live"))
            & (GroupSession.starts_at >= now)
        )
        .order_by(GroupSession.starts_at)
        .first()
    )


def reminders_for(store: Store, patient: Patient) -> list[Reminder]:
    """What is due now, then the next session."""
    found = [
        Reminder(
            key=f"measure:{item.id}:{item.next_due:%Y-%m-%d}",
            kind="measure",
            what=item.kind,
            when=item.next_due,
        )
        for item in due(store, patient, utcnow())
    ]
    upcoming = next_session(store, patient)
    if upcoming is not None:
        found.append(
            Reminder(
                key=f"session:{upcoming.id}",
                kind="session",
                what="session",
                when=upcoming.starts_at,
            )
        )
    return found
