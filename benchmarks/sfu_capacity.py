"""SFU capacity: ClinicBox's forwarding rooms against stock aiortc relaying, same load.

    python benchmarks/sfu_capacity.py [--quick]

For 2, 4, 6, 8 and 12 participants (--quick: 2 and 6) a box process serves one room and a
separate participants process runs the synthetic participants: each publishes a pre-encoded
640x360 15 fps VP8 clip (~500 kbps, keyframe every second) and 20 ms Opus packets, and
receives everyone else's audio and up to four videos (last-N 4), counting frames without
decoding. ClinicBox frames carry their send time in a trailer the box forwards untouched, so
forwarding latency is measured end to end on one clock. The baseline box decodes every
publisher once and re-encodes per subscriber (aiortc MediaRelay + one encoder per sender),
as far as it keeps up. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import struct
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
import numpy as np  # noqa: E402
from aiortc import (  # noqa: E402
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

from appliance.media.encoded import EncodedFrame  # noqa: E402
from appliance.media.seams import install_forwarding, restrict_host_addresses  # noqa: E402

FPS = 15
VIDEO_SLOTS = 4
TRAILER = struct.Struct("!dI")  # send time, magic
MAGIC = 0xC11B0C5


def config() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the clip ---------------------------------------------------------------------------
def encode_clip() -> tuple[list[tuple[bytes, bool]], list[bytes]]:
    """Three seconds of moving 640x360 VP8 and a second of 20 ms Opus packets, encoded once."""
    vp8 = av.CodecContext.create("libvpx", "w")
    vp8.width, vp8.height, vp8.pix_fmt = 640, 360, "yuv420p"
    vp8.bit_rate = 500_000
    vp8.time_base = Fraction(1, FPS)
    vp8.gop_size = FPS
    vp8.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    video = []
    for n in range(3 * FPS):
        img = np.zeros((360, 640, 3), dtype=np.uint8)
        img[:, (n * 12) % 640 : (n * 12) % 640 + 40, :] = 255
        img[:, :, 1] = (n * 5) % 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = n
        for packet in vp8.encode(frame):
            video.append((bytes(packet), packet.is_keyframe))
    opus = av.CodecContext.create("libopus", "w")
    opus.sample_rate, opus.layout, opus.format = 48000, "mono", "s16"
    opus.bit_rate = 24000
    audio = []
    t = np.arange(48000) / 48000
    pcm = (8000 * np.sin(2 * np.pi * 330 * t)).astype(np.int16)
    for i in range(50):
        frame = av.AudioFrame.from_ndarray(
            pcm[i * 960 : (i + 1) * 960].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = 48000, i * 960
        audio.extend(bytes(p) for p in opus.encode(frame))
    return video, audio


class ClipTrack(MediaStreamTrack):
    """Sends pre-encoded frames in a loop at their real pace (the sender packs, never encodes)."""

    def __init__(self, kind: str, frames: list[Any], trailer: bool) -> None:
        super().__init__()
        self.kind = kind
        self.frames = frames
        self.trailer = trailer
        self.n = 0
        self.start: float | None = None
        self.period = 1 / FPS if kind == "video" else 0.02
        self.step = 90000 // FPS if kind == "video" else 960

    async def recv(self) -> EncodedFrame:
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.n * self.period - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        item = self.frames[self.n % len(self.frames)]
        data, keyframe = item if self.kind == "video" else (item, False)
        if self.trailer:
            data = data + TRAILER.pack(time.time(), MAGIC)
        base = Fraction(1, 90000) if self.kind == "video" else Fraction(1, 48000)
        frame = EncodedFrame(data, self.n * self.step, base, self.kind, keyframe=keyframe)
        self.n += 1
        return frame


# --- the box ------------------------------------------------------------------------------
class StockBox:
    """Stock aiortc relaying: decode each publisher once, encode once per subscriber."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.tracks: dict[str, dict[str, MediaStreamTrack]] = {}
        self.pcs: list[RTCPeerConnection] = []

    async def join(self, pid: str, sdp: str) -> str:
        pc = RTCPeerConnection(config())
        self.pcs.append(pc)
        offer = RTCSessionDescription(sdp=sdp, type="offer")
        from aiortc.sdp import SessionDescription

        others = [p for p in self.tracks if p != pid]
        audio = [self.tracks[p]["audio"] for p in others]
        video = [self.tracks[p]["video"] for p in others][:VIDEO_SLOTS]
        for media in SessionDescription.parse(sdp).media:
            if media.kind not in ("audio", "video"):
                continue
            if media.direction == "sendonly":
                pc.addTransceiver(media.kind, direction="recvonly")
            else:
                pool = audio if media.kind == "audio" else video
                if pool:
                    pc.addTransceiver(self.relay.subscribe(pool.pop(0)), direction="sendonly")
                else:
                    pc.addTransceiver(media.kind, direction="inactive")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.tracks.setdefault(pid, {})[track.kind] = track

        await pc.setRemoteDescription(offer)
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()


