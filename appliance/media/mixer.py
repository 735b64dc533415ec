"""Server-mixed voices for subscribers whose link cannot carry everyone's forwarded Opus.

One `RoomMixer` per room decodes each audio publication once (it sits in the publication's
`slots` as a sink while any feed exists), and every 20 ms sums the voices of each breakout
group. Each mixed subscriber has its own `MixedFeed`: its group's sum minus its own voice,
encoded as one Opus stream (40 ms packets, in-band FEC, ~20 kbps whatever the room size) and
shown in the subscriber's first audio slot like any other source.

Why 40 ms and not longer: a packet's first 20 ms waits for the rest before it can leave, and on
EDGE (325 ms one way) only 75 ms of the 400 ms a voice may take are left for the box.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
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
MIX_PTIME_S = 0.04  # what one mixed packet carries
MIX_SAMPLES = int(RATE * MIX_PTIME_S)
MIX_BITRATE = 20_000
# A voice starts playing once this much is buffered (the publisher's next packet may land just
# after a step), and never lags more than MAX_LAG_S: each time it runs dry and refills, what
# arrives meanwhile would otherwise add to its delay for good.
PREFILL_S = 0.03
MAX_LAG_S = 0.06
MAX_CATCH_UP_TICKS = 3
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

    def request_keyframe(self) -> bool:
        return False  # every Opus packet stands alone

    def add(self, pcm: np.ndarray) -> None:
        """One mixing step of this feed's mix; a packet leaves once it is full."""
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
        self._playing = False

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

    def take(self, count: int) -> np.ndarray | None:
        """The next `count` samples, or None while (re)filling after running dry."""
        if not self._playing:
            if self._buffered < PREFILL_S * RATE:
                return None
            self._playing = True
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
        if filled < count:
            self._playing = False  # ran dry: a lost or late packet is silence, then refill
        return out


class RoomMixer:
    """The mixed voices of one room; idle (nothing decoded) while no feed has a slot."""

    def __init__(self) -> None:
        self.feeds: dict[str, MixedFeed] = {}
        self._voices: dict[Publication, _Voice] = {}
        self._groups: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

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
                publication.slots.discard(self)  # type: ignore[arg-type]
                del self._voices[publication]
        for publication in wanted:
            group = groups.get(publication.participant_id, 0)
            if publication not in self._voices:
                self._voices[publication] = _Voice(publication, group)
                publication.slots.add(self)  # type: ignore[arg-type]
            self._voices[publication].group = group
        if wanted and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        elif not wanted and self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        for subscriber_id in list(self.feeds):
            self.release(subscriber_id)
        for publication in self._voices:
            publication.slots.discard(self)  # type: ignore[arg-type]
        self._voices.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # --- sink of each audio publication ----------------------------------------------
    def push(self, publication: Publication, frame: EncodedFrame) -> None:
        voice = self._voices.get(publication)
        if voice is not None:
            voice.add(frame.data)

    def detach(self, publication: Publication) -> None:
        self._voices.pop(publication, None)

    # --- mixing -----------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += STEP_S
            await asyncio.sleep(max(0.0, due - loop.time()))
            behind = int((loop.time() - due) / STEP_S)
            if behind > MAX_CATCH_UP_TICKS:  # the loop stalled: skip, do not burst
                due += behind * STEP_S
            try:
                self.mix_once()
            except Exception:  # one bad tick must not end the mix
                log.exception("media: mix failed")

    def mix_once(self) -> None:
        """Take one step from every voice and add each feed's mix of it."""
        taken = {
            publication: (voice.group, pcm)
            for publication, voice in self._voices.items()
            if (pcm := voice.take(STEP_SAMPLES)) is not None
        }
        totals: dict[int, np.ndarray] = {}
        for group, pcm in taken.values():
            totals[group] = totals.get(group, 0) + pcm  # type: ignore[assignment]
        for feed in self.feeds.values():
            if not feed.slots:
                continue
            mix = totals.get(feed.group, np.zeros(STEP_SAMPLES, dtype=np.float32))
            own = [pcm for p, (g, pcm) in taken.items() if p.participant_id == feed.subscriber_id]
            if own:
                mix = mix - own[0]
            feed.add(np.clip(mix, -32768, 32767).astype(np.int16))


def _opus_encoder() -> av.AudioCodecContext:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = RATE
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = MIX_BITRATE
    encoder.time_base = Fraction(1, RATE)
    # Speech, 40 ms packets (half the headers of 20 ms), in-band FEC tuned for 10% loss,
    # wideband (libopus would pick narrowband at this rate).
    encoder.options = {
        "application": "voip", "frame_duration": "40", "fec": "1", "packet_loss": "10",
        "cutoff": "8000",
    }
    return encoder  # type: ignore[return-value]
