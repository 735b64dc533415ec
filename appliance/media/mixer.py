"""Server-mixed voices for subscribers whose link cannot carry everyone's forwarded Opus.

One `RoomMixer` per room decodes each audio publication once (it sits in the publication's
`slots` as a sink while any feed exists) and sums the voices of each breakout group 20 ms at a
time, as soon as every voice still talking has its next 20 ms in (or 10 ms after it was due):
waiting on a clock would add up to a step of delay to every voice. Each mixed subscriber has
its own `MixedFeed`: its group's sum minus its own voice, encoded as one Opus stream (20 ms
packets, in-band FEC, ~20 kbps whatever the room size) and shown in the subscriber's first
audio slot like any other source.

Why 20 ms packets although longer ones would halve the headers: a packet's first 20 ms waits
for the rest before it can leave, and on EDGE (325 ms one way) only 75 ms of the 400 ms a voice
may take are left for the box; measured in the lab, 40 ms packets put 45% of the mix late.

The mix keeps time by a steady clock, not by its voices: step n is due n x 20 ms after the
mix started and is stamped n x 960 (48 kHz), it may be mixed at most one step early (a voice
that arrives ahead of the clock's phase is not held back) and never further ahead. Driven by
arrivals alone it had run fast under CPU load (52 packets/s, timestamps +4.5% against 48 kHz:
a step mixed at its deadline without a late voice, then that voice's audio mixed as extra
steps), and browsers buffered the surplus (175-1,300 ms) and time-compressed it away. A mix
that fell behind (the loop stalled) skips the steps it missed, so its timestamps jump and
receivers conceal the gap instead of playing everything later from then on; voices keep at
most MAX_LAG_S of audio in hand, so the catch-up drops, it does not run ahead.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import numpy as np

from appliance.media.encoded import AUDIO_TIME_BASE, EncodedFrame

if TYPE_CHECKING:
    from appliance.media.publication import Publication
    from appliance.media.slot import SlotTrack

log = logging.getLogger(__name__)

RATE = 48000
STEP_S = 0.02  # mixing step: what one publisher's packet carries
STEP_SAMPLES = int(RATE * STEP_S)
MIX_PTIME_S = 0.02  # what one mixed packet carries
MIX_SAMPLES = int(RATE * MIX_PTIME_S)
MIX_BITRATE = 20_000
# A step no voice but a bursty one is ready for is mixed no sooner than this after the last:
# a remote publisher's packets arrive in bursts (EDGE's jitter, a queue released), and mixing
# a step per packet of the burst took the punctual voices' steps early, then mixed parts
# without them (the facilitator's voice then reached EDGE patients 40-60 ms later).
BURST_PACE_S = 0.015
# A voice that sent nothing for this long (muted, DTX, gone) is not waited for.
TALKING_S = 0.2
# A step is mixed at the latest this long after it was due, with whatever voices are in.
DEADLINE_S = 0.01
# A voice never lags more than this behind the mix: what a late voice has in excess is dropped.
MAX_LAG_S = 0.06
MAX_CATCH_UP_TICKS = 3
# A step may be mixed this long before it is due by the clock, and no earlier.
EARLY_S = STEP_S
# Further behind the clock than this (the loop stalled), the missed steps are skipped.
MAX_BEHIND_S = 0.06
MIX_ID = "mix"


class MixedFeed:
    """One subscriber's mixed stream: a source a `SlotTrack` can show."""

    kind = "audio"
    participant_id = MIX_ID  # what the client is told the slot shows

    def __init__(self, subscriber_id: str, group: int) -> None:
        self.subscriber_id = subscriber_id
        self.group = group
        self.slots: set[SlotTrack] = set()
        self.packets_out = 0
        self.bytes_out = 0
        self._encoder = _opus_encoder()
        self._pts = 0
        self._pending: list[np.ndarray] = []
        self.timestamps: deque[int] = deque(maxlen=64)  # RTP stamps of the last packets

    def request_keyframe(self) -> bool:
        return False  # every Opus packet stands alone

    def add(self, pcm: np.ndarray, timestamp: int) -> None:
        """One mixing step of this feed's mix, its first sample stamped `timestamp` (48 kHz,
        from the mix's clock); a packet leaves once it is full."""
        if not self._pending:
            self._pts = timestamp & 0xFFFFFFFF
        self._pending.append(pcm)
        if sum(len(p) for p in self._pending) >= MIX_SAMPLES:
            self.emit(np.concatenate(self._pending))
            self._pending = []

    def emit(self, pcm: np.ndarray) -> None:
        """Encode one mixed packet and hand it to the slots showing this feed."""
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = Fraction(1, RATE)
        for packet in self._encoder.encode(frame):
            data = bytes(packet)
            encoded = EncodedFrame(data, self._pts, AUDIO_TIME_BASE, "audio")
            self.packets_out += 1
            self.bytes_out += len(data)
            self.timestamps.append(self._pts)
            for slot in list(self.slots):
                slot.push(self, encoded)
        self._pts = (self._pts + MIX_SAMPLES) & 0xFFFFFFFF


