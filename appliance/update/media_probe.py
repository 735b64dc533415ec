"""A loopback call through the box's own SFU: the part of the health check that proves the
clinic works, not merely that the process booted.

Two aiortc peers on the media loop join a private probe room (never one of the clinic's
rooms): one publishes a tone and moving video, the other subscribes. The probe passes when
the subscriber receives forwarded audio and video within the time allowed.
"""

from __future__ import annotations

import array
import asyncio
import fractions
import ipaddress
import math
import time
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

from appliance.media.adaptive import AdaptationSettings
from appliance.media.aiortc_glue.seams import install_forwarding
from appliance.media.room import Room

_RATE = 48000
_SAMPLES = 960  # 20 ms
# 400 Hz is exactly 8 cycles per 20 ms frame: one frame of PCM repeats seamlessly.
_TONE = array.array(
    "h", (int(8000 * math.sin(2 * math.pi * 400 * n / _RATE)) for n in range(_SAMPLES))
).tobytes()


class _Tone(MediaStreamTrack):
    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pts = 0
        self._start = time.monotonic()

    async def recv(self) -> AudioFrame:
        wait = self._start + self._pts / _RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        frame = AudioFrame(format="s16", layout="mono", samples=_SAMPLES)
        frame.planes[0].update(_TONE)
        frame.sample_rate = _RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, _RATE)
        self._pts += _SAMPLES
        return frame


class _Bars(MediaStreamTrack):
    kind = "video"
    _W, _H, _FPS = 160, 120, 15

    def __init__(self) -> None:
        super().__init__()
        self._n = 0
        self._start = time.monotonic()

    async def recv(self) -> VideoFrame:
        wait = self._start + self._n / self._FPS - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        frame = VideoFrame(width=self._W, height=self._H, format="yuv420p")
        x = (self._n * 4) % self._W
        luma = bytearray(self._W * self._H)
        for row in range(self._H):
            luma[row * self._W + x : row * self._W + min(x + 16, self._W)] = b"\xff" * 16
        frame.planes[0].update(bytes(luma))
        chroma = bytes([(self._n * 3) % 255]) * (self._W * self._H // 4)
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts = self._n * (90000 // self._FPS)
        frame.time_base = fractions.Fraction(1, 90000)
        self._n += 1
        return frame


def _peer() -> RTCPeerConnection:
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


async def _count(track: MediaStreamTrack, counts: dict[str, int]) -> None:
    while True:
        try:
            await track.recv()
        except MediaStreamError:
            return
        counts[track.kind] += 1


async def loopback_call(timeout_s: float = 20.0, want: int = 10) -> dict[str, Any]:
    """Publish through a private probe room and count what a subscriber receives."""
    install_forwarding(asyncio.get_running_loop())
    # Both peers live in this process: whatever address ICE pairs them on, the link is local,
    # so the room plans for them as LAN (full video) rather than as remote patients.
    everywhere = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
    room = Room("update-probe", capacity=2, adaptation=AdaptationSettings(everywhere))
    publisher, subscriber = _peer(), _peer()
    counts = {"audio": 0, "video": 0}
    readers: list[asyncio.Task[None]] = []
    started = time.monotonic()
    try:
        publisher.addTransceiver(_Tone(), direction="sendonly")
        publisher.addTransceiver(_Bars(), direction="sendonly")
        subscriber.addTransceiver("audio", direction="recvonly")
        subscriber.addTransceiver("video", direction="recvonly")
        subscriber.on("track", lambda t: readers.append(asyncio.ensure_future(_count(t, counts))))
        for pid, role, pc in (
            ("probe-pub", "facilitator", publisher),
            ("probe-sub", "patient", subscriber),
        ):
            await pc.setLocalDescription(await pc.createOffer())
            answer = await room.join(pid, role, pid, pc.localDescription.sdp, "offer")
            await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, answer.type))
        while time.monotonic() - started < timeout_s:
            if counts["audio"] >= want and counts["video"] >= want:
                break
            await asyncio.sleep(0.1)
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.gather(publisher.close(), subscriber.close(), return_exceptions=True)
        await room.close()
    ok = counts["audio"] >= want and counts["video"] >= want
    return {
        "ok": ok,
        "audio_frames": counts["audio"],
        "video_frames": counts["video"],
        "elapsed_s": round(time.monotonic() - started, 2),
    }
