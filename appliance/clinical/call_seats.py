"""Who may take a seat in a session's call: checked at every SDP offer, not only when the call
page issued the join token, so someone removed or taken off the team since then cannot come
back with an old token."""

from __future__ import annotations

from appliance.clinical.access import may_join_call_as_staff
from appliance.clinical.errors import NotAllowed, NotFound
from appliance.store.models import GroupSession
from appliance.store.store import Store

# The "error" field of the call API's refusals (`POST /api/media/offer`).
CALL_TOPIC = "media"


def call_seat(store: Store, room_id: str, participant_id: str) -> tuple[GroupSession, str]:
    """The live session and the participant's display name; NotFound when there is no such
    session, NotAllowed for every other reason they cannot join."""
    group = store.GroupSession.get_or_none(store.GroupSession.id == room_id)
    if group is None:
        raise NotFound("there is no such session", topic=CALL_TOPIC)
    if group.state in ("ended", "cancelled"):
        raise NotAllowed("this session has ended", topic=CALL_TOPIC)
    if participant_id.startswith("attendance/"):
        attendance = store.Attendance.get_or_none(
            store.Attendance.id == participant_id.split("/", 1)[1]
        )
        if attendance is None or attendance.session_id != group.id:
            raise NotAllowed("this seat is not part of the session", topic=CALL_TOPIC)
        if attendance.status != "admitted":
            raise NotAllowed("you have not been admitted to the call yet", topic=CALL_TOPIC)
        return group, attendance.display_name or "Guest"
    if participant_id.startswith("user:"):
        user = store.User.get_or_none(store.User.id == participant_id.split(":", 1)[1])
        if user is None or not user.active:
            raise NotAllowed("this account cannot join", topic=CALL_TOPIC)
        if not may_join_call_as_staff(store, user, group):
            raise NotAllowed("this account does not run this session", topic=CALL_TOPIC)
        return group, user.username
    raise NotAllowed("this seat is not part of the session", topic=CALL_TOPIC)
