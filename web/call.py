"""The call page: served to admitted patients and to clinicians; the browser client is call.js.

The page itself is static HTML plus one script and one stylesheet; media and in-call events
go to the SFU's signalling endpoint (web/media_api.py) with the join token given here.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, render_template, session, url_for

from appliance.media.join_token import issue
from web import current_box
from web.access import clinical_required, team_session
from web.auth import current_user
from web.live import live_sessions

bp = Blueprint("call", __name__)


def _join_token(group: Any, participant: str, role: str) -> str:
    """A join token for this seat, checked by the SFU's signalling endpoint."""
    return issue(current_box(), session_id=group.id, participant=participant, role=role)


@bp.get("/call")
def patient_call() -> Any:
    store = current_box().store
    attendance_id = session.get("attendance")
    attendance = (
        store.Attendance.get_or_none(store.Attendance.id == attendance_id)
        if attendance_id else None
    )
    if attendance is None:
        return redirect(url_for("join.enter_code"))
    if attendance.status != "admitted":
        return redirect(url_for("join.waiting"))
    group = attendance.session
    token = _join_token(group, f"attendance/{attendance.id}", "patient")
    return render_template(
        "call.html", group=group, me=attendance.display_name, role="patient", token=token,
        leave_url=url_for("join.leave"), asked=live_sessions().asked(group.id),
    )


@bp.get("/sessions/<session_id>/call")
@clinical_required
def clinician_call(session_id: str) -> Any:
    """The facilitator's call view, for the session's team (and admins, audited)."""
    store = current_box().store
    group, _grant = team_session(session_id)
    if group.state == "ended":
        abort(409, description="This session has ended, so its call is closed.")
    user = current_user()
    token = _join_token(group, f"user:{user.id}", "facilitator")
    store.audit(f"user:{user.id}", "call.join", f"group_session/{group.id}")
    return render_template(
        "call.html", group=group, me=user.username, role="facilitator", token=token,
        leave_url=url_for("portal.session_detail", session_id=group.id), asked=[],
    )
