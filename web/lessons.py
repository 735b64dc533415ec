"""Self-paced lessons: the library for clinicians, assigning a lesson (and homework) to a
patient or a whole group, and the patient's side in their card space.

The library is read from Markdown files (appliance/clinical/lesson_library.py, docs/lessons.md).
A patient reaches a lesson only through an assignment of their own: the assignment's record
id is in the URL, never the lesson's name or anything about the patient.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from appliance.clinical import lesson_assignments
from appliance.clinical.lesson_library import Lesson, load_library
from appliance.store.store import Store
from web.access import care_patient, clinical_required, team_session
from web.app_state import current_box
from web.auth import staff_user
from web.patient_space import card_required, space_patient

bp = Blueprint("lessons", __name__)

NO_LESSON = "There is no such lesson."


def library() -> dict[str, Lesson]:
    """The lessons on this box now (files added by an admin appear at once)."""
    return load_library(current_box().settings.data_dir)


def _store() -> Store:
    return current_box().store


@bp.get("/lessons")
@clinical_required
def library_page() -> ResponseReturnValue:
    return render_template("lessons.html", lessons=library().values())


@bp.get("/lessons/<lesson_id>")
@clinical_required
def preview(lesson_id: str) -> ResponseReturnValue:
    lesson = library().get(lesson_id)
    if lesson is None:
        abort(404, description=NO_LESSON)
    return render_template("lesson.html", lesson=lesson, assignment=None)


def _assign(patient_ids: list[str]) -> int:
    try:
        made = lesson_assignments.assign(
            _store(),
            library(),
            patient_ids,
            request.form.get("lesson") or "",
            request.form.get("homework") or "",
            staff_user(),
        )
    except lesson_assignments.AssignmentError as exc:
        abort(400, description=str(exc))
    for item in made:
        _store().audit(f"user:{staff_user().id}", "record.create", f"lesson_assignment/{item.id}")
    return len(made)


@bp.post("/patients/<patient_id>/lessons")
@clinical_required
def assign_to_patient(patient_id: str) -> ResponseReturnValue:
    person, _grant = care_patient(patient_id)
    _assign([person.id])
    return redirect(url_for("portal.patient", patient_id=person.id))


@bp.post("/sessions/<session_id>/lessons")
@clinical_required
def assign_to_group(session_id: str) -> ResponseReturnValue:
    """The lesson for everyone with a seat in the session (not those removed)."""
    group, _grant = team_session(session_id)
    people = lesson_assignments.group_patient_ids(_store(), group)
    if not people:
        abort(400, description="Nobody has a seat in this session yet.")
    _assign(people)
    return redirect(url_for("portal.session_detail", session_id=group.id))


@bp.get("/me/lessons")
@card_required
def my_lessons() -> ResponseReturnValue:
    store = _store()
    person = space_patient()
    items = lesson_assignments.assignments_of(store, person)
    store.audit(f"patient/{person.id}", "record.read", f"patient/{person.id}/lessons")
    return render_template("space_lessons.html", items=items, library=library())


def _mine(assignment_id: str) -> Any:
    found = lesson_assignments.assignment_of(_store(), space_patient(), assignment_id)
    if found is None:
        abort(404, description=NO_LESSON)
    return found


@bp.get("/me/lessons/<assignment_id>")
@card_required
def my_lesson(assignment_id: str) -> ResponseReturnValue:
    assignment = _mine(assignment_id)
    lesson = library().get(assignment.lesson)
    if lesson is None:
        abort(404, description=NO_LESSON)
    return render_template("lesson.html", lesson=lesson, assignment=assignment)


@bp.post("/me/lessons/<assignment_id>/done")
@card_required
def done(assignment_id: str) -> ResponseReturnValue:
    assignment = _mine(assignment_id)
    lesson_assignments.mark_done(_store(), assignment)
    _store().audit(
        f"patient/{space_patient().id}", "record.update", f"lesson_assignment/{assignment.id}"
    )
    return redirect(url_for("lessons.my_lessons"))
