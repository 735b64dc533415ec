"""The shared low tier of one publisher's video: decoded once, re-encoded small, fanned out.

A subscriber whose downlink cannot carry a publisher's forwarded stream is shown one of two
outputs derived from a single decode of the publisher's VP8:
- `low`: ~320x180 VP8 at ~100 kbps (~107 kbps with packet headers, inside the adaptation
  ladder's `Costs.low_bps`), at most 15 fps;
- `presence`: a ~160x90 thumbnail, one keyframe per second of the publisher's clock (intra
  only, so a subscriber can show any single frame it gets; keyframe requests wait for it).

Both are made only while a slot shows them: an output's encoder runs while it has slots, and
the decoder (one worker thread per publisher) while either has. Decoding, scaling and
encoding never run on the event loop; the loop hands frames to the worker through a bounded
queue (when the worker falls behind, the oldest frames go and decoding restarts at the next
keyframe) and gets encoded frames back with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import av
from av.video.frame import PictureType, VideoFrame

from appliance.media.encoded import VIDEO_TIME_BASE, EncodedFrame, vp8_is_keyframe

if TYPE_CHECKING:
    from appliance.media.publication import Publication
    from appliance.media.slot import SlotTrack

log = logging.getLogger(__name__)

CLOCK_HZ = 90000  # the RTP video clock; output timestamps are in its ticks
INPUT_QUEUE_FRAMES = 8  # about half a second at 15 fps
KEYFRAME_MIN_INTERVAL_S = 0.5
JOIN_TIMEOUT_S = 2.0
# Output clock ticks between the last frame before a detach and the first after a re-attach.
RESTART_GAP = 6000


@dataclass(frozen=True)
class OutputSpec:
    """Size box, rate and pace of one derived output."""

    name: str
    width: int
    height: int
    bit_rate: int
    interval: int  # clock ticks between encoded frames
    slack: int  # a frame this many ticks early is still taken (capture clocks jitter)
    intra_only: bool
    # Largest keyframe in % of one frame's share of the bit rate: a keyframe burst is a
    # queueing delay on a slow link.
    max_intra_pct: int


LOW = OutputSpec("low", 320, 180, 72_000, CLOCK_HZ // 15, CLOCK_HZ // 60, intra_only=False,
                 max_intra_pct=400)
PRESENCE = OutputSpec("presence", 160, 90, 16_000, CLOCK_HZ, CLOCK_HZ // 30, intra_only=True,
                      max_intra_pct=100)


def fit(width: int, height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """The size that fits `width`x`height` in the box, keeping its aspect, never upscaling;
    even dimensions, as 4:2:0 VP8 needs."""
    scale = min(box_width / width, box_height / height, 1.0)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


class DerivedVideo:
    """One output of a `LowTier` (low or presence): a source a `SlotTrack` can show."""

    kind = "video"

    def __init__(self, participant_id: str, spec: OutputSpec) -> None:
        self.participant_id = participant_id
        self.spec = spec
        self.slots: set[SlotTrack] = set()
        self.frames_encoded = 0
        self.keyframes = 0
        self.bytes_out = 0  # encoded payload bytes (what the encoder's bit rate targets)
        self.wire_bytes_out = 0  # the same once packetized, headers included
        self._lock = threading.Lock()  # the keyframe flag is set on the loop, taken by the worker
        self._keyframe_wanted = False
        self._last_request = -math.inf

    def request_keyframe(self) -> bool:
        """Make this output's next encoded frame a keyframe (at most every 0.5 s)."""
        now = time.monotonic()
        if now - self._last_request < KEYFRAME_MIN_INTERVAL_S:
            return False
        self._last_request = now
        with self._lock:
            self._keyframe_wanted = True
        return True

    def take_keyframe_request(self) -> bool:
        """Worker side: whether a keyframe was asked for since the last call."""
        with self._lock:
            wanted, self._keyframe_wanted = self._keyframe_wanted, False
        return wanted

    def deliver(self, frame: EncodedFrame) -> None:
        """Loop side: count an encoded frame and hand it to every slot showing this output."""
        self.frames_encoded += 1
        self.keyframes += frame.keyframe
        self.bytes_out += len(frame)
        self.wire_bytes_out += frame.wire_size
        for slot in list(self.slots):
            slot.push(self, frame)


@dataclass(frozen=True)
class _Input:
    """One publisher frame queued for the worker, stamped with the output clock."""

    data: bytes
    pts: int
    keyframe: bool
    outputs: tuple[DerivedVideo, ...]  # the outputs that had slots when the frame arrived


