"""A subscriber who leaves for good leaves nothing behind in the room's adaptation: its link
record, its estimator and policy in the session, and what its publications brought in."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import Any

from appliance.media.adaptive import RoomAdaptation
from appliance.media.publication import Publication
from tests.media.conftest import Sfu
from tests.media.peer import Peer, wait_for


def traces_of(participant_id: str, root: object) -> list[str]:
    """Where `participant_id` (as a key, a value or a publication of theirs) is still held in
    the adaptation state under `root`: the box's own objects, their containers and fields."""
    found: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[str, object]] = [("adaptation", root)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if value == participant_id:
                found.append(path)
            continue
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, Publication):
            if value.participant_id == participant_id:
                found.append(path)
        elif isinstance(value, dict):
            for key, item in value.items():
                stack.append((f"{path}[{key!r}]", key))
                stack.append((f"{path}[{key!r}]", item))
        elif isinstance(value, list | tuple | set | frozenset):
            stack.extend((f"{path}[]", item) for item in value)
        elif type(value).__module__.startswith("appliance.media"):
            fields: Iterable[tuple[str, Any]]
            if dataclasses.is_dataclass(value):
                fields = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
            else:
                fields = getattr(value, "__dict__", {}).items()
            stack.extend((f"{path}.{name}", item) for name, item in fields)
    return found


async def _traces(adaptation: RoomAdaptation, participant_id: str) -> list[str]:
    return traces_of(participant_id, adaptation)


async def _ticks(adaptation: RoomAdaptation) -> int:
    return adaptation.ticks


def test_a_departed_subscriber_leaves_nothing_in_the_adaptation(sfu: Sfu) -> None:
    async def scenario() -> None:
        a, b = Peer("a"), Peer("b")
        ida, idb = sfu.admit("A"), sfu.admit("B")
        try:
            await sfu.join(a, ida)
            await sfu.join(b, idb)
            room = sfu.box.rooms.rooms[sfu.session_id]
            adaptation = room.adaptation

            def planned_with_feedback() -> bool:
                people = list(room.participants.values())
                return len(people) == 2 and all(
                    p.link is not None and p.link.rtt_s is not None for p in people
                )

            assert await wait_for(planned_with_feedback, 15)
            # The scan finds what the adaptation holds of a subscriber in the call.
            held = sfu.box.media.call(_traces(adaptation, idb), timeout=5)
            assert any(".links[" in where for where in held), held
            assert any(".session." in where for where in held), held

            b.send({"type": "leave"})
            await b.close()
            assert await wait_for(lambda: idb not in room.participants, 20)
            ticks = sfu.box.media.call(_ticks(adaptation), timeout=5)
            # The tick after the departure drops what its publications brought in.
            assert await wait_for(
                lambda: sfu.box.media.call(_ticks(adaptation), timeout=5) > ticks + 1, 5
            )
            left = sfu.box.media.call(_traces(adaptation, idb), timeout=5)
            assert left == []
            assert sfu.box.media.call(_traces(adaptation, ida), timeout=5)  # a stays
        finally:
            for peer in (a, b):
                await peer.close()

    asyncio.run(scenario())
