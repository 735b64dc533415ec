"""A session's waiting room: admit one, admit all, deny, or remove someone already admitted.

The store has no "denied" state: a refused patient is `removed` before admission (no
`left_at`), which `seats.seat_status` tells apart from a removal from the call.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.clinical.errors import Invalid, NotFound
from appliance.store.models import Attendance, GroupSession, utcnow
from appliance.store.store import Store

ACTIONS = ("admit_all", "admit", "deny", "remove")


@dataclass(frozen=True)
class SeatChange:
    """What one waiting-room action did: the seats it changed and their new status."""

    action: str
    changed: list[Attendance]
    status: str

    @property
    def removed_from_call(self) -> Attendance | None:
        """The admitted person this action took out, who must also leave the running call."""
        return self.changed[0] if self.action == "remove" else None


def change_seats(
    store: Store, group: GroupSession, action: str, attendance_id: str, actor: str
) -> SeatChange:
    """Apply `action` to the waiting room (or, for `remove`, to an admitted seat), in one
    transaction, and audit each seat as `actor`. Invalid for an unknown action; NotFound
    when the person is no longer waiting (or, to remove, not in the session)."""
    Seat = store.Attendance  # noqa: N806
    waiting = Seat.select().where((Seat.session == group) & (Seat.status == "waiting"))
    if action == "admit_all":
        chosen = list(waiting)
        status = "admitted"
    elif action in ("admit", "deny"):
        chosen = [a for a in waiting if a.id == attendance_id]
        if not chosen:
            raise NotFound("That person is no longer waiting.")
        status = "admitted" if action == "admit" else "removed"
    elif action == "remove":
        chosen = list(
            Seat.select().where(
                (Seat.session == group) & (Seat.status == "admitted") & (Seat.id == attendance_id)
            )
        )
        if not chosen:
            raise NotFound("That person is not in the session.")
        status = "removed"
    else:
        raise Invalid("Unknown waiting-room action.")
    with store.transaction():
        for attendance in chosen:
            if attendance.status == "admitted":
                attendance.left_at = utcnow()
            attendance.status = status
            attendance.save()
    for attendance in chosen:
        store.audit(actor, f"attendance.{status}", f"attendance/{attendance.id}")
    return SeatChange(action, chosen, status)