class _Voice:
    """One publication's decoded voice, buffered for the next mixes."""

    def __init__(self, publication: Publication, group: int) -> None:
        self.publication = publication
        self.group = group
        self._decoder = av.CodecContext.create("opus", "r")
        self._pcm: deque[np.ndarray] = deque()
        self._buffered = 0
        self.last_packet = float("-inf")  # loop time of its last packet

    def add(self, data: bytes) -> None:
        try:
            frames = self._decoder.decode(av.Packet(data))
        except av.error.FFmpegError:
            return  # a corrupt packet: the mix carries on without it
        for frame in frames:
            samples = frame.to_ndarray().astype(np.float32)
            if frame.format.is_planar:
                mono = samples.mean(axis=0)
            else:
                mono = samples.reshape(-1, len(frame.layout.channels)).mean(axis=1)
            if frame.format.name.startswith(("flt", "dbl")):
                mono = mono * 32767.0  # float formats are -1..1
            self._pcm.append(mono)
            self._buffered += len(mono)
        # Drop whole packets only: voices then stay aligned on the publishers' own 20 ms grid.
        while self._buffered - len(self._pcm[0]) >= MAX_LAG_S * RATE:
            self._buffered -= len(self._pcm.popleft())

    def ready(self, count: int) -> bool:
        return self._buffered >= count

    def take(self, count: int) -> np.ndarray | None:
        """The next `count` samples (silence where a packet is missing); None if empty."""
        if not self._buffered:
            return None
        out = np.zeros(count, dtype=np.float32)
        filled = 0
        while filled < count and self._pcm:
            chunk = self._pcm[0]
            use = min(count - filled, len(chunk))
            out[filled:filled + use] = chunk[:use]
            filled += use
            if use == len(chunk):
                self._pcm.popleft()
            else:
                self._pcm[0] = chunk[use:]
        self._buffered -= filled
        return out


