"""The room's data-channel protocol: in-call events between the box and each participant.

When a participant's data channel opens the box speaks first: `welcome` (the room as this
participant sees it, its resume token and the seat it resumes), one `participant` event per
other person, then its `slots`. Each message a participant sends is a JSON object checked
against its event rate; chat, hands and mute states reach only the sender's breakout room; a
facilitator's `mute`, `remove`, `pin` and `lock` drive the room's own controls.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from aiortc import RTCDataChannel

from appliance.media.participant import DEFAULT_LAST_N, Participant
from appliance.media.seat import HeldSeat

log = logging.getLogger(__name__)

MAX_CHAT_CHARS = 1000

# Stores a chat line: (participant id, text).
ChatSink = Callable[[str, str], Awaitable[None]]


class Membership(Protocol):
    """What the protocol reads of its room, and the controls a facilitator's events drive
    (`appliance.media.room.Room`)."""

    id: str
    participants: dict[str, Participant]
    held: dict[str, HeldSeat]
    locked: bool
    pinned: str | None
    speakers: dict[int, str]

    def mute(self, participant_id: str, on: bool = True) -> None: ...

    async def remove(self, participant_id: str) -> None: ...

    def pin(self, participant_id: str | None) -> None: ...

    def lock(self, on: bool = True) -> None: ...

    def set_last_n(self, participant_id: str, last_n: int) -> None: ...


def broadcast(
    participants: Iterable[Participant],
    event: dict[str, Any],
    exclude: Participant | None = None,
    breakout: int | None = None,
) -> None:
    """Send `event` to each of `participants` but `exclude`; only to breakout room `breakout`
    if given."""
    for p in list(participants):
        if p is not exclude and (breakout is None or p.breakout == breakout):
            p.send(event)


class CallEvents:
    """One room's side of every participant's data channel."""

    def __init__(self, room: Membership, on_chat: ChatSink | None = None) -> None:
        self.room = room
        # Where chat lines are stored (the session's record), if the session keeps chat.
        self.on_chat = on_chat

    def open(self, me: Participant, channel: RTCDataChannel, on_close: Callable[[], None]) -> None:
        """`me`'s data channel opened: listen to it and welcome them; `on_close` runs when it
        closes (a goodbye or a dropped connection: the room tells which)."""
        me.channel = channel
        channel.on("message", lambda message: self.on_message(me, message))
        channel.on("close", on_close)
        self.welcome(me)

    def broadcast(
        self,
        event: dict[str, Any],
        exclude: Participant | None = None,
        breakout: int | None = None,
    ) -> None:
        """Send `event` to everyone in the room (but `exclude`); only to breakout room
        `breakout` if given."""
        broadcast(self.room.participants.values(), event, exclude, breakout)

    def welcome(self, me: Participant) -> None:
        """Tell `me` the room as they see it, who else is there, and their slots."""
        room = self.room
        me.send(
            {
                "type": "welcome",
                "participant": me.id,
                "locked": room.locked,
                "speaker": room.speakers.get(me.breakout),
                "pinned": room.pinned,
                "breakout": me.breakout,
                "resume": me.resume,
                "muted": me.muted,
                "hand": me.hand_raised,
                "reconnecting": sorted(room.held),
                "participants": [
                    {
                        "participant": p.id,
                        "name": p.name,
                        "role": p.role,
                        "muted": p.muted,
                        "self_muted": p.self_muted,
                        "hand": p.hand_raised,
                    }
                    for p in room.participants.values()
                    if p is not me
                ],
            }
        )
        for p in room.participants.values():
            if p is not me:
                me.send({"type": "participant", "participant": p.id, "name": p.name})
        me.send({"type": "slots", **me.slot_map()})

    def on_message(self, me: Participant, message: object) -> None:
        """Act on one message from `me`; anything malformed or too fast is dropped."""
        if not isinstance(message, str) or len(message) > 4 * MAX_CHAT_CHARS:
            return
        try:
            event = json.loads(message)
        except (ValueError, RecursionError):
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind != "leave" and not me.rate.allow(kind, len(str(event.get("text", "")))):
            if me.rate.should_notice():
                me.send(
                    {
                        "type": "notice",
                        "text": "You are sending messages too fast: "
                        "some were not delivered. Wait a moment.",
                    }
                )
            return
        # Chat, hands and mute states stay inside the sender's breakout room.
        if kind == "chat":
            text = str(event.get("text", "")).strip()[:MAX_CHAT_CHARS]
            if text:
                self.broadcast(
                    {"type": "chat", "participant": me.id, "from": me.name, "text": text},
                    breakout=me.breakout,
                )
                if self.on_chat is not None:
                    asyncio.get_running_loop().create_task(self._store_chat(me.id, text))
        elif kind == "hand":
            me.hand_raised = bool(event.get("raised"))
            self.broadcast(
                {"type": "hand", "participant": me.id, "raised": me.hand_raised},
                breakout=me.breakout,
            )
        elif kind == "leave":
            me.leaving = True  # the channel's close that follows is a goodbye, not a drop
        elif kind == "self-mute":
            me.self_muted = bool(event.get("on"))
            self.broadcast(
                {"type": "muted", "participant": me.id, "on": me.self_muted, "self": True},
                exclude=me,
                breakout=me.breakout,
            )
        elif kind == "data-saver":
            self.room.set_last_n(me.id, 0 if event.get("on") else DEFAULT_LAST_N)
        elif me.is_facilitator:
            self._facilitator_action(me, kind, event)

    async def _store_chat(self, participant_id: str, text: str) -> None:
        assert self.on_chat is not None
        try:
            await self.on_chat(participant_id, text)
        except Exception as exc:  # storing must never break the call
            log.warning("room %s: chat not stored: %s", self.room.id, type(exc).__name__)

    def _facilitator_action(self, me: Participant, kind: object, event: dict[str, Any]) -> None:
        room = self.room
        target = str(event.get("participant", ""))
        if kind == "mute" and target in room.participants:
            room.mute(target, bool(event.get("on", True)))
        elif kind == "remove" and target in room.participants and target != me.id:
            asyncio.get_running_loop().create_task(room.remove(target))
        elif kind == "pin":
            room.pin(target if target in room.participants else None)
        elif kind == "lock":
            room.lock(bool(event.get("on", True)))
