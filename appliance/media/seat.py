"""A seat kept for a participant whose connection dropped, until they come back or the grace ends.

aiortc has no ICE restart, so a client whose transport failed (a phone that changed network,
a cut longer than ICE consent allows) joins again with a new peer connection. If it presents
the resume token it got in its welcome event within `GRACE_S`, it gets its seat back: the
facilitator's mute, its raised hand, its data-saver choice (its breakout room is kept by the
room, its downlink estimate by the adaptation). The others see "reconnecting", not "left".
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

from appliance.media.event_rate import EventRate

GRACE_S = 60.0


def new_resume_token() -> str:
    """A random, unguessable token for one seat (kept in memory only)."""
    return secrets.token_urlsafe(18)


@dataclass
class HeldSeat:
    """What a participant gets back on resuming."""

    participant_id: str
    role: str
    name: str
    resume: str
    muted: bool
    hand_raised: bool
    last_n: int
    # The seat's event-rate buckets (appliance/media/event_rate.py): reconnecting refills none.
    rate: EventRate | None = None
    held_at: float = field(default_factory=time.monotonic)

    def matches(self, resume: object) -> bool:
        return isinstance(resume, str) and hmac.compare_digest(resume, self.resume)