class RoomMixer:
    """The mixed voices of one room; idle (nothing decoded) while no feed has a slot."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        """`clock`: a steady clock in seconds (default: the event loop's). With one given, no
        deadline task runs: the caller calls `tick()` every few milliseconds (tests)."""
        self._clock = clock
        self._origin: float | None = None  # when step 0 was due
        self._step = 0  # the next step's index
        self.feeds: dict[str, MixedFeed] = {}
        self._voices: dict[Publication, _Voice] = {}
        self._groups: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_mix = 0.0

    # --- what the room tells it -------------------------------------------------------
    def feed_for(self, subscriber_id: str) -> MixedFeed:
        feed = self.feeds.get(subscriber_id)
        if feed is None:
            feed = self.feeds[subscriber_id] = MixedFeed(
                subscriber_id, self._groups.get(subscriber_id, 0)
            )
        return feed

    def release(self, subscriber_id: str) -> None:
        feed = self.feeds.pop(subscriber_id, None)
        if feed is not None:
            for slot in list(feed.slots):
                slot.detach(feed)

    def set_sources(self, publications: list[Publication], groups: dict[str, int]) -> None:
        """The room's audio publications now and each participant's breakout group."""
        self._groups = groups
        for feed in self.feeds.values():
            feed.group = groups.get(feed.subscriber_id, 0)
        wanted = set(publications) if any(f.slots for f in self.feeds.values()) else set()
        for publication in list(self._voices):
            if publication not in wanted:
                publication.slots.discard(self)
                del self._voices[publication]
        for publication in wanted:
            group = groups.get(publication.participant_id, 0)
            if publication not in self._voices:
                self._voices[publication] = _Voice(publication, group)
                publication.slots.add(self)  # type: ignore[arg-type]
            self._voices[publication].group = group
        if wanted and self._origin is None:
            self._origin, self._step = self._now(), 0
        elif not wanted:
            self._origin = None
        if wanted and self._task is None and self._clock is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        elif not wanted and self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        for subscriber_id in list(self.feeds):
            self.release(subscriber_id)
        for publication in self._voices:
            publication.slots.discard(self)
        self._voices.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # --- sink of each audio publication ----------------------------------------------
    def push(self, publication: Publication, frame: EncodedFrame) -> None:
        voice = self._voices.get(publication)
        if voice is None:
            return
        voice.add(frame.data)
        voice.last_packet = self._now()
        self._mix_ready()

    def detach(self, publication: Publication) -> None:
        self._voices.pop(publication, None)

    # --- mixing -----------------------------------------------------------------------
    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _due(self) -> float:
        """When the next step is due by the mix's clock."""
        assert self._origin is not None
        return self._origin + self._step * STEP_S

    def _mix_ready(self) -> None:
        """Mix every step that all talking voices have in (at most a few at once), never
        more than one step ahead of the clock."""
        if self._origin is None:
            return
        now = self._now()
        for _ in range(MAX_CATCH_UP_TICKS):
            if now < self._due() - EARLY_S:
                return
            talking = [v for v in self._voices.values() if now - v.last_packet < TALKING_S]
            # Go when every voice is in, or when one already holds a second step and a step's
            # time has about passed: a voice arriving later (a remote publisher's) must not
            # hold the others back, nor one arriving in bursts run the mix ahead of them.
            if not talking:
                return
            if not all(v.ready(STEP_SAMPLES) for v in talking) and not (
                    any(v.ready(2 * STEP_SAMPLES) for v in talking)
                    and now - self._last_mix >= BURST_PACE_S):
                return
            self._mix_now(now)

    def _mix_now(self, now: float) -> None:
        self._last_mix = now
        try:
            self.mix_once()
        except Exception:  # one bad step must not end the mix
            log.exception("media: mix failed")

    async def _run(self) -> None:
        """Runs `tick()` every few milliseconds."""
        self._last_mix = self._now()
        while True:
            await asyncio.sleep(DEADLINE_S / 2)
            self.tick()

    def tick(self) -> None:
        """The deadline: a step a voice is late for is mixed without it; steps the mix fell
        too far behind the clock for are skipped."""
        if self._origin is None:
            return
        now = self._now()
        behind = now - self._due()
        if behind > MAX_BEHIND_S:
            self._step += int(behind / STEP_S)
        if now >= self._due() + DEADLINE_S:
            self._mix_now(now)

    def mix_once(self) -> None:
        """Take one step from every voice and add each feed's mix of it (the next step)."""
        timestamp = self._step * STEP_SAMPLES
        self._step += 1
        taken = {
            publication: (voice.group, pcm)
            for publication, voice in self._voices.items()
            if (pcm := voice.take(STEP_SAMPLES)) is not None
        }
        totals: dict[int, np.ndarray] = {}
        for group, pcm in taken.values():
            totals[group] = totals.get(group, 0) + pcm
        for feed in self.feeds.values():
            if not feed.slots:
                continue
            mix = totals.get(feed.group, np.zeros(STEP_SAMPLES, dtype=np.float32))
            own = [pcm for p, (g, pcm) in taken.items() if p.participant_id == feed.subscriber_id]
            if own:
                mix = mix - own[0]
            feed.add(np.clip(mix, -32768, 32767).astype(np.int16), timestamp)


def _opus_encoder() -> av.AudioCodecContext:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = RATE
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = MIX_BITRATE
    encoder.time_base = Fraction(1, RATE)
    # Speech, 20 ms packets, in-band FEC tuned for 10% loss, wideband (libopus would pick
    # narrowband at this rate).
    encoder.options = {
        "application": "voip", "frame_duration": "20", "fec": "1", "packet_loss": "10",
        "cutoff": "8000",
    }
    return encoder
