"""What a facilitator pushes to a running session's patients: the live-session state.

Questionnaire prompts, a broadcast message and one quick poll are kept in the encrypted store
(`SessionLive`, one row per session), so a restart of the box loses none of them. A poll keeps
its question, options, open state and per-option counts; who chose what is kept only while the
poll is open (so an answer can be changed) and dropped when it closes. Breakout-room
assignments live in memory, like the call they split (the SFU's rooms end with the process).
Patients read all of it from their waiting page (plain HTML) or, in the call, from
`/join/state` every few seconds.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from appliance.clinical.questionnaires import INSTRUMENTS, Instrument
from appliance.store.models import SessionLive
from appliance.store.store import Store

MAX_MESSAGE = 200
MAX_OPTIONS = 5
MAX_ROOMS = 6


@dataclass
class Poll:
    """A quick poll: one question, 2-5 options, one answer per attendee (changeable while open)."""

    poll_id: int
    question: str
    options: list[str]
    counts: list[int]
    open: bool = True
    # attendance id -> chosen option; emptied when the poll closes.
    votes: dict[str, int] = field(default_factory=dict)

    @property
    def answered(self) -> int:
        return sum(self.counts)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.poll_id,
            "question": self.question,
            "options": self.options,
            "counts": self.counts,
            "open": self.open,
            "votes": self.votes,
        }

    @classmethod
    def from_record(cls, doc: dict[str, Any]) -> Poll:
        return cls(
            int(doc["id"]),
            str(doc["question"]),
            list(doc["options"]),
            [int(c) for c in doc["counts"]],
            bool(doc["open"]),
            dict(doc["votes"]),
        )


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
    """All sessions' pushed state, safe to use from the WSGI threads.

    Every change is a read-modify-write of the session's `SessionLive` row under one lock and
    one store transaction, so concurrent votes are all counted.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._rooms: dict[str, tuple[dict[str, int], dict[int, int]]] = {}
        self._lock = threading.Lock()

    # --- stored: prompts, message, poll ----------------------------------------------
    def _row(self, session_id: str) -> SessionLive:
        """The session's stored row, or an unsaved empty one."""
        Row = self._store.SessionLive  # noqa: N806
        row = Row.get_or_none(Row.session == session_id)
        return row if row is not None else Row(session=session_id)

    def _read(self, session_id: str) -> LiveSession:
        row = self._row(session_id)
        rooms, visiting = self._rooms.get(session_id, ({}, {}))
        return LiveSession(
            list(row.asked or []),
            row.message or "",
            Poll.from_record(row.poll) if row.poll else None,
            dict(rooms),
            dict(visiting),
        )

    def _change(self, session_id: str, **fields: Any) -> None:
        row = self._row(session_id)
        for name, value in fields.items():
            setattr(row, name, value)
        row.save()

    def ask(self, session_id: str, code: str) -> None:
        with self._lock, self._store.transaction():
            asked = self._read(session_id).asked
            if code not in asked:
                self._change(session_id, asked=[*asked, code])

    def asked(self, session_id: str) -> list[Instrument]:
        with self._lock:
            return [INSTRUMENTS[c] for c in self._read(session_id).asked]

    def broadcast(self, session_id: str, message: str) -> None:
        with self._lock, self._store.transaction():
            self._change(session_id, message=message or None)

    def start_poll(self, session_id: str, question: str, options: list[str]) -> None:
        with self._lock, self._store.transaction():
            last = self._read(session_id).poll
            poll = Poll((last.poll_id if last else 0) + 1, question, options, [0] * len(options))
            self._change(session_id, poll=poll.to_record())

    def close_poll(self, session_id: str) -> None:
        """Close the poll: its counts stay, who chose what is forgotten."""
        with self._lock, self._store.transaction():
            poll = self._read(session_id).poll
            if poll is not None and poll.open:
                poll.open, poll.votes = False, {}
                self._change(session_id, poll=poll.to_record())

    def vote(self, session_id: str, attendance_id: str, choice: int) -> bool:
        """Record a vote; False when there is no open poll or the choice is out of range."""
        with self._lock, self._store.transaction():
            poll = self._read(session_id).poll
            if poll is None or not poll.open or not 0 <= choice < len(poll.options):
                return False
            earlier = poll.votes.get(attendance_id)
            if earlier == choice:
                return True
            if earlier is not None:
                poll.counts[earlier] -= 1
            poll.counts[choice] += 1
            poll.votes[attendance_id] = choice
            self._change(session_id, poll=poll.to_record())
            return True

    # --- in memory: breakout rooms ----------------------------------------------------
    def split(self, session_id: str, attendance_ids: list[str], rooms: int) -> None:
        """Deal the attendees into `rooms` breakout rooms, in turn."""
        with self._lock:
            self._rooms[session_id] = ({a: i % rooms + 1 for i, a in enumerate(attendance_ids)}, {})

    def visit(self, session_id: str, user_id: int, room: int) -> bool:
        """Put a facilitator in breakout `room` (0: the main room); False if there is none."""
        with self._lock:
            rooms, visiting = self._rooms.setdefault(session_id, ({}, {}))
            if room != 0 and room not in rooms.values():
                return False
            if room:
                visiting[user_id] = room
            else:
                visiting.pop(user_id, None)
            return True

    def bring_back(self, session_id: str) -> None:
        with self._lock:
            self._rooms.pop(session_id, None)

    # --- reading ------------------------------------------------------------------------
    def snapshot(self, session_id: str) -> LiveSession:
        """A copy to render from."""
        with self._lock:
            return self._read(session_id)

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
