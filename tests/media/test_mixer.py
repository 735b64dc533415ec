"""The room's voice mixer on real Opus: every other voice in, your own out, 40 ms FEC packets
at a fixed rate, nothing left running when no one is mixed."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import av
import numpy as np
import pytest

from appliance.media.encoded import AUDIO_TIME_BASE, EncodedFrame
from appliance.media.mixer import MIX_SAMPLES, RoomMixer
from appliance.media.slot import SlotTrack

pytestmark = pytest.mark.timeout(60)

RATE = 48000
# No tone is another two's difference: a low-rate codec's intermodulation would fake it.
VOICES = {"a": 500.0, "b": 1100.0, "c": 1900.0}


class Voice:
    """Stands in for a publication (id, kind, slots): the mixer only reads those."""

    kind = "audio"

    def __init__(self, participant_id: str) -> None:
        self.participant_id = participant_id
        self.slots: set[object] = set()

    def request_keyframe(self) -> bool:
        return False


def _encoder() -> av.AudioCodecContext:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = RATE, "mono", "s16"
    encoder.bit_rate = 32000
    encoder.time_base = Fraction(1, RATE)
    return encoder  # type: ignore[return-value]


async def _speak(mixer: RoomMixer, voices: dict[str, Voice], seconds: float,
                 silent: set[str] | None = None) -> None:
    """Each voice sends its own tone in 20 ms Opus packets, paced in real time."""
    encoders = {pid: _encoder() for pid in voices}
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n in range(int(seconds / 0.02)):
        await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))
        t = (np.arange(960) + n * 960) / RATE
        for pid, voice in voices.items():
            if silent and pid in silent:
                continue
            pcm = (6000 * np.sin(2 * np.pi * VOICES[pid] * t)).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE, n * 960, Fraction(1, RATE)
            for packet in encoders[pid].encode(frame):
                mixer.push(voice, EncodedFrame(bytes(packet), n * 960, AUDIO_TIME_BASE, "audio"))


def _spectrum(frames: list[EncodedFrame]) -> dict[float, float]:
    decoder = av.CodecContext.create("opus", "r")
    pcm = np.concatenate([
        f.to_ndarray().mean(axis=0) for e in frames for f in decoder.decode(av.Packet(e.data))
    ])
    spectrum = np.abs(np.fft.rfft(pcm))
    bin_hz = RATE / len(pcm)
    return {hz: float(spectrum[int(hz / bin_hz) - 3:int(hz / bin_hz) + 4].max())
            for hz in VOICES.values()}


async def _drain(slot: SlotTrack, into: list[EncodedFrame]) -> None:
    while True:
        into.append(await slot.recv())


def test_each_subscriber_hears_the_others_not_itself() -> None:
    async def scenario() -> None:
        mixer = RoomMixer()
        voices = {pid: Voice(pid) for pid in VOICES}
        slot = SlotTrack("audio", mid="0")
        slot.attach(mixer.feed_for("a"))
        mixer.set_sources(list(voices.values()), {})  # type: ignore[arg-type]
        assert all(mixer in v.slots for v in voices.values())  # decoding only now
        out: list[EncodedFrame] = []
        reader = asyncio.create_task(_drain(slot, out))
        await _speak(mixer, voices, 3.0)
        reader.cancel()
        level = _spectrum(out[5:])
        assert level[1100.0] > 6 * level[500.0] and level[1900.0] > 6 * level[500.0], level
        # 20 ms packets (MIX_SAMPLES ticks apart), at the mixer's fixed ~20 kbps whatever the room.
        assert all(b.pts - a.pts == MIX_SAMPLES for a, b in zip(out, out[1:], strict=False))
        media_s = len(out) * MIX_SAMPLES / RATE
        kbps = sum(len(f) for f in out) * 8 / media_s / 1000
        assert 10 <= kbps <= 26, kbps
        assert 2.6 <= media_s <= 3.1, media_s
        # In-band FEC (LBRR) exists only in SILK frames (RFC 6716 4.2.4): every packet must be
        # SILK (TOC config < 12) for the encoder's FEC setting to protect anything.
        assert all((f.data[0] >> 3) < 12 for f in out), {f.data[0] >> 3 for f in out}
        await mixer.close()
        assert not any(mixer in v.slots for v in voices.values())

    asyncio.run(scenario())


def test_a_voice_that_stops_leaves_the_mix_going_and_idle_feeds_cost_nothing() -> None:
    async def scenario() -> None:
        mixer = RoomMixer()
        voices = {pid: Voice(pid) for pid in VOICES}
        slot = SlotTrack("audio", mid="0")
        slot.attach(mixer.feed_for("a"))
        mixer.set_sources(list(voices.values()), {})  # type: ignore[arg-type]
        out: list[EncodedFrame] = []
        reader = asyncio.create_task(_drain(slot, out))
        await _speak(mixer, voices, 1.0)
        before = len(out)
        await _speak(mixer, voices, 1.0, silent={"b"})  # b's link dropped
        assert len(out) - before >= 20  # ~25 packets a second keep coming
        level = _spectrum(out[before + 3:])
        assert level[1900.0] > 6 * level[1100.0], level
        reader.cancel()

        # Nobody mixed any more: the feed goes, the voices are no longer decoded, no task left.
        mixer.release("a")
        mixer.set_sources(list(voices.values()), {})  # type: ignore[arg-type]
        assert not any(mixer in v.slots for v in voices.values())
        await asyncio.sleep(0.05)
        assert mixer._task is None
        await mixer.close()

    asyncio.run(scenario())


def test_breakout_groups_mix_separately() -> None:
    async def scenario() -> None:
        mixer = RoomMixer()
        voices = {pid: Voice(pid) for pid in VOICES}
        slot = SlotTrack("audio", mid="0")
        slot.attach(mixer.feed_for("a"))
        # a and b in breakout room 1, c stays in the main room.
        mixer.set_sources(list(voices.values()), {"a": 1, "b": 1})  # type: ignore[arg-type]
        out: list[EncodedFrame] = []
        reader = asyncio.create_task(_drain(slot, out))
        await _speak(mixer, voices, 2.0)
        reader.cancel()
        level = _spectrum(out[5:])
        assert level[1100.0] > 6 * level[1900.0], level
        await mixer.close()

    asyncio.run(scenario())


def test_a_voice_arriving_in_bursts_does_not_run_the_mix_ahead_of_the_others() -> None:
    # A remote publisher's packets come three at a time every 60 ms (a link's queue released);
    # the facilitator's come every 20 ms. Mixing a step per packet of a burst took the
    # facilitator's steps early and then mixed parts without them.
    async def scenario() -> None:
        mixer = RoomMixer()
        punctual, bursty = Voice("a"), Voice("b")
        slot = SlotTrack("audio", mid="0")
        slot.attach(mixer.feed_for("c"))
        mixer.set_sources([punctual, bursty], {})  # type: ignore[list-item]
        without_a: list[bool] = []
        mix_once = mixer.mix_once

        def recording_mix_once() -> None:
            without_a.append(not mixer._voices[punctual].ready(960))  # type: ignore[index]
            mix_once()

        mixer.mix_once = recording_mix_once  # type: ignore[method-assign]
        encoders = {"a": _encoder(), "b": _encoder()}
        loop = asyncio.get_running_loop()
        start = loop.time()
        held: list[EncodedFrame] = []
        for n in range(150):
            await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))
            t = (np.arange(960) + n * 960) / RATE
            for pid, voice in (("a", punctual), ("b", bursty)):
                pcm = (6000 * np.sin(2 * np.pi * VOICES[pid] * t)).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16",
                                                   layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = RATE, n * 960, Fraction(1, RATE)
                for packet in encoders[pid].encode(frame):
                    encoded = EncodedFrame(bytes(packet), n * 960, AUDIO_TIME_BASE, "audio")
                    if voice is punctual:
                        mixer.push(voice, encoded)
                    else:
                        held.append(encoded)
            if n % 3 == 2:
                for encoded in held:
                    mixer.push(bursty, encoded)
                held.clear()
        await mixer.close()
        steady = without_a[10:]
        assert len(steady) > 100
        assert sum(steady) / len(steady) < 0.05, sum(steady)

    asyncio.run(scenario())


class _Sink:
    """Records what a slot showing a feed would be handed: (clock time, RTP timestamp)."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.got: list[tuple[float, int]] = []

    def push(self, source: object, frame: EncodedFrame) -> None:
        self.got.append((self.clock[0], frame.pts))