async def serve_box(mode: str) -> None:
    """Box process: answers offers and reports CPU/RSS over a line-JSON TCP socket."""
    restrict_host_addresses(["127.0.0.1"])
    if mode == "clinicbox":
        from appliance.media.rooms import Rooms

        rooms = Rooms()

        async def join(pid: str, sdp: str, _phase: str) -> str:
            answer = await rooms.join("bench", pid, "patient", pid, sdp, "offer")
            return answer.sdp
    else:
        stock = StockBox()

        async def join(pid: str, sdp: str, phase: str) -> str:
            return await stock.join(f"{pid}/{phase}" if phase == "sub" else pid, sdp)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            msg = json.loads(line)
            if msg["op"] == "join":
                reply: dict[str, Any] = {"sdp": await join(msg["pid"], msg["sdp"], msg["phase"])}
            else:
                reply = {"cpu_s": cpu_seconds(), "rss_mb": rss_mb(), "t": time.monotonic()}
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(3600)


# --- the participants ---------------------------------------------------------------------
class Participant:
    def __init__(self, pid: str, clip: tuple[list[Any], list[bytes]], trailer: bool) -> None:
        self.pid = pid
        self.clip = clip
        self.trailer = trailer
        self.pcs: list[RTCPeerConnection] = []
        self.counts: dict[tuple[str, str], int] = {}
        self.latencies: list[float] = []
        self.tasks: list[asyncio.Task[None]] = []

    def make_pc(self, publish: bool, receive: int) -> RTCPeerConnection:
        pc = RTCPeerConnection(config())
        if publish:
            pc.addTransceiver(ClipTrack("audio", self.clip[1], self.trailer), "sendonly")
            pc.addTransceiver(ClipTrack("video", self.clip[0], self.trailer), "sendonly")
        for kind, n in (("audio", receive), ("video", min(receive, VIDEO_SLOTS))):
            for _ in range(n):
                t = pc.addTransceiver(kind, "recvonly")
                t.setCodecPreferences(
                    [c for c in RTCRtpSender.getCapabilities(kind).codecs
                     if c.mimeType.lower() in ("audio/opus", "video/vp8", "video/rtx")]
                )

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            mid = next(t.mid for t in pc.getTransceivers() if t.receiver.track is track)
            self.tasks.append(asyncio.ensure_future(self.count(track, str(mid))))

        self.pcs.append(pc)
        return pc

    async def count(self, track: MediaStreamTrack, mid: str) -> None:
        key = (track.kind, mid)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.counts[key] = self.counts.get(key, 0) + 1
            data = getattr(frame, "data", b"")
            if isinstance(data, bytes) and len(data) > TRAILER.size:
                sent, magic = TRAILER.unpack(data[-TRAILER.size :])
                if magic == MAGIC and track.kind == "video":
                    self.latencies.append((time.time() - sent) * 1000)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for pc in self.pcs:
            await pc.close()


