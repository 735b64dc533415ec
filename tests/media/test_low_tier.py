"""The shared low tier: one decode of a publisher's VP8 feeding the low and presence outputs.

Real VP8 (640x360, 15 fps, encoded here with PyAV) goes in through the publication side; real
`SlotTrack`s show the outputs and are read as an `RTCRtpSender` would; what comes out is
decoded again with PyAV. Only the publication is a stand-in (a real one needs a live
receiver): it records keyframe requests and pumps frames to its sinks as `Publication` does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from itertools import pairwise
from typing import Any

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from appliance.media.encoded import VIDEO_TIME_BASE, EncodedFrame
from appliance.media.low_tier import DerivedVideo, LowTier, fit
from appliance.media.publication import Publication
from appliance.media.slot import SlotTrack

pytestmark = pytest.mark.timeout(60)

WIDTH, HEIGHT, FPS = 640, 360, 15
TICKS = 90000 // FPS
KEYFRAME_EVERY = 30  # frames 0, 30, 60 are keyframes
# The publisher's RTP clock wraps at frame 40: the outputs' clocks must not notice.
PTS_BASE = (1 << 32) - 40 * TICKS


def encode_clip(frames: int = 90) -> list[EncodedFrame]:
    """A moving 640x360 picture with detail, as a browser would send it (~500 kbps)."""
    vp8 = av.CodecContext.create("libvpx", "w")
    vp8.width, vp8.height, vp8.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    vp8.bit_rate = 500_000
    vp8.time_base = Fraction(1, FPS)
    vp8.gop_size = KEYFRAME_EVERY
    vp8.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    gradient = np.stack([(xx * 0.4) % 256, (yy * 0.7) % 256, ((xx + yy) * 0.3) % 256], -1)
    blocks = np.repeat(np.repeat(rng.integers(0, 256, (10, 17, 3)), 40, 0), 40, 1)
    texture = gradient * 0.5 + blocks[:HEIGHT, :WIDTH] * 0.5
    texture = np.clip(texture + rng.normal(0, 6, texture.shape), 0, 255).astype(np.uint8)
    clip = []
    for n in range(frames):
        picture = av.VideoFrame.from_ndarray(np.roll(texture, n * 4, axis=1), format="rgb24")
        picture = picture.reformat(format="yuv420p")
        picture.pts = n
        for packet in vp8.encode(picture):
            clip.append(EncodedFrame(data=bytes(packet), pts=(PTS_BASE + n * TICKS) & 0xFFFFFFFF,
                                     time_base=VIDEO_TIME_BASE, kind="video",
                                     keyframe=packet.is_keyframe))
    assert [n for n, f in enumerate(clip) if f.keyframe] == [0, 30, 60]
    return clip


@pytest.fixture(scope="module")
def clip() -> list[EncodedFrame]:
    return encode_clip()


class StandInPublication:
    """The publication side: what `LowTier` uses of `Publication`, pumping like its pump."""

    kind = "video"

    def __init__(self) -> None:
        self.participant_id = "attendance/1"
        self.slots: set[LowTier] = set()
        self.keyframe_requests = 0

    def request_keyframe(self) -> bool:
        self.keyframe_requests += 1
        return True

    def pump(self, frame: EncodedFrame) -> None:
        for sink in list(self.slots):
            sink.push(self, frame)  # type: ignore[arg-type]


class Viewer:
    """A subscriber's receive slot showing one output, read as its sender reads it."""

    def __init__(self, source: DerivedVideo, mid: str = "0") -> None:
        self.slot = SlotTrack("video", mid=mid)
        self.frames: list[EncodedFrame] = []
        self.slot.attach(source)
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            try:
                self.frames.append(await self.slot.recv())
            except MediaStreamError:
                return

    async def close(self) -> None:
        self.slot.stop()
        await asyncio.wait_for(self._task, 2)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)


async def feed(publication: StandInPublication, tier: LowTier,
               frames: list[EncodedFrame]) -> None:
    """Pump frames at the pace the worker takes them (so none is dropped for being behind)."""
    def taken() -> int:
        return tier.frames_decoded + tier.frames_skipped + tier.decode_errors

    for frame in frames:
        seen = taken()
        publication.pump(frame)
        if tier.running:
            await until(lambda seen=seen: taken() > seen)
        await asyncio.sleep(0)


