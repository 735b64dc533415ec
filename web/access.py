"""The portal's guards over the care-team rules (appliance/clinical/access.py).

Every view that touches one session or one patient loads it through `team_session` or
`care_patient`: outside the user's reach the answer is 404 with the same message as for an
id that does not exist, so a curious colleague cannot even learn that a session or patient
is there. (Role checks stay 403 in `role_required`: they say nothing about any record.) A
refused attempt on a record that exists, and every cross-team view by an admin, go to the
hash-chained audit log.
"""

from __future__ import annotations

from typing import Any, NoReturn

from flask import abort

from appliance.clinical.access import CLINICAL_ROLES, Grant, patient_grant, session_grant
from appliance.store.models import Patient
from web.app_state import current_box
from web.auth import current_user, role_required

NO_SESSION = "There is no such session."
NO_PATIENT = "There is no such patient."

# Views of clinical records: clinicians and admins; which records is decided per record below.
clinical_required = role_required(*CLINICAL_ROLES)


def _actor() -> str:
    user = current_user()
    return f"user:{user.id}" if user is not None else "anonymous"


def audit_grant(grant: Grant, target: str) -> None:
    """Write an admin's cross-team view of `target` to the audit log (nothing otherwise)."""
    if grant.cross_team:
        current_box().store.audit(_actor(), "access.cross_team", target)


def _refuse(target: str, message: str) -> NoReturn:
    current_box().store.audit(_actor(), "access.denied", target)
    abort(404, description=message)


def team_session(session_id: str) -> tuple[Any, Grant]:
    """The session and how the signed-in user may run it; 404 when it is not theirs."""
    store = current_box().store
    group = store.GroupSession.get_or_none(store.GroupSession.id == session_id)
    if group is None:
        abort(404, description=NO_SESSION)
    grant = session_grant(store, current_user(), group)
    if grant is None:
        _refuse(f"group_session/{group.id}", NO_SESSION)
    audit_grant(grant, f"group_session/{group.id}")
    return group, grant


def care_patient(patient_id: str) -> tuple[Any, Grant]:
    """The patient and how the signed-in user may open their record; 404 outside their care."""
    store = current_box().store
    person = store.Patient.get_or_none(store.Patient.id == patient_id)
    if person is None:
        abort(404, description=NO_PATIENT)
    grant = patient_grant(store, current_user(), person)
    if grant is None:
        _refuse(f"patient/{person.id}", NO_PATIENT)
    audit_grant(grant, f"patient/{person.id}")
    return person, grant


def visible_patient(person: Patient) -> bool:
    """Whether the signed-in user may see `person` at all (e.g. in a list of suggestions);
    an admin's cross-team sight of them is audited."""
    grant = patient_grant(current_box().store, current_user(), person)
    if grant is None:
        return False
    audit_grant(grant, f"patient/{person.id}")
    return True
