"""When a session's join code works: from shortly before its start to a while after it.

A code that works only around its session is worth little to a guesser and cannot be used
weeks later from an old text message. The facilitator starting the session early opens it
early; nothing keeps it open past the late bound (latecomers then ask the clinic).
Start times are the clinic's local time without a zone (web/portal.py), compared with the
box's local clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class JoinWindow:
    """Minutes before a session's start its code opens, and after its start it closes."""

    opens_before_min: int = 30
    closes_after_min: int = 120

    def bounds(self, starts_at: datetime) -> tuple[datetime, datetime]:
        return (
            starts_at - timedelta(minutes=self.opens_before_min),
            starts_at + timedelta(minutes=self.closes_after_min),
        )

    def refusal(self, starts_at: object, state: str, now: datetime | None = None) -> str | None:
        """Why the code cannot be used now (a sentence for the patient), or None."""
        start = as_local(starts_at)
        if start is None:
            return None
        current = datetime.now() if now is None else now
        opens, closes = self.bounds(start)
        if current >= closes:
            return (
                f"Joining this session closed at {_clock(closes)} on {_day(closes)}. "
                "Please contact your clinic."
            )
        if current < opens and state != "live":
            return (
                f"This session opens for joining at {_clock(opens)} on {_day(opens)}, "
                f"{self.opens_before_min} minutes before it starts. Please come back then."
            )
        return None


def as_local(value: object) -> datetime | None:
    """A naive local datetime from what the store holds (datetime, or text it could not parse)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is not None:
        value = value.astimezone().replace(tzinfo=None)
    return value


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M")


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment.strftime('%B %Y')}"