def steps(frames: list[EncodedFrame]) -> list[int]:
    """Timestamp differences between consecutive frames."""
    return [b.pts - a.pts for a, b in pairwise(frames)]


def decoded_sizes(frames: list[EncodedFrame]) -> list[tuple[int, int]]:
    """Decode a stream in order; one size per frame, or the test fails on a broken stream."""
    decoder = av.CodecContext.create("vp8", "r")
    sizes = []
    for frame in frames:
        pictures = decoder.decode(av.Packet(frame.data))
        assert len(pictures) == 1
        sizes.append((pictures[0].width, pictures[0].height))
    return sizes


def through_aiortc_packetizer(frames: list[EncodedFrame]) -> list[EncodedFrame]:
    """What a subscriber reassembles: each frame packed by aiortc's VP8 sender path (as
    `RTCRtpSender` packs a slot's frames) and depayloaded again."""
    packer = Vp8Encoder()
    rebuilt = []
    for frame in frames:
        payloads, timestamp = packer.pack(frame)  # type: ignore[arg-type]
        assert timestamp == frame.pts and all(len(p) <= 1300 for p in payloads)
        data = b"".join(vp8_depayload(payload) for payload in payloads)
        rebuilt.append(replace(frame, data=data))
    return rebuilt


def tier_threads() -> int:
    return sum(thread.name == "low-tier" for thread in threading.enumerate())


def test_fit_keeps_aspect_even_and_never_upscales() -> None:
    assert fit(640, 360, 320, 180) == (320, 180)
    assert fit(1280, 720, 160, 90) == (160, 90)
    assert fit(480, 360, 320, 180) == (240, 180)
    assert fit(160, 90, 320, 180) == (160, 90)
    width, height = fit(333, 201, 320, 180)
    assert width % 2 == 0 and height % 2 == 0 and height <= 180


def test_keyframe_requests_do_not_speed_up_presence(
        clip: list[EncodedFrame], monkeypatch: pytest.MonkeyPatch) -> None:
    # A lossy link's subscriber asks for a picture after every lost one; presence frames are
    # all keyframes, so the next one (within a second) serves it, at no extra rate.
    monkeypatch.setattr("appliance.media.low_tier.KEYFRAME_MIN_INTERVAL_S", 0.0)

    async def run() -> None:
        publication = StandInPublication()
        tier = LowTier(publication)  # type: ignore[arg-type]
        presence = Viewer(tier.presence, mid="1")
        tier.update()
        for start in range(0, len(clip), 5):
            tier.presence.request_keyframe()
            await feed(publication, tier, clip[start:start + 5])
        await until(lambda: len(presence.frames) == tier.presence.frames_encoded >= 5)
        assert len(presence.frames) == 6  # one a second of the 6 s clip, as without requests
        assert set(steps(presence.frames)) == {90000}
        await tier.stop()
        await presence.close()

    asyncio.run(run())


def test_one_decode_feeds_low_and_presence(clip: list[EncodedFrame]) -> None:
    async def run() -> None:
        publication = StandInPublication()
        tier = LowTier(publication)  # type: ignore[arg-type]
        low, presence = Viewer(tier.low), Viewer(tier.presence, mid="1")
        tier.update()
        assert tier in publication.slots and publication.keyframe_requests == 1
        await feed(publication, tier, clip)
        await until(lambda: tier.low.frames_encoded == len(clip) and len(low.frames) == len(clip))
        await until(lambda: len(presence.frames) == tier.presence.frames_encoded >= 5)
        seconds = len(clip) / FPS

        assert tier.frames_decoded == len(clip) and tier.decode_errors == 0
        # Low: every input frame, decodable in order, 320x180, the publisher's pace kept
        # across the RTP clock wrap, one keyframe (the first) and ~120 kbps.
        assert low.frames[0].keyframe and tier.low.keyframes == 1
        assert set(decoded_sizes(through_aiortc_packetizer(low.frames))) == {(320, 180)}
        assert set(steps(low.frames)) == {TICKS}
        low_kbps = tier.low.bytes_out * 8 / seconds / 1000
        assert 60 <= low_kbps <= 200, low_kbps
        # Presence: one keyframe per second of the publisher's clock, each decodable alone.
        assert len(presence.frames) == 6
        assert all(frame.keyframe for frame in presence.frames)
        for frame in presence.frames:
            assert decoded_sizes([frame]) == [(160, 90)]
        assert set(steps(presence.frames)) == {90000}
        presence_kbps = tier.presence.bytes_out * 8 / seconds / 1000
        assert 8 <= presence_kbps <= 60, presence_kbps
        print(f"\nlow {low_kbps:.0f} kbps, presence {presence_kbps:.0f} kbps, worker CPU "
              f"{100 * tier.cpu_seconds / seconds:.1f} % of a core at 640x360 {FPS} fps")

        await tier.stop()
        assert low.slot.source is None and presence.slot.source is None
        assert not publication.slots and tier_threads() == 0
        await low.close()
        await presence.close()

    asyncio.run(run())


