"""A group session's life: scheduled, then live, then ended; lockable while it runs.

An ended session stays ended (a new meeting is a new session, with new codes); only `end`
may be repeated on it, so a second tap on End is harmless.
"""

from __future__ import annotations

from appliance.clinical.errors import Conflict, Invalid
from appliance.store.models import GroupSession

# action -> the state it leads to; the lock actions leave the state as it is.
TRANSITIONS = {"start": "live", "end": "ended"}
LOCKS = {"lock": True, "unlock": False}


def check_change(group: GroupSession, action: str) -> None:
    """Invalid for an unknown action; Conflict for anything but `end` once it has ended."""
    if action not in TRANSITIONS and action not in LOCKS:
        raise Invalid("Unknown action.")
    if group.state == "ended" and action != "end":
        raise Conflict("This session has ended; schedule a new one to meet again.")


def change_state(group: GroupSession, action: str) -> None:
    """Apply `action` (checked with `check_change` first) and save the session."""
    check_change(group, action)
    if action in LOCKS:
        group.locked = LOCKS[action]
    else:
        group.state = TRANSITIONS[action]
    group.save()
