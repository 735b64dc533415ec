"""A video that leaves the box only as forwarded packets costs no depacketizing: aiortc's
receiver neither depacketizes its VP8 payloads nor assembles frames of it, and slot switches
still start at the new source's keyframe (read from the packets' raw bytes). Real aiortc
peers over loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import aiortc.codecs
import pytest
from aiortc.rtp import RtpPacket

from appliance.media.aiortc_glue.seams import is_forwarding_loop
from appliance.media.forwarding.rewrite import SlotRewriter, Vp8Descriptor
from appliance.media.jitter import BoundedJitterBuffer
from tests.media.conftest import Sfu
from tests.media.peer import Peer, wait_for


class _BoxCounts:
    """VP8 depacketizing and frames assembled on the box's media loop; segment starts."""

    def __init__(self) -> None:
        self.depayloads = 0
        self.video_frames = 0
        self.starts: list[bool] = []  # per slot segment started: was it at a keyframe


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> _BoxCounts:
    found = _BoxCounts()
    original_depayload = aiortc.codecs.vp8_depayload
    original_annotate = BoundedJitterBuffer._annotate
    original_start = SlotRewriter._start

    def depayload(payload: bytes) -> bytes:
        if is_forwarding_loop():
            found.depayloads += 1
        return original_depayload(payload)

    def annotate(self: BoundedJitterBuffer, frame: Any) -> Any:
        if is_forwarding_loop() and self._is_video:
            found.video_frames += 1
        return original_annotate(self, frame)

    def start(
        self: SlotRewriter, source: object, view: Any, packet: bytes, vp8: Vp8Descriptor, now: float
    ) -> Any:
        if self.kind == "video":
            found.starts.append(vp8.keyframe_start)
        return original_start(self, source, view, packet, vp8, now)

    monkeypatch.setattr(aiortc.codecs, "vp8_depayload", depayload)
    monkeypatch.setattr(BoundedJitterBuffer, "_annotate", annotate)
    monkeypatch.setattr(SlotRewriter, "_start", start)
    return found


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


def test_forwarded_only_video_is_not_depacketized_and_switches_at_keyframes(
    sfu: Sfu, counts: _BoxCounts
) -> None:
    async def scenario() -> None:
        a, b = Peer("a", audio_slots=1, video_slots=1), Peer("b", audio_slots=1, video_slots=1)
        viewer = Peer("viewer", audio_slots=2, video_slots=1)
        ida, idb, idv = sfu.admit("A"), sfu.admit("B"), sfu.admit("Viewer")
        try:
            await sfu.join(a, ida)
            await sfu.join(b, idb)
            await sfu.join(viewer, idv)
            room = sfu.box.rooms.rooms[sfu.session_id]
            slot = room.participants[idv].video_slots[0]
            assert slot.output is not None  # the room forwards packets
            for pid in (ida, idb):
                assert not room.participants[pid].publications["video"].wants_frames()

            sfu.box.media.call(_call(room.pin, ida), timeout=5)
            assert await wait_for(lambda: viewer.mid_showing("video", ida) is not None, 10)
            mid = viewer.mid_showing("video", ida)
            assert mid is not None
            assert await wait_for(lambda: viewer.frames[mid] >= 10, 20), dict(viewer.frames)

            sfu.box.media.call(_call(room.pin, idb), timeout=5)
            assert await wait_for(lambda: viewer.mid_showing("video", idb) == mid, 10)
            switched_at = viewer.frames[mid]
            assert await wait_for(lambda: viewer.frames[mid] >= switched_at + 15, 20), (
                switched_at,
                dict(viewer.frames),
            )
            output = slot.output
            assert output.rewriter is not None
            # The viewer decoded 25 frames or more, each of one packet at least, all
            # forwarded through the box; none was depacketized or assembled there.
            assert output.rewriter.packets_out >= 25
            assert counts.depayloads == 0, counts.depayloads
            assert counts.video_frames == 0, counts.video_frames
            # Both of the slot's segments (a, then b) began at a keyframe.
            assert len(counts.starts) >= 2 and all(counts.starts), counts.starts
        finally:
            for peer in (a, b, viewer):
                await peer.close()

    asyncio.run(scenario())


def test_a_packet_left_raw_is_depacketized_if_its_frames_are_wanted_after_all() -> None:
    """Frames may become wanted (the low tier starts) while aiortc's handler awaits between
    the tap's look and the jitter buffer's: the packet is depacketized there instead."""
    descriptor = bytes([0x90, 0x80, 0x05])  # X and S bits, a 7-bit picture id
    frame_data = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + bytes(40)
    packet = RtpPacket(
        payload_type=96, marker=1, sequence_number=7, timestamp=900, payload=descriptor + frame_data
    )
    packet._data = packet.payload  # type: ignore[attr-defined]  # as the seam leaves it
    packet._clinicbox_raw = True  # type: ignore[attr-defined]
    buffer = BoundedJitterBuffer(128, is_video=True)
    _, frame = buffer.add(packet)
    assert frame is not None and frame.data == frame_data
