"""The call page: served to admitted patients and to clinicians; the browser client is call.js.

The page itself is static HTML plus one script and one stylesheet; media and in-call events
go to the SFU's signalling endpoint (web/media_api.py) with the join token given here.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from flask import Blueprint, abort, redirect, render_template, session, url_for
from flask.typing import ResponseReturnValue

from appliance.clinical.join_window import JoinWindow, as_local
from appliance.media.join_token import DEFAULT_TTL_S, issue, verify
from appliance.store.models import GroupSession
from web.access import clinical_required, team_session
from web.app_state import current_box
from web.auth import staff_user
from web.call_strings import call_strings_json
from web.live import live_sessions
from web.remote_seat import turn_grant

bp = Blueprint("call", __name__)


# A patient's token never outlives the session by more than this after its join window
# closes: sessions have no recorded end, and a group runs well inside it.
PATIENT_OVERRUN = timedelta(hours=2)


def _join_token(
    group: GroupSession, participant: str, role: str, ttl_s: int = DEFAULT_TTL_S
) -> str:
    """A join token for this seat, checked by the SFU's signalling endpoint."""
    return issue(
        current_box(), session_id=group.id, participant=participant, role=role, ttl_s=ttl_s
    )


def patient_token_ttl(group: GroupSession) -> int:
    """Seconds a patient's join token may live: 4 h at most, and never past the session's
    join window plus `PATIENT_OVERRUN` (0 or less: the session is over)."""
    start = as_local(group.starts_at)
    if start is None:
        return DEFAULT_TTL_S
    settings = current_box().settings
    window = JoinWindow(settings.join_opens_minutes_before, settings.join_closes_minutes_after)
    ends = window.bounds(start)[1] + PATIENT_OVERRUN
    return min(DEFAULT_TTL_S, int(ends.timestamp() - time.time()))


def _ice_servers(token: str) -> list[dict[str, Any]]:
    """The browser's iceServers: the centre's TURN relay for a remote seat, none on the LAN.

    Its credentials expire with the join token.
    """
    box = current_box()
    claims = verify(box, token)
    grant = turn_grant(box, claims.participant_id, claims.expires_at)
    return [] if grant is None else grant.browser_ice_servers()


@bp.get("/call")
def patient_call() -> ResponseReturnValue:
    store = current_box().store
    attendance_id = session.get("attendance")
    attendance = (
        store.Attendance.get_or_none(store.Attendance.id == attendance_id)
        if attendance_id
        else None
    )
    if attendance is None:
        return redirect(url_for("join.enter_code"))
    if attendance.status != "admitted":
        return redirect(url_for("join.waiting"))
    group = attendance.session
    ttl = patient_token_ttl(group)
    if ttl <= 0:
        abort(403, description="This session's time is over. Please contact your clinic.")
    token = _join_token(group, f"attendance/{attendance.id}", "patient", ttl)
    return render_template(
        "call.html",
        group=group,
        me=attendance.display_name,
        role="patient",
        token=token,
        leave_url=url_for("join.leave"),
        asked=live_sessions().asked(group.id),
        ice_servers=_ice_servers(token),
        call_strings=call_strings_json(),
    )


@bp.get("/sessions/<session_id>/call")
@clinical_required
def clinician_call(session_id: str) -> ResponseReturnValue:
    """The facilitator's call view, for the session's team (and admins, audited)."""
    store = current_box().store
    group, _grant = team_session(session_id)
    if group.state == "ended":
        abort(409, description="This session has ended, so its call is closed.")
    user = staff_user()
    token = _join_token(group, f"user:{user.id}", "facilitator")
    store.audit(f"user:{user.id}", "call.join", f"group_session/{group.id}")
    return render_template(
        "call.html",
        group=group,
        me=user.username,
        role="facilitator",
        token=token,
        leave_url=url_for("portal.session_detail", session_id=group.id),
        asked=[],
        ice_servers=_ice_servers(token),
        call_strings=call_strings_json(),
    )