class _Encoder:
    """One output's VP8 encoder at one size; paces the output and forces keyframes."""

    def __init__(self, output: DerivedVideo, width: int, height: int) -> None:
        spec = output.spec
        self.output = output
        self.width, self.height = width, height
        self.last_pts: int | None = None
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.time_base = VIDEO_TIME_BASE
        codec.bit_rate = spec.bit_rate
        codec.framerate = Fraction(CLOCK_HZ, spec.interval)
        # Keyframes only when asked (a slot joined or lost a picture), except presence.
        codec.gop_size = 1 if spec.intra_only else 3000
        codec.qmin, codec.qmax = 4, 56
        codec.thread_count = 1  # one worker thread per publisher is the whole budget
        codec.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "error-resilient": "1",
            # Constant bit rate with a one-second buffer, as aiortc's own VP8 encoder does:
            # weak links want a steady rate more than a steady quality.
            "minrate": str(spec.bit_rate),
            "maxrate": str(spec.bit_rate),
            "bufsize": str(spec.bit_rate),
            "undershoot-pct": "100",
            "overshoot-pct": "15",
            "max-intra-rate": str(spec.max_intra_pct),
            "static-thresh": "1",
        }
        self.codec = codec

    def encode(self, picture: VideoFrame, pts: int) -> EncodedFrame | None:
        """Encode `picture` if this output is due a frame at `pts`; None when not due."""
        spec = self.output.spec
        due = self.last_pts is None or pts - self.last_pts >= spec.interval - spec.slack
        if spec.intra_only:
            # Every presence frame is a keyframe, so a request (a slot joined, or lost a
            # picture) is served by the next one, within a second. Serving it at once doubled
            # the thumbnail's rate on lossy links, where each lost picture brings a request.
            self.output.take_keyframe_request()
            force = due
        else:
            force = due and self.output.take_keyframe_request()
        if not due:
            return None
        self.last_pts = pts
        scaled = picture.reformat(width=self.width, height=self.height, format="yuv420p")
        scaled.pts = pts
        scaled.time_base = VIDEO_TIME_BASE
        # Set either way: `reformat` may hand back the decoder's own picture, typed I or P.
        scaled.pict_type = PictureType.I if force else PictureType.NONE
        data = b"".join(bytes(packet) for packet in self.codec.encode(scaled))
        if not data:
            return None  # rate control dropped the frame
        return EncodedFrame(
            data=data, pts=pts, time_base=VIDEO_TIME_BASE, kind="video",
            keyframe=vp8_is_keyframe(data),
        )


