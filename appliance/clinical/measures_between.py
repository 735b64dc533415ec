"""Measures between sessions: what a clinician schedules for a patient, what is due, and the
one-tap daily mood check.

A `MeasureSchedule` asks for PHQ-9, GAD-7 or the mood check every `every_days` days from
`next_due`. A measure is due once `next_due` has passed; answering it moves `next_due` on by
whole periods past now, so a patient who was away for a week owes one answer, not seven.
PHQ-9 and GAD-7 answers are `QuestionnaireResponse`s without a session (scored and flagged
like the in-session ones, and charted with them); a mood check is a `MoodEntry`. Plain
functions over the store, no Flask.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from appliance.clinical.questionnaires import Band
from appliance.store.models import Patient, User, utcnow
from appliance.store.store import Store

KINDS = ("PHQ9", "GAD7", "MOOD")
MAX_EVERY_DAYS = 90
MAX_MOOD_NOTE = 500


class ScheduleError(ValueError):
    """The schedule or the answer cannot be stored as given; the message says what to fix."""


@dataclass(frozen=True)
class MoodScale:
    """The daily mood check as the score chart draws it (the shape of an `Instrument`)."""

    code: str = "mood"
    title: str = "Daily mood (1-5)"
    max_score: int = 5
    bands: tuple[Band, ...] = (Band(1, 2, "low"), Band(3, 3, "so-so"), Band(4, 5, "good"))

    def band(self, score: int) -> Band:
        for band in self.bands:
            if band.low <= score <= band.high:
                return band
        raise ValueError(f"mood score {score} is outside 1-5")


MOOD = MoodScale()


def schedule(store: Store, patient: Patient, kind: str, every_days: int, user: User) -> Any:
    """Ask `patient` for `kind` every `every_days` days, due from now; replaces an active
    schedule of the same kind."""
    if kind not in KINDS:
        raise ScheduleError("Choose PHQ-9, GAD-7 or the daily mood check.")
    if not 1 <= every_days <= MAX_EVERY_DAYS:
        raise ScheduleError(f"Choose every 1 to {MAX_EVERY_DAYS} days.")
    Schedule = store.MeasureSchedule  # noqa: N806
    with store.transaction():
        for old in Schedule.select().where(
            (Schedule.patient == patient.id) & (Schedule.kind == kind) & Schedule.active
        ):
            old.active = False
            old.save()
        return Schedule.create(
            patient=patient.id,
            kind=kind,
            every_days=every_days,
            next_due=utcnow(),
            scheduled_by=user.id,
        )


def stop(store: Store, patient: Patient, schedule_id: str) -> bool:
    """Stop one of `patient`'s schedules; False when there is no such active schedule."""
    Schedule = store.MeasureSchedule  # noqa: N806
    found = Schedule.get_or_none(
        (Schedule.id == schedule_id) & (Schedule.patient == patient.id) & Schedule.active
    )
    if found is None:
        return False
    found.active = False
    found.save()
    return True


def active_schedules(store: Store, patient: Patient) -> list[Any]:
    Schedule = store.MeasureSchedule  # noqa: N806
    return list(
        Schedule.select()
        .where((Schedule.patient == patient.id) & Schedule.active)
        .order_by(Schedule.next_due)
    )


def due(store: Store, patient: Patient, now: datetime | None = None) -> list[Any]:
    """The patient's schedules whose measure is due now, most overdue first."""
    now = now or utcnow()
    return [s for s in active_schedules(store, patient) if s.next_due <= now]


def due_schedule(store: Store, patient: Patient, kind: str) -> Any | None:
    """The patient's active schedule of `kind` if its measure is due now."""
    for item in due(store, patient):
        if item.kind == kind:
            return item
    return None


def mark_answered(store: Store, item: Any, now: datetime | None = None) -> None:
    """Move `item.next_due` past now by whole periods (call inside the answer's transaction)."""
    now = now or utcnow()
    period = timedelta(days=item.every_days)
    next_due = item.next_due
    while next_due <= now:
        next_due += period
    item.next_due = next_due
    item.save()


def record_mood(store: Store, patient: Patient, raw_score: str, note: str | None) -> Any:
    """Store a mood check (1-5, optional note) and move a due mood schedule on."""
    if raw_score not in ("1", "2", "3", "4", "5"):
        raise ScheduleError("Choose how you feel today, from 1 to 5.")
    note = (note or "").strip()
    if len(note) > MAX_MOOD_NOTE:
        raise ScheduleError(f"Keep the note under {MAX_MOOD_NOTE} characters.")
    with store.transaction():
        entry = store.MoodEntry.create(patient=patient.id, score=int(raw_score), note=note or None)
        item = due_schedule(store, patient, "MOOD")
        if item is not None:
            mark_answered(store, item)
    return entry


def moods(store: Store, patient: Patient) -> list[Any]:
    """The patient's mood checks, oldest first."""
    Mood = store.MoodEntry  # noqa: N806
    return list(Mood.select().where(Mood.patient == patient.id).order_by(Mood.created_at))
