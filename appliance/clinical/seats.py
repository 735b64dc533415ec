"""What became of a patient's seat in a session, in the words the session page uses.

The store keeps five states (waiting, admitted, left, removed, absent). A person turned away
from the waiting room and a person removed from the call are both `removed`; they differ in
`left_at`, which is set only when someone admitted leaves the session (the portal's admit
view stamps it on removal, the patient's Leave on leaving). So "denied" needs no new state.
"""

from __future__ import annotations

from typing import Any

SEAT_STATES = ("waiting", "admitted", "left", "removed", "denied", "absent")


def seat_status(attendance: Any) -> str:
    """`attendance`'s status for people: waiting, admitted, left, removed, denied or absent."""
    if attendance.status == "removed" and attendance.left_at is None:
        return "denied"
    return str(attendance.status)
