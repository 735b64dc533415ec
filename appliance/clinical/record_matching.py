"""Filing a join under an earlier patient record.

Patients join without an account, so each join starts a new patient record; the clinician
may match it with an earlier record (the same person). The attendance, its consent and any
questionnaires and risk flags from it move over, and the new record is retired.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.clinical.errors import Conflict, Invalid
from appliance.store.models import Attendance, GroupSession, Patient
from appliance.store.store import Store


def match_candidates(
    store: Store, attendees: list[Attendance], visible: Callable[[Patient], bool]
) -> dict[str, list[Patient]]:
    """For each admitted or departed attendee, the active earlier records under the same
    name that `visible` lets this clinician see (a colleague's patient is not theirs)."""
    return {
        a.id: [
            p
            for p in store.Patient.find_by_name(a.display_name or "")
            if p.id != a.patient_id and p.active and visible(p)
        ]
        for a in attendees
        if a.status in ("admitted", "left")
    }


def file_under_earlier(
    store: Store,
    group: GroupSession,
    attendance_id: str,
    patient_id: str,
    visible: Callable[[Patient], bool],
    actor: str,
) -> Attendance:
    """Move the join `attendance_id` of `group` onto the earlier record `patient_id` and
    audit it as `actor`. Invalid unless both exist and differ, and `visible` allows the
    earlier record (one outside the clinician's care is answered like one that does not
    exist: filing a join under it would make them its care team); Conflict when the earlier
    record is already in this session."""
    attendance = store.Attendance.get_or_none(
        (store.Attendance.id == attendance_id) & (store.Attendance.session == group)
    )
    earlier = store.Patient.get_or_none(store.Patient.id == patient_id)
    if earlier is not None and not visible(earlier):
        earlier = None
    if attendance is None or earlier is None or earlier.id == attendance.patient_id:
        raise Invalid("Choose a person in this session and an earlier record.")
    already = store.Attendance.get_or_none(
        (store.Attendance.session == group) & (store.Attendance.patient == earlier)
    )
    if already is not None:
        raise Conflict("That earlier record is already in this session.")
    joined = attendance.patient
    with store.transaction():
        for model in (store.Consent, store.QuestionnaireResponse, store.RiskFlag):
            for row in model.select().where(model.patient == joined):
                row.patient = earlier
                row.save()
        attendance.patient = earlier
        attendance.save()
        joined.active = False
        joined.save()
    store.audit(actor, "patient.match", f"attendance/{attendance.id}")
    return attendance
