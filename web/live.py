"""What a facilitator pushes to a running session's patients, held in memory.

Questionnaire prompts, a broadcast message, one quick poll and breakout-room assignments.
None of it is a clinical record (poll answers are counted, not kept per person after the
poll closes, and vanish on restart); the records themselves go to the store. Patients read it
from their waiting page (plain HTML) or, in the call, from `/join/state` every few seconds.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app

from appliance.clinical.questionnaires import INSTRUMENTS, Instrument

MAX_MESSAGE = 200
MAX_OPTIONS = 5
MAX_ROOMS = 6


@dataclass
class Poll:
    """A quick poll: one question, 2-5 options, one vote per attendee (changeable)."""

    poll_id: int
    question: str
    options: list[str]
    votes: dict[str, int] = field(default_factory=dict)
    open: bool = True

    def counts(self) -> list[int]:
        tally = [0] * len(self.options)
        for choice in self.votes.values():
            tally[choice] += 1
        return tally


@dataclass
class LiveSession:
    """The pushed state of one session."""

    asked: list[str] = field(default_factory=list)
    message: str = ""
    poll: Poll | None = None
    # attendance id -> breakout room number (1-based); empty means everyone together.
    rooms: dict[str, int] = field(default_factory=dict)
    # staff user id -> the breakout room they chose to join (absent: the main room).
    visiting: dict[int, int] = field(default_factory=dict)

    def media_groups(self) -> dict[str, int]:
        """The split as the SFU takes it: media participant ids to breakout numbers."""
        groups = {f"attendance/{a}": n for a, n in self.rooms.items()}
        groups.update({f"user:{u}": n for u, n in self.visiting.items()})
        return groups


class LiveSessions:
    """All sessions' pushed state, safe to use from the WSGI threads."""

    def __init__(self) -> None:
        self._sessions: dict[str, LiveSession] = {}
        self._lock = threading.Lock()
        self._poll_ids = itertools.count(1)

    def _get(self, session_id: str) -> LiveSession:
        return self._sessions.setdefault(session_id, LiveSession())

    def ask(self, session_id: str, code: str) -> None:
        with self._lock:
            asked = self._get(session_id).asked
            if code not in asked:
                asked.append(code)

    def asked(self, session_id: str) -> list[Instrument]:
        with self._lock:
            return [INSTRUMENTS[c] for c in self._get(session_id).asked]

    def broadcast(self, session_id: str, message: str) -> None:
        with self._lock:
            self._get(session_id).message = message

    def start_poll(self, session_id: str, question: str, options: list[str]) -> None:
        with self._lock:
            self._get(session_id).poll = Poll(next(self._poll_ids), question, options)

    def close_poll(self, session_id: str) -> None:
        with self._lock:
            poll = self._get(session_id).poll
            if poll is not None:
                poll.open = False

    def vote(self, session_id: str, attendance_id: str, choice: int) -> bool:
        """Record a vote; False when there is no open poll or the choice is out of range."""
        with self._lock:
            poll = self._get(session_id).poll
            if poll is None or not poll.open or not 0 <= choice < len(poll.options):
                return False
            poll.votes[attendance_id] = choice
            return True

    def split(self, session_id: str, attendance_ids: list[str], rooms: int) -> None:
        """Deal the attendees into `rooms` breakout rooms, in turn."""
        with self._lock:
            self._get(session_id).rooms = {
                a: i % rooms + 1 for i, a in enumerate(attendance_ids)
            }

    def visit(self, session_id: str, user_id: int, room: int) -> bool:
        """Put a facilitator in breakout `room` (0: the main room); False if there is none."""
        with self._lock:
            live = self._get(session_id)
            if room != 0 and room not in live.rooms.values():
                return False
            if room:
                live.visiting[user_id] = room
            else:
                live.visiting.pop(user_id, None)
            return True

    def bring_back(self, session_id: str) -> None:
        with self._lock:
            live = self._get(session_id)
            live.rooms, live.visiting = {}, {}

    def snapshot(self, session_id: str) -> LiveSession:
        """A copy to render from, without holding the lock."""
        with self._lock:
            live = self._get(session_id)
            poll = None
            if live.poll is not None:
                p = live.poll
                poll = Poll(p.poll_id, p.question, list(p.options), dict(p.votes), p.open)
            return LiveSession(
                list(live.asked), live.message, poll, dict(live.rooms), dict(live.visiting)
            )

    def for_patient(self, session_id: str, attendance_id: str) -> dict[str, Any]:
        """What one patient sees: prompts, message, the poll (and their vote), their room."""
        live = self.snapshot(session_id)
        poll = None
        if live.poll is not None and live.poll.open:
            poll = {
                "id": live.poll.poll_id,
                "question": live.poll.question,
                "options": live.poll.options,
                "voted": live.poll.votes.get(attendance_id),
            }
        return {
            "asked": [{"code": c, "title": INSTRUMENTS[c].title} for c in live.asked],
            "message": live.message,
            "poll": poll,
            "room": live.rooms.get(attendance_id),
        }


def init_app(app: Flask) -> None:
    app.extensions["clinicbox.live"] = LiveSessions()


def live_sessions() -> LiveSessions:
    """The app's `LiveSessions`."""
    return current_app.extensions["clinicbox.live"]
