"""Low tier cost: CPU of one publisher's shared low/presence outputs, and their bit rates.

    python benchmarks/low_tier.py [--quick]

Input: the lab's pre-encoded 640x360 15 fps VP8 clip (~500 kbps, a moving picture full of
detail, keyframe every second), looped for 20 s of publisher time (--quick: 6 s) and fed as
fast as the worker takes it, so CPU is per second of input, not of wall time. Measured in the
same run: decoding alone (the floor any derived stream pays), a `LowTier` showing low only,
presence only and both, and four subscribers on low sharing one tier against four tiers of
one subscriber each (what transcoding per subscriber would cost). CPU is the worker thread's
own time. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

from appliance.media.encoded import VIDEO_TIME_BASE, EncodedFrame  # noqa: E402
from appliance.media.low_tier import DerivedVideo, LowTier  # noqa: E402
from appliance.media.slot import SlotTrack  # noqa: E402
from harness.caller import VIDEO_FPS, Clip  # noqa: E402

TICKS = 90000 // VIDEO_FPS


class BenchPublication:
    """The publication side of a `LowTier`: pumps frames to its sinks as `Publication` does."""

    kind = "video"

    def __init__(self) -> None:
        self.participant_id = "bench"
        self.slots: set[LowTier] = set()

    def request_keyframe(self) -> bool:
        return True  # the clip has a keyframe every second anyway


async def drain(slot: SlotTrack) -> None:
    while True:
        try:
            await slot.recv()
        except MediaStreamError:
            return


def input_frames(seconds: float) -> list[EncodedFrame]:
    clip = Clip.encode(640, 360, 500, seconds=4.0).video
    count = int(seconds * VIDEO_FPS)
    return [
        EncodedFrame(data=clip[n % len(clip)][0], pts=n * TICKS, time_base=VIDEO_TIME_BASE,
                     kind="video", keyframe=clip[n % len(clip)][1])
        for n in range(count)
    ]


def decode_only(frames: list[EncodedFrame]) -> float:
    """CPU seconds to decode the input once (this thread's time)."""
    decoder = av.CodecContext.create("vp8", "r")
    started = time.thread_time()
    for frame in frames:
        decoder.decode(av.Packet(frame.data))
    return time.thread_time() - started


async def run_tiers(frames: list[EncodedFrame], tiers: int,
                    viewers: dict[str, int]) -> list[LowTier]:
    """Feed `frames` to `tiers` tiers, each shown in `viewers[output]` slots per output."""
    publication = BenchPublication()
    made = [LowTier(publication) for _ in range(tiers)]  # type: ignore[arg-type]
    slots: list[SlotTrack] = []
    for tier in made:
        for name, count in viewers.items():
            output: DerivedVideo = getattr(tier, name)
            for _ in range(count):
                slot = SlotTrack("video", mid=str(len(slots)))
                slot.attach(output)
                slots.append(slot)
        tier.update()
    readers = [asyncio.get_running_loop().create_task(drain(slot)) for slot in slots]
    for frame in frames:
        for tier in made:
            tier.push(publication, frame)  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        # At the worker's pace: one frame in its queue at a time, so nothing is dropped.
        while any(t.frames_decoded + t.frames_skipped < frames.index(frame) + 1 for t in made):
            if time.monotonic() > deadline:
                raise RuntimeError("low tier worker stalled")
            await asyncio.sleep(0.001)
    await asyncio.sleep(0.2)  # the last encoded frames reach the loop
    for tier in made:
        await tier.stop()
    for slot in slots:
        slot.stop()
    await asyncio.gather(*readers)
    return made


def pct(cpu_seconds: float, seconds: float) -> float:
    return round(100 * cpu_seconds / seconds, 1)


async def measure(seconds: float) -> dict[str, object]:
    frames = input_frames(seconds)
    result: dict[str, object] = {"input": "640x360 VP8 15 fps", "seconds": seconds}
    result["input_kbps"] = round(sum(len(f) for f in frames) * 8 / seconds / 1000)
    result["decode_only_pct"] = pct(decode_only(frames), seconds)
    for label, viewers in (("low", {"low": 1}), ("presence", {"presence": 1}),
                           ("both", {"low": 1, "presence": 1})):
        (tier,) = await run_tiers(frames, 1, viewers)
        result[f"{label}_pct"] = pct(tier.cpu_seconds, seconds)
        if label == "both":
            result["low_kbps"] = round(tier.low.bytes_out * 8 / seconds / 1000, 1)
            result["low_wire_kbps"] = round(tier.low.wire_bytes_out * 8 / seconds / 1000, 1)
            result["low_fps"] = round(tier.low.frames_encoded / seconds, 1)
            result["presence_kbps"] = round(tier.presence.bytes_out * 8 / seconds / 1000, 1)
            result["presence_wire_kbps"] = round(
                tier.presence.wire_bytes_out * 8 / seconds / 1000, 1)
            result["presence_fps"] = round(tier.presence.frames_encoded / seconds, 2)
    shared = await run_tiers(frames, 1, {"low": 4})
    result["shared_4_subscribers_pct"] = pct(shared[0].cpu_seconds, seconds)
    separate = await run_tiers(frames, 4, {"low": 1})
    result["per_subscriber_4_pct"] = pct(sum(t.cpu_seconds for t in separate), seconds)
    result["per_subscriber_vs_shared"] = round(
        sum(t.cpu_seconds for t in separate) / max(shared[0].cpu_seconds, 1e-9), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 s of input instead of 20 s")
    args = parser.parse_args()
    result = asyncio.run(measure(6.0 if args.quick else 20.0))
    for key, value in result.items():
        print(f"{key}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
