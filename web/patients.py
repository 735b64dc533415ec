"""The patient list: everyone in one's care, searchable by name, with recent sessions, latest
scores, last contact and open risk flags.

Search decrypts the names of the patients in the signed-in clinician's care and matches a
part of a name (or the patient code) in memory. The store's blind index would only find an
exact whole name, and looking a name up across every record on the box would tell a clinician
that a patient outside their care exists. A care team holds tens to a few hundred records:
decrypting them is milliseconds (AES-GCM). An admin's list covers every patient, written to
the audit log as one cross-team view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, render_template, request
from flask.typing import ResponseReturnValue

from appliance.clinical.access import care_patient_ids, team_session_ids
from appliance.clinical.questionnaires import INSTRUMENTS
from appliance.store.models import Patient, User, normalise_for_index
from appliance.store.store import Store
from web.access import clinical_required
from web.app_state import current_box
from web.auth import staff_user

bp = Blueprint("patients", __name__)

MAX_QUERY = 100
MAX_ROWS = 200
RECENT_SESSIONS = 3


@dataclass
class PatientRow:
    """One line of the list: the patient and what a clinician wants at a glance."""

    person: Patient
    sessions: list[Any] = field(default_factory=list)  # (starts_at, title, id), newest first
    latest: dict[str, Any] = field(default_factory=dict)  # instrument code -> response
    last_contact: datetime | None = None
    needs_follow_up: bool = False

    def touch(self, when: datetime | None) -> None:
        if when is not None and (self.last_contact is None or when > self.last_contact):
            self.last_contact = when


def _rows(store: Store, user: User, query: str) -> list[PatientRow]:
    Patient, Attendance = store.Patient, store.Attendance  # noqa: N806
    Response_, RiskFlag, GroupSession = (  # noqa: N806
        store.QuestionnaireResponse,
        store.RiskFlag,
        store.GroupSession,
    )
    people = Patient.select().where(Patient.active)
    sessions_seen = GroupSession.select()
    if user.role != "admin":
        people = people.where(Patient.id.in_(care_patient_ids(store, user)))
        sessions_seen = sessions_seen.where(GroupSession.id.in_(team_session_ids(store, user)))
    wanted = normalise_for_index(query)
    rows = {
        p.id: PatientRow(p)
        for p in people
        if not wanted
        or wanted in normalise_for_index(p.display_name)
        or wanted in p.code.casefold()
    }
    if not rows:
        return []
    ids = list(rows)
    visible_sessions = {s.id: s for s in sessions_seen}
    for seat in (
        Attendance.select().where(Attendance.patient.in_(ids)).order_by(Attendance.joined_at.desc())
    ):
        row = rows[seat.patient_id]
        row.touch(seat.left_at or seat.joined_at)
        group = visible_sessions.get(seat.session_id)
        # A session run by another team is not this clinician's to name.
        if group is not None and len(row.sessions) < RECENT_SESSIONS:
            row.sessions.append(group)
    for answer in (
        Response_.select().where(Response_.patient.in_(ids)).order_by(Response_.created_at)
    ):
        row = rows[answer.patient_id]
        row.latest[answer.kind.lower()] = answer
        row.touch(answer.created_at)
    flagged = RiskFlag.select(RiskFlag.patient).where(
        (RiskFlag.state == "open") & RiskFlag.patient.in_(ids)
    )
    for flag in flagged:
        rows[flag.patient_id].needs_follow_up = True
    ordered = sorted(rows.values(), key=lambda r: r.last_contact or datetime.min, reverse=True)
    return ordered[:MAX_ROWS]


@bp.get("/patients")
@clinical_required
def patient_list() -> ResponseReturnValue:
    """The patients in one's care, most recent contact first; `q` searches by name or code."""
    query = " ".join((request.args.get("q") or "").split())
    if len(query) > MAX_QUERY:
        abort(400, description=f"Search with fewer than {MAX_QUERY} characters of a name.")
    store = current_box().store
    user = staff_user()
    rows = _rows(store, user, query)
    actor = f"user:{user.id}"
    if user.role == "admin":
        store.audit(actor, "access.cross_team", "patient/all")
    store.audit(actor, "record.list", "patient")
    return render_template(
        "patients.html",
        rows=rows,
        query=query,
        instruments=INSTRUMENTS.values(),
        everyone=user.role == "admin",
        max_rows=MAX_ROWS,
    )