def test_encoders_and_decoder_run_only_while_shown(clip: list[EncodedFrame]) -> None:
    async def run() -> None:
        publication = StandInPublication()
        tier = LowTier(publication)  # type: ignore[arg-type]
        tier.update()
        assert not tier.running and not publication.slots and tier_threads() == 0

        low = Viewer(tier.low)
        tier.update()
        assert tier.running and tier_threads() == 1
        await feed(publication, tier, clip[:15])
        await until(lambda: tier.low.frames_encoded == 15)
        assert tier.presence.frames_encoded == 0  # nobody shows presence: no encoding
        # A slot that lost its picture asks; the next low frame is a keyframe (rate-limited).
        await asyncio.sleep(0.5)
        assert tier.low.request_keyframe() and not tier.low.request_keyframe()
        await feed(publication, tier, clip[15:16])
        await until(lambda: tier.low.frames_encoded == 16)
        assert tier.low.keyframes == 2

        # Presence shown mid-stream: a picture at once, not a second later.
        presence = Viewer(tier.presence, mid="1")
        tier.update()
        await feed(publication, tier, clip[16:17])
        await until(lambda: len(presence.frames) == 1)

        # Low no longer shown: its encoder stops while presence keeps the decoder going.
        low.slot.attach(None)
        tier.update()
        encoded = tier.low.frames_encoded
        await feed(publication, tier, clip[17:30])
        assert tier.running and tier.frames_decoded == 30
        assert tier.low.frames_encoded == encoded

        # Nothing shown: detached from the publication, worker thread gone, nothing decoded.
        presence.slot.attach(None)
        tier.update()
        assert not tier.running and not publication.slots
        await until(lambda: tier_threads() == 0, timeout=5)
        await feed(publication, tier, clip[30:45])
        assert tier.frames_decoded == 30

        # Shown again: a new worker asks the publisher for a keyframe and starts from one.
        requests = publication.keyframe_requests
        low.slot.attach(tier.low)
        tier.update()
        assert tier.running and tier_threads() == 1
        assert publication.keyframe_requests > requests
        received = len(low.frames)
        await feed(publication, tier, clip[45:75])
        assert tier.frames_skipped == 15 and tier.frames_decoded == 45
        await until(lambda: len(low.frames) == received + 15)
        assert low.frames[received].keyframe
        assert set(decoded_sizes(low.frames[received:])) == {(320, 180)}

        await tier.stop()
        await tier.stop()  # idempotent
        tier.update()  # and stopped for good
        assert not tier.running and tier_threads() == 0 and low.slot.source is None
        await low.close()
        await presence.close()

    asyncio.run(run())


def test_gap_skips_to_next_keyframe_and_asks_for_one(clip: list[EncodedFrame]) -> None:
    async def run() -> None:
        publication = StandInPublication()
        tier = LowTier(publication)  # type: ignore[arg-type]
        low = Viewer(tier.low)
        tier.update()
        # Decoding starts at a keyframe: frames before it are skipped, each asking for one.
        requests = publication.keyframe_requests
        await feed(publication, tier, clip[3:6])
        assert tier.frames_decoded == 0 and tier.frames_skipped == 3
        assert publication.keyframe_requests == requests + 3
        await feed(publication, tier, clip[30:40])
        assert tier.frames_decoded == 10

        # A frame after a skipped gap references lost data: wait for the next keyframe.
        requests = publication.keyframe_requests
        await feed(publication, tier, [replace(clip[40], after_gap=True), *clip[41:60]])
        assert tier.frames_decoded == 10 and tier.frames_skipped == 3 + 20
        assert publication.keyframe_requests == requests + 20
        await feed(publication, tier, clip[60:70])
        assert tier.frames_decoded == 20
        await until(lambda: len(low.frames) == 20)
        assert set(decoded_sizes(low.frames)) == {(320, 180)}
        # The output's clock covers the skipped second: pace kept, no jump back.
        paces = steps(low.frames)
        assert paces[9] == 21 * TICKS and set(paces[:9] + paces[10:]) == {TICKS}

        await tier.stop()
        await low.close()

    asyncio.run(run())


