"""Rejoin after Leave: a patient who left the call goes back to the same seat while the
session runs, without a new consent, waiting room or patient record.

Only a seat its patient left themselves (`left`): someone removed or turned away by the
facilitator needs a new admission. The facilitator's lock keeps out newcomers, not a patient
who was already admitted, so a locked room still lets them back; a full one does not.
"""

from __future__ import annotations

from flask import Blueprint, abort, redirect, session, url_for
from flask.typing import ResponseReturnValue

from web.app_state import current_box

bp = Blueprint("rejoin", __name__)


@bp.post("/join/rejoin")
def rejoin() -> ResponseReturnValue:
    """Back to the call on the patient's own seat (their cookie names it)."""
    store = current_box().store
    Attendance = store.Attendance  # noqa: N806
    attendance_id = session.get("attendance")
    seat = Attendance.get_or_none(Attendance.id == attendance_id) if attendance_id else None
    if seat is None:
        abort(403, description="Join the session with its code first.")
    if seat.status == "admitted":
        return redirect(url_for("call.patient_call"))
    if seat.status != "left":
        abort(
            409, description="The facilitator has to let you in again. Please contact your clinic."
        )
    group = seat.session
    if group.state in ("ended", "cancelled"):
        abort(
            409, description="The session has ended, so the call is closed. Thank you for joining."
        )
    taken = (
        Attendance.select()
        .where((Attendance.session == group) & (Attendance.status << ("waiting", "admitted")))
        .count()
    )
    if taken >= group.capacity - 1:  # the facilitator holds one place
        abort(
            409,
            description="The session is full at the moment. Try again in a few "
            "minutes, or contact your clinic.",
        )
    seat.status = "admitted"
    seat.left_at = None
    seat.save()
    store.audit(f"patient/{seat.patient_id}", "attendance.rejoined", f"attendance/{seat.id}")
    return redirect(url_for("call.patient_call"))