class _Worker:
    """The thread that decodes, scales and encodes for one attachment of a `LowTier`."""

    def __init__(self, tier: LowTier, loop: asyncio.AbstractEventLoop) -> None:
        self._tier = tier
        self._loop = loop
        self._queue: deque[_Input] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self.thread = threading.Thread(target=self._run, name="low-tier", daemon=True)

    # --- loop side --------------------------------------------------------------------
    def put(self, item: _Input) -> tuple[int, bool]:
        """Queue `item`; returns (frames dropped, whether what is queued still decodes).

        When full, the oldest frame goes, and with it every later frame up to the next
        keyframe, since they reference it.
        """
        with self._cond:
            self._queue.append(item)
            dropped = 0
            if len(self._queue) > INPUT_QUEUE_FRAMES:
                self._queue.popleft()
                dropped = 1
                while self._queue and not self._queue[0].keyframe:
                    self._queue.popleft()
                    dropped += 1
            self._cond.notify()
            return dropped, bool(self._queue) or not dropped

    def close(self) -> None:
        """Ask the thread to finish (it drops what is queued); does not wait."""
        with self._cond:
            self._closing = True
            self._queue.clear()
            self._cond.notify()

    # --- worker thread ------------------------------------------------------------------
    def _next(self) -> _Input | None:
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            return None if self._closing else self._queue.popleft()

    def _to_loop(self, callback: Callable[..., object], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop closed under us: nobody is left to hand anything to

    def _run(self) -> None:
        try:
            self._work()
        except Exception:
            log.exception("low tier worker failed")

    def _work(self) -> None:
        tier = self._tier
        decoder = av.CodecContext.create("vp8", "r")
        encoders: dict[DerivedVideo, _Encoder] = {}
        broken = False
        while (item := self._next()) is not None:
            started = time.thread_time()
            if broken and not item.keyframe:
                tier.decode_errors += 1
                continue
            try:
                pictures = decoder.decode(av.Packet(item.data))
            except av.FFmpegError:
                # Corrupt input: nothing decodes until the next keyframe.
                broken = True
                tier.decode_errors += 1
                self._to_loop(tier.resync)
                continue
            broken = False
            for picture in pictures:
                tier.frames_decoded += 1
                for output in tier.outputs:
                    if output not in item.outputs:
                        encoders.pop(output, None)  # no slots: stop encoding this output
                        continue
                    size = fit(picture.width, picture.height, output.spec.width,
                               output.spec.height)
                    encoder = encoders.get(output)
                    if encoder is None or (encoder.width, encoder.height) != size:
                        encoder = encoders[output] = _Encoder(output, *size)
                    encoded = encoder.encode(picture, item.pts)
                    if encoded is not None:
                        self._to_loop(output.deliver, encoded)
            tier.cpu_seconds += time.thread_time() - started


class LowTier:
    """The low and presence outputs of one publisher's video `Publication`.

    While an output has slots, the tier sits in `publication.slots` as a sink: the
    publication's pump calls `push` with every encoded frame and `detach` when it stops.
    """

    def __init__(self, publication: Publication) -> None:
        self.publication = publication
        self.low = DerivedVideo(publication.participant_id, LOW)
        self.presence = DerivedVideo(publication.participant_id, PRESENCE)
        self.frames_decoded = 0
        self.frames_dropped = 0  # dropped because the worker fell behind
        self.frames_skipped = 0  # waiting for a keyframe (start, gap, after a drop)
        self.decode_errors = 0  # frames not decoded: corrupt, or after a corrupt one
        self.cpu_seconds = 0.0  # worker thread CPU time
        self._worker: _Worker | None = None
        self._finishing: list[threading.Thread] = []
        self._waiting_for_keyframe = True
        self._last_in: int | None = None
        self._clock: int | None = None
        self._stopped = False

    @property
    def outputs(self) -> tuple[DerivedVideo, DerivedVideo]:
        return self.low, self.presence

    @property
    def running(self) -> bool:
        """Whether the tier is attached to its publication and decoding."""
        return self._worker is not None

    def update(self) -> None:
        """Attach to or detach from the publication after the outputs' slots changed."""
        if self._stopped:
            return
        wanted = any(output.slots for output in self.outputs)
        if wanted and self._worker is None:
            self._start()
        elif not wanted and self._worker is not None:
            self._halt()

    async def stop(self) -> None:
        """Detach every slot and the publication, and wait for the worker thread (bounded)."""
        self._close()
        loop = asyncio.get_running_loop()
        for thread in self._finishing:
            await loop.run_in_executor(None, thread.join, JOIN_TIMEOUT_S)
        self._finishing = [thread for thread in self._finishing if thread.is_alive()]
        if self._finishing:
            log.warning("low tier worker still running %.0f s after stop", JOIN_TIMEOUT_S)

    # --- sink of the publication ----------------------------------------------------------
    def push(self, publication: Publication, frame: EncodedFrame) -> None:
        worker = self._worker
        if publication is not self.publication or worker is None or frame.kind != "video":
            return
        if self._waiting_for_keyframe or (frame.after_gap and not frame.keyframe):
            if not frame.keyframe:
                # Decoding starts at a keyframe, and a frame after a gap references lost data.
                self._waiting_for_keyframe = True
                self.frames_skipped += 1
                self.publication.request_keyframe()
                return
            self._waiting_for_keyframe = False
        outputs = tuple(output for output in self.outputs if output.slots)
        dropped, decodable = worker.put(_Input(frame.data, self._tick(frame.pts),
                                               frame.keyframe, outputs))
        self.frames_dropped += dropped
        if not decodable:
            self.resync()

    def resync(self) -> None:
        """Skip the publisher's frames up to its next keyframe, and ask for one."""
        self._waiting_for_keyframe = True
        self.publication.request_keyframe()

    def detach(self, publication: Publication) -> None:
        """The publication stopped: nothing more can be derived from it."""
        if publication is self.publication:
            self._close()

    # --- internals -----------------------------------------------------------------------
    def _tick(self, pts: int) -> int:
        """The output clock for a publisher timestamp: continuous across wraps and restarts,
        strictly increasing (the encoder refuses anything else)."""
        if self._clock is None:
            self._clock = 0
        elif self._last_in is None:
            self._clock += RESTART_GAP
        else:
            delta = (pts - self._last_in) & 0xFFFFFFFF
            self._clock += 1 if delta == 0 or delta >= 1 << 31 else delta
        self._last_in = pts
        return self._clock

    def _start(self) -> None:
        self._worker = _Worker(self, asyncio.get_running_loop())
        self._worker.thread.start()
        self._waiting_for_keyframe = True
        self._last_in = None
        self.publication.slots.add(self)  # type: ignore[arg-type]
        self.publication.request_keyframe()

    def _halt(self) -> None:
        self.publication.slots.discard(self)
        if self._worker is not None:
            self._worker.close()
            self._finishing = [t for t in self._finishing if t.is_alive()]
            self._finishing.append(self._worker.thread)
            self._worker = None

    def _close(self) -> None:
        self._stopped = True
        for output in self.outputs:
            for slot in list(output.slots):
                slot.detach(output)
        self._halt()