def test_corrupt_frame_waits_for_the_next_keyframe(clip: list[EncodedFrame]) -> None:
    async def run() -> None:
        publication = StandInPublication()
        tier = LowTier(publication)  # type: ignore[arg-type]
        low = Viewer(tier.low)
        tier.update()
        await feed(publication, tier, clip[:10])
        requests = publication.keyframe_requests
        garbage = replace(clip[10], data=bytes([0x01]) + bytes(range(256)) * 4)
        await feed(publication, tier, [garbage, *clip[11:30]])
        # The worker finds the frame corrupt; from then on frames are skipped (asking for a
        # keyframe each time) until one comes.
        assert tier.decode_errors >= 1 and tier.frames_decoded == 10
        assert tier.decode_errors + tier.frames_skipped == 20
        assert publication.keyframe_requests > requests
        await feed(publication, tier, clip[30:40])
        assert tier.frames_decoded == 20
        await until(lambda: len(low.frames) == 20)
        assert set(decoded_sizes(low.frames)) == {(320, 180)}

        await tier.stop()
        await low.close()

    asyncio.run(run())


def test_falling_behind_drops_oldest_and_restarts_at_a_keyframe(
    clip: list[EncodedFrame],
) -> None:
    async def run() -> None:
        publication = StandInPublication()
        tier = LowTier(publication)  # type: ignore[arg-type]
        low = Viewer(tier.low)
        tier.update()
        requests = publication.keyframe_requests
        for frame in clip[:20]:  # all at once: far faster than the worker decodes
            publication.pump(frame)
        await until(lambda: tier.frames_decoded + tier.frames_dropped + tier.frames_skipped
                    == 20)
        assert tier.frames_dropped > 0 and tier.frames_skipped > 0
        assert publication.keyframe_requests > requests
        # Then at the worker's pace: frames up to the next keyframe are skipped, not decoded.
        await feed(publication, tier, clip[20:])
        assert tier.frames_skipped >= 10 and tier.frames_decoded >= 60
        assert tier.frames_decoded + tier.frames_dropped + tier.frames_skipped == len(clip)
        assert tier.decode_errors == 0
        await until(lambda: len(low.frames) == tier.low.frames_encoded >= 60)
        assert set(decoded_sizes(low.frames)) == {(320, 180)}

        await tier.stop()
        await low.close()

    asyncio.run(run())


class ClipTrack(MediaStreamTrack):
    """A publisher's remote track as the forwarding seam makes it: encoded frames, 15 fps."""

    kind = "video"

    def __init__(self, frames: list[EncodedFrame]) -> None:
        super().__init__()
        self._frames = iter(frames)

    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        await asyncio.sleep(1 / FPS)
        frame = next(self._frames, None)
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame


class NoSourcesYet:
    """A receiver that has not heard from the publisher's SSRC yet: keyframe requests wait."""

    def getSynchronizationSources(self) -> list[object]:  # noqa: N802 (aiortc's name)
        return []


def test_real_publication_pumps_into_the_tier_and_stopping_it_detaches(
    clip: list[EncodedFrame],
) -> None:
    async def run() -> None:
        receiver: Any = NoSourcesYet()
        publication = Publication("attendance/2", ClipTrack(clip[:30]), receiver)
        tier = LowTier(publication)
        low = Viewer(tier.low)
        tier.update()
        publication.start()
        await until(lambda: len(low.frames) >= 10)
        assert tier.frames_decoded >= 10 and tier.frames_dropped == 0

        await publication.stop()  # the publisher left: the tier lets go of its slots too
        assert not tier.running and low.slot.source is None and not publication.slots
        await tier.stop()
        assert tier_threads() == 0
        await low.close()

    asyncio.run(run())
