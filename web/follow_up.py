"""Risk that cannot be missed: the "needs follow-up" list, recording what was done, and the
open flags of a session for the facilitator's call view.

Only a patient's care team sees their flags (and admins, each cross-team sight audited): the
list is built from the signed-in user's care (appliance/clinical/follow_up.py), and recording
a follow-up loads the patient through `care_patient` (404 outside one's care).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from appliance.clinical.follow_up import (
    MAX_NOTE,
    OUTCOMES,
    FollowUpError,
    open_flags,
    open_flags_in_care,
    open_flags_of_session,
    record_follow_up,
)
from appliance.store.store import Store
from web.access import NO_PATIENT, care_patient, clinical_required, team_session, visible_patient
from web.app_state import current_box
from web.auth import staff_user

bp = Blueprint("follow_up", __name__)


def _store() -> Store:
    return current_box().store


def flags_for_banner() -> list[Any]:
    """The open flags of the signed-in user's own care (an admin's too: the dashboard
    banner never widens to other teams; the full list is one click away, audited)."""
    return open_flags_in_care(_store(), staff_user())


def _flags_to_show() -> list[Any]:
    user = staff_user()
    if user.role == "admin":
        # Every open flag on the box; each one outside the admin's teams is audited.
        return [f for f in open_flags(_store()) if visible_patient(f.patient)]
    return open_flags_in_care(_store(), user)


def _list_page(errors: dict[str, str] | None = None, form: Any = None, status: int = 200) -> Any:
    flags = _flags_to_show()
    for flag in flags:
        _store().audit(f"user:{staff_user().id}", "record.read", f"risk_flag/{flag.id}")
    page = render_template(
        "follow_up.html",
        flags=flags,
        outcomes=OUTCOMES,
        errors=errors or {},
        form=form or {},
        max_note=MAX_NOTE,
    )
    return page, status


@bp.get("/follow-up")
@clinical_required
def follow_up_list() -> ResponseReturnValue:
    """Open risk flags of the patients in one's care, oldest first, each with its form."""
    return _list_page()


@bp.post("/follow-up/<flag_id>")
@clinical_required
def record(flag_id: str) -> ResponseReturnValue:
    """Record what was done about one flag: it then leaves the list (audited)."""
    store = _store()
    flag = store.RiskFlag.get_or_none(store.RiskFlag.id == flag_id)
    if flag is None:
        abort(404, description=NO_PATIENT)
    care_patient(flag.patient_id)  # 404 outside one's care, cross-team audited
    try:
        record_follow_up(
            store,
            flag,
            staff_user(),
            request.form.get("outcome") or "",
            request.form.get("note") or "",
        )
    except FollowUpError as exc:
        return _list_page({flag.id: str(exc)}, request.form, 400)
    store.audit(f"user:{staff_user().id}", "risk.follow_up", f"risk_flag/{flag.id}")
    return redirect(url_for("follow_up.follow_up_list"))


@bp.get("/sessions/<session_id>/risk")
@clinical_required
def session_risk(session_id: str) -> Response:
    """For the facilitator's call view: the seats (attendance ids) of people in this session
    with an open risk flag. Ids only: the tile already shows the name."""
    group, _grant = team_session(session_id)
    store = _store()
    flagged = {f.patient_id for f in open_flags_of_session(store, group)}
    Attendance = store.Attendance  # noqa: N806
    seats = [
        a.id
        for a in Attendance.select(Attendance.id, Attendance.patient).where(
            Attendance.session == group.id
        )
        if a.patient_id in flagged
    ]
    response = jsonify(attendances=seats)
    response.headers["Cache-Control"] = "no-store"
    return response
