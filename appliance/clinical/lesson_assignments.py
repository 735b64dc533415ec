"""Lessons given to patients: assign to one patient or to everyone in a group session, mark
done, and list what a patient has. Plain functions over the store, no Flask."""

from __future__ import annotations

from typing import Any

from appliance.clinical.lesson_library import Lesson
from appliance.store.models import GroupSession, Patient, User, utcnow
from appliance.store.store import Store

MAX_HOMEWORK = 1000


class AssignmentError(ValueError):
    """The lesson cannot be assigned as given; the message says what to fix."""


def _check(library: dict[str, Lesson], lesson_id: str, homework: str) -> str:
    if lesson_id not in library:
        raise AssignmentError("Choose one of the lessons in the library.")
    homework = (homework or "").strip()
    if len(homework) > MAX_HOMEWORK:
        raise AssignmentError(f"Keep the homework under {MAX_HOMEWORK} characters.")
    return homework


def assign(
    store: Store,
    library: dict[str, Lesson],
    patient_ids: list[str],
    lesson_id: str,
    homework: str,
    user: User,
) -> list[Any]:
    """Give `lesson_id` (and homework) to each patient; one record per patient."""
    homework = _check(library, lesson_id, homework)
    with store.transaction():
        return [
            store.LessonAssignment.create(
                patient=patient_id,
                lesson=lesson_id,
                homework=homework or None,
                assigned_by=user.id,
            )
            for patient_id in patient_ids
        ]


def assignments_of(store: Store, patient: Patient) -> list[Any]:
    """The patient's lessons, newest first."""
    Assigned = store.LessonAssignment  # noqa: N806
    return list(
        Assigned.select().where(Assigned.patient == patient.id).order_by(Assigned.created_at.desc())
    )


def assignment_of(store: Store, patient: Patient, assignment_id: str) -> Any | None:
    """One of the patient's lessons by its record id, or None (not theirs, or no such)."""
    Assigned = store.LessonAssignment  # noqa: N806
    return Assigned.get_or_none((Assigned.id == assignment_id) & (Assigned.patient == patient.id))


def mark_done(store: Store, assignment: Any) -> None:
    """The patient finished the lesson (a second mark keeps the first time)."""
    if assignment.done_at is None:
        assignment.done_at = utcnow()
        assignment.save()


def group_patient_ids(store: Store, group: GroupSession) -> list[str]:
    """Everyone with a seat in `group` who was not removed."""
    Attendance = store.Attendance  # noqa: N806
    seats = Attendance.select(Attendance.patient).where(
        (Attendance.session == group.id) & (Attendance.status != "removed")
    )
    return sorted({seat.patient_id for seat in seats})
