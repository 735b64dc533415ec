"""A test participant: a real aiortc peer that publishes a tone and moving video and counts
what it receives per slot. It runs on the test's own event loop, so aiortc decodes what it
receives (forwarding applies only on the box's media loop): frames counted are decodable."""

from __future__ import annotations

import asyncio
import fractions
import json
import math
import time
from collections import defaultdict
from typing import Any

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

SAMPLE_RATE = 48000
PTIME = 0.02


class ToneTrack(MediaStreamTrack):
    """A 20 ms-paced sine tone; `silent` switches it to silence."""

    kind = "audio"

    def __init__(self, freq: float = 440.0) -> None:
        super().__init__()
        self.freq = freq
        self.silent = False
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        samples = int(SAMPLE_RATE * PTIME)
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(samples) + self._pts) / SAMPLE_RATE
        amplitude = 0 if self.silent else 12000
        data = (amplitude * np.sin(2 * math.pi * self.freq * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._pts += samples
        return frame


class MovingTrack(MediaStreamTrack):
    """Small moving video at `fps`, so VP8 has real deltas to encode."""

    kind = "video"

    def __init__(self, width: int = 160, height: int = 120, fps: int = 15) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._n / self.fps - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        img = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        x = (self._n * 4) % self.width
        img[:, x : x + 16, :] = 255
        img[:, :, 1] = (self._n * 3) % 255
        frame = VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = self._n * (90000 // self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self._n += 1
        return frame


class Peer:
    """One participant: publishes tone + video, offers receive slots, keeps events."""

    def __init__(
        self, name: str, audio_slots: int = 5, video_slots: int = 4, publish: bool = True
    ) -> None:
        self.name = name
        # MAX_BUNDLE, as browsers do in effect: aiortc's BALANCED strands later video m-lines.
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.tone = ToneTrack(freq=300 + 60 * (hash(name) % 8))
        self.video = MovingTrack()
        if publish:
            self.pc.addTransceiver(self.tone, direction="sendonly")
            self.pc.addTransceiver(self.video, direction="sendonly")
        for _ in range(audio_slots):
            self.pc.addTransceiver("audio", direction="recvonly")
        for _ in range(video_slots):
            self.pc.addTransceiver("video", direction="recvonly")
        self.channel = self.pc.createDataChannel("events")
        self.events: list[dict[str, Any]] = []
        self.frames: dict[str, int] = defaultdict(int)  # by mid
        self.loud_frames: dict[str, int] = defaultdict(int)  # audio frames with signal, by mid
        self.slots: dict[str, dict[str, str | None]] = {"audio": {}, "video": {}}
        self._readers: list[asyncio.Task[None]] = []
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    def _on_message(self, message: str) -> None:
        event = json.loads(message)
        self.events.append(event)
        if event.get("type") == "slots":
            self.slots = {"audio": event["audio"], "video": event["video"]}

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next(t.mid for t in self.pc.getTransceivers() if t.receiver.track is track)
        self._readers.append(asyncio.ensure_future(self._read(track, str(mid))))

    async def _read(self, track: MediaStreamTrack, mid: str) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.frames[mid] += 1
            if track.kind == "audio":
                pcm = frame.to_ndarray()
                if np.abs(pcm.astype(np.int32)).max() > 2000:
                    self.loud_frames[mid] += 1

    async def offer(self) -> dict[str, str]:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return {"sdp": self.pc.localDescription.sdp, "type": self.pc.localDescription.type}

    async def accept(self, answer: dict[str, str]) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(**answer))

    def mid_showing(self, kind: str, participant: str) -> str | None:
        for mid, who in self.slots[kind].items():
            if who == participant:
                return mid
        return None

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self.pc.close()


async def wait_for(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until true or `timeout` (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())