async def run_participants(mode: str, n: int, port: int, seconds: float) -> dict[str, Any]:
    restrict_host_addresses(["127.0.0.1"])
    install_forwarding(asyncio.get_running_loop())  # count encoded frames, never decode
    clip = encode_clip()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def ask(msg: dict[str, Any]) -> dict[str, Any]:
        writer.write((json.dumps(msg) + "\n").encode())
        await writer.drain()
        return json.loads(await reader.readline())

    async def negotiate(pc: RTCPeerConnection, pid: str, phase: str) -> None:
        await pc.setLocalDescription(await pc.createOffer())
        reply = await ask({"op": "join", "pid": pid, "sdp": pc.localDescription.sdp,
                           "phase": phase})
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))

    people = [Participant(f"p{i}", clip, trailer=mode == "clinicbox") for i in range(n)]
    if mode == "clinicbox":
        for p in people:
            await negotiate(p.make_pc(publish=True, receive=n - 1), p.pid, "pub")
    else:  # stock relaying needs every publisher before a subscriber can be answered
        for p in people:
            await negotiate(p.make_pc(publish=True, receive=0), p.pid, "pub")
        await asyncio.sleep(2)
        for p in people:
            await negotiate(p.make_pc(publish=False, receive=n - 1), p.pid, "sub")
    await asyncio.sleep(4)  # connect, first keyframes, warm-up
    for p in people:
        p.counts.clear()
        p.latencies.clear()
    start = await ask({"op": "stats"})
    await asyncio.sleep(seconds)
    end = await ask({"op": "stats"})
    elapsed = end["t"] - start["t"]
    video_rates, audio_rates, latencies = [], [], []
    for p in people:
        expected_video = min(VIDEO_SLOTS, n - 1)
        v = [c / elapsed for (k, _m), c in p.counts.items() if k == "video"]
        a = [c / elapsed for (k, _m), c in p.counts.items() if k == "audio"]
        video_rates += v + [0.0] * (expected_video - len(v))
        audio_rates += a + [0.0] * (n - 1 - len(a))
        latencies += p.latencies
    for p in people:
        await p.close()
    writer.close()
    lat = sorted(latencies)
    return {
        "participants": n,
        "cpu_pct": round((end["cpu_s"] - start["cpu_s"]) / elapsed * 100, 1),
        "rss_mb": round(end["rss_mb"], 1),
        "min_fps": round(min(video_rates), 1) if video_rates else 0.0,
        "mean_fps": round(statistics.mean(video_rates), 1) if video_rates else 0.0,
        "min_audio_pps": round(min(audio_rates), 1) if audio_rates else 0.0,
        "latency_p50_ms": round(lat[len(lat) // 2], 1) if lat else None,
        "latency_p95_ms": round(lat[int(len(lat) * 0.95)], 1) if lat else None,
    }


def run_case(mode: str, n: int, seconds: float) -> dict[str, Any]:
    me = str(Path(__file__).resolve())
    box = subprocess.Popen(
        [sys.executable, me, "--serve", mode], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(box.stdout.readline())  # type: ignore[union-attr]
        out = subprocess.run(
            [sys.executable, me, "--participants", str(n), "--mode", mode, "--port", str(port),
             "--seconds", str(seconds)],
            capture_output=True, text=True, timeout=120 + seconds,
        )
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        box.kill()
        box.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve")
    parser.add_argument("--participants", type=int)
    parser.add_argument("--mode", default="clinicbox")
    parser.add_argument("--port", type=int)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_box(args.serve))
        return
    if args.participants:
        result = asyncio.run(run_participants(args.mode, args.participants, args.port,
                                              args.seconds))
        print(json.dumps(result))
        return

    counts = [2, 6] if args.quick else [2, 4, 6, 8, 12]
    seconds = 5.0 if args.quick else 10.0
    rows, baseline = [], {}
    stock_keeps_up = True
    for n in counts:
        row = run_case("clinicbox", n, seconds)
        rows.append(row)
        print(f"clinicbox n={n:2d}: cpu {row['cpu_pct']:5.1f}%  rss {row['rss_mb']:5.1f} MB  "
              f"min fps {row['min_fps']:4.1f}  audio pps {row['min_audio_pps']:4.1f}  "
              f"latency p50/p95 {row['latency_p50_ms']}/{row['latency_p95_ms']} ms", flush=True)
        # Up to 6 always (the ratio goal is at 6); beyond, only while stock keeps up.
        if n <= 6 or (stock_keeps_up and n <= 8):
            b = run_case("stock", n, seconds)
            baseline[n] = b
            print(f"stock     n={n:2d}: cpu {b['cpu_pct']:5.1f}%  rss {b['rss_mb']:5.1f} MB  "
                  f"min fps {b['min_fps']:4.1f}  audio pps {b['min_audio_pps']:4.1f}", flush=True)
            stock_keeps_up = b["min_fps"] >= 5
    at6 = next((r for r in rows if r["participants"] == 6), None)
    ratio = (
        round(baseline[6]["cpu_pct"] / at6["cpu_pct"], 2)
        if at6 and 6 in baseline and at6["cpu_pct"] > 0 else None
    )
    print(json.dumps({
        "participants": [r["participants"] for r in rows],
        "cpu_pct": [r["cpu_pct"] for r in rows],
        "rss_mb": [r["rss_mb"] for r in rows],
        "min_fps": [r["min_fps"] for r in rows],
        "min_audio_pps": [r["min_audio_pps"] for r in rows],
        "latency_p95_ms": [r["latency_p95_ms"] for r in rows],
        "baseline_participants": list(baseline),
        "baseline_cpu_pct": [b["cpu_pct"] for b in baseline.values()],
        "baseline_min_fps": [b["min_fps"] for b in baseline.values()],
        "cpu_ratio_vs_baseline_at_6": ratio,
    }))


if __name__ == "__main__":
    main()