def test_the_mix_keeps_time_by_its_clock_on_a_loaded_machine() -> None:
    # A loaded box: both voices' packets reach the mixer with 0-30 ms of jitter, one voice a
    # further 25 ms late, and every 2 s the loop stalls 150 ms and then delivers in a burst.
    # Driven by arrivals the mix ran fast (52 packets/s, timestamps +4.5%); by its clock it
    # never runs ahead, stamps from its own step count, and skips what a stall cost it.
    rng = np.random.default_rng(7)
    clock = [100.0]
    mixer = RoomMixer(clock=lambda: clock[0])
    voices = {pid: Voice(pid) for pid in ("a", "b")}
    feed = mixer.feed_for("listener")
    sink = _Sink(clock)
    feed.slots.add(sink)  # type: ignore[arg-type]
    mixer.set_sources(list(voices.values()), {})  # type: ignore[arg-type]
    origin, seconds = clock[0], 20.0
    packets = {pid: _packets(pid, int(seconds / 0.02)) for pid in voices}
    arrivals = []
    for pid in voices:
        late, previous = (0.025 if pid == "b" else 0.0), 0.0
        for n, packet in enumerate(packets[pid]):
            at = origin + n * 0.02 + late + rng.uniform(0.0, 0.03)
            stall_start = origin + 2.0 * int((at - origin) / 2.0) + 1.0
            if stall_start <= at < stall_start + 0.15:
                at = stall_start + 0.15  # held up by the stall, then all at once
            previous = max(previous, at)
            arrivals.append((previous, pid, n, packet))
    arrivals.sort(key=lambda a: (a[0], a[2]))
    step, i = 0.001, 0
    while clock[0] < origin + seconds:
        clock[0] += step
        while i < len(arrivals) and arrivals[i][0] <= clock[0]:
            _, pid, n, packet = arrivals[i]
            mixer.push(voices[pid], EncodedFrame(packet, n * 960, AUDIO_TIME_BASE, "audio"))  # type: ignore[arg-type]
            i += 1
        if round((clock[0] - origin) / step) % 5 == 0:
            mixer.tick()
    times = [t - origin for t, _ in sink.got]
    stamps = [s for _, s in sink.got]
    # Never ahead of real time: by any moment, at most one step more than the clock allows.
    assert all(k + 1 <= t / 0.02 + 2 for k, t in enumerate(times)), "the mix ran ahead"
    # ...and not behind it either (a stall's steps are skipped, not owed): ~50 packets/s.
    assert len(sink.got) >= 0.9 * seconds / 0.02
    # Stamps: on the 20 ms grid, increasing, and never ahead of the clock by over a step.
    assert all(s % MIX_SAMPLES == 0 for s in stamps)
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    assert all(s / RATE <= t + 0.02 + 1e-9 for s, t in zip(stamps, times, strict=True))
    # Over the run, timestamps advance at 48 kHz of the clock (within 1%, not +4.5%).
    rate = (stamps[-1] - stamps[0]) / (times[-1] - times[0])
    assert abs(rate / RATE - 1) < 0.01, rate


def _packets(pid: str, count: int) -> list[bytes]:
    encoder = _encoder()
    out = []
    for n in range(count):
        t = (np.arange(960) + n * 960) / RATE
        pcm = (6000 * np.sin(2 * np.pi * VOICES[pid] * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, n * 960, Fraction(1, RATE)
        out += [bytes(p) for p in encoder.encode(frame)]
    return out
