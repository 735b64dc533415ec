"""SFU capacity: ClinicBox's forwarding rooms against Janus, same load in the same run.

    python benchmarks/sfu_capacity.py [--quick] [--counts 6,8,12,16] [--per-process N]
                                      [--no-janus] [--stock] [--frames] [--voice-frames]
                                      [--soak MINUTES]

For 6, 8, 12 and 16 participants (--quick: 12 only, 5 s, no two-room run) a server serves
one room and synthetic participants run in separate processes, `--per-process` (default 3)
to a process. Each publishes a pre-encoded 640x360 15 fps VP8 clip (~500 kbps, keyframe
every second) and 20 ms Opus packets, and receives everyone else's audio and up to four
videos (last-N 4), counting packets and complete frames as they leave SRTP (no jitter
buffer, no decoding), so the participants cost less than the server they load. Frames carry
their send time in a trailer the servers forward untouched, so forwarding latency is
measured end to end on one clock.

The same load then runs against Janus (Debian's `janus`, VideoRoom plugin, HTTP API on
127.0.0.1, started and stopped here with a config dir of its own): same participants, same
clip, each subscribed (one multistream subscription) to everyone's audio and the first four
others' video. Janus gathers no loopback candidates, so both servers and the participants
use the machine's first non-loopback IPv4 address. Per size it reports each server's CPU
(% of one core, all threads, from /proc), RSS, RTP packets per second delivered to the
participants, CPU microseconds per delivered packet and ClinicBox's ratio to Janus, min fps,
audio packets/s and forwarding latency; then two 8-person rooms at once on each server, with
the CPU of each server thread (a thread is what one core can run). `--stock` adds stock
aiortc relaying (decode once, re-encode per subscriber) up to 8 participants.

`--soak MINUTES`: 8 people in one ClinicBox room, one leaving and a new one joining every
minute; the box's RSS, open peer connections, loop tasks, file descriptors and threads at
start and end. The other engineers' jobs share this machine: compare ratios within one run.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import pickle
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
import janus_server  # noqa: E402
import numpy as np  # noqa: E402
from aiortc import (  # noqa: E402
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay  # noqa: E402
from aiortc.rtcrtpreceiver import StreamStatistics  # noqa: E402
from aiortc.rtp import RtpPacket  # noqa: E402
from aiortc.utils import uint16_add  # noqa: E402

from appliance.media.aiortc_glue import consent  # noqa: E402
from appliance.media.aiortc_glue.seams import restrict_host_addresses  # noqa: E402
from appliance.media.encoded import EncodedFrame  # noqa: E402
from appliance.media.voices import DEFAULT_VOICES  # noqa: E402

FPS = 15
WARMUP_S = 4.0
VIDEO_SLOTS = 4
AUDIO_SLOTS = 5  # web/static/call.js
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


def box_census() -> dict[str, Any]:
    """What a leak would grow: peer connections, loop tasks, open files, threads, RSS."""
    import gc

    pcs = sum(
        1
        for o in gc.get_objects()
        if isinstance(o, RTCPeerConnection) and o.connectionState != "closed"
    )
    return {
        "rss_mb": round(rss_mb(), 1),
        "peer_connections": pcs,
        "tasks": len(asyncio.all_tasks()),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": len(os.listdir("/proc/self/task")),
    }


async def serve_box(mode: str, address: str) -> None:
    """Box process: answers offers over a line-JSON TCP socket (join, leave, census)."""
    restrict_host_addresses([address])
    if mode in ("clinicbox", "frames", "voiceframes"):
        from appliance.media import room as room_module
        from appliance.media import rooms as rooms_module
        from appliance.media.rooms import Rooms

        if mode == "frames":  # video as reassembled frames, packetized again per subscriber
            rooms_module.Room = functools.partial(  # type: ignore[misc]
                room_module.Room, forward_packets=False
            )
        elif mode == "voiceframes":  # voices as frames, packetized again per subscriber
            rooms_module.Room = functools.partial(  # type: ignore[misc]
                room_module.Room, forward_voices=False
            )

        # The product caps a room at 12; the benchmark measures 16 too, to see the headroom.
        room_module.MAX_PARTICIPANTS = 16
        rooms = Rooms()

        async def join(room: str, pid: str, sdp: str, _phase: str) -> str:
            answer = await rooms.join(room, pid, "patient", pid, sdp, "offer", capacity=16)
            return answer.sdp

        async def leave(room: str, pid: str) -> None:
            await rooms.leave(room, pid)
    else:
        stock = StockBox()

        async def join(room: str, pid: str, sdp: str, phase: str) -> str:
            return await stock.join(f"{pid}/{phase}" if phase == "sub" else pid, sdp)

        async def leave(room: str, pid: str) -> None:
            raise RuntimeError("stock relaying has no leave")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            msg = json.loads(line)
            if msg["op"] == "join":
                reply: dict[str, Any] = {
                    "sdp": await join(msg["room"], msg["pid"], msg["sdp"], msg["phase"])
                }
            elif msg["op"] == "leave":
                await leave(msg["room"], msg["pid"])
                reply = {"ok": True}
            else:
                reply = box_census()
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(86400)


# --- the participants ---------------------------------------------------------------------
def room_of(pid: str) -> str:
    """Participant ids read `r<room>-p<index>[g<generation>]`."""
    return pid.split("-", 1)[0]


def feed_of(pid: str) -> int:
    """The Janus feed id of a participant: its index in the room, from 1."""
    return int(pid.split("-p", 1)[1].split("g", 1)[0]) + 1


def janus_room(room: str) -> int:
    return 1000 + int(room[1:])


class Participant:
    """A synthetic participant: sends the clip, counts what arrives at the RTP level.

    Its receivers count packets as they come out of SRTP and stop there: no jitter buffer,
    no decoder thread, no NACK or REMB, only the statistics their receiver reports need (the
    box's adaptation takes a subscriber that reports nothing for a cut link). A video frame
    counts once all its packets, up to the RTP marker, have arrived.
    """

    def __init__(
        self, pid: str, clip: tuple[list[Any], list[bytes]], trailer: bool, mode: str
    ) -> None:
        self.pid = pid
        self.mode = mode
        self.clip = clip
        self.trailer = trailer
        self.pcs: list[RTCPeerConnection] = []
        self.handles: list[Any] = []  # Janus handles (their sessions end with the run)
        self.counts: dict[tuple[str, str], int] = {}
        self.packets = {"audio": 0, "video": 0}
        self.latencies: list[float] = []

    def make_pc(self, publish: bool, receive: int) -> RTCPeerConnection:
        pc = RTCPeerConnection(config())
        if publish:
            pc.addTransceiver(ClipTrack("audio", self.clip[1], self.trailer), "sendonly")
            pc.addTransceiver(ClipTrack("video", self.clip[0], self.trailer), "sendonly")
        # The browser client's receive slots: 5 audio (the box forwards the loudest voices)
        # and 4 video; stock relaying gives every publisher a slot of its own.
        audio = receive if self.mode == "stock" else min(receive, AUDIO_SLOTS)
        for kind, n in (("audio", audio), ("video", min(receive, VIDEO_SLOTS))):
            for _ in range(n):
                t = pc.addTransceiver(kind, "recvonly")
                t.setCodecPreferences(
                    [
                        c
                        for c in RTCRtpSender.getCapabilities(kind).codecs
                        if c.mimeType.lower() in ("audio/opus", "video/vp8", "video/rtx")
                    ]
                )
                self.count(t)
        self.pcs.append(pc)
        return pc

    def count(self, transceiver: RTCRtpTransceiver) -> None:
        """Replace the receiver's packet handling by counting."""
        receiver, kind = transceiver.receiver, transceiver.kind
        streams: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        clock_rate = 90000 if kind == "video" else 48000
        frame_start: dict[int, tuple[int, int]] = {}  # ssrc -> (first seq of frame, packets)

        async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
            stats = streams.get(packet.ssrc)
            if stats is None:
                stats = streams[packet.ssrc] = StreamStatistics(clock_rate)
            stats.add(packet)
            self.packets[kind] += 1
            key = (kind, str(transceiver.mid))
            if kind == "audio":
                self.counts[key] = self.counts.get(key, 0) + 1
                return
            first, packets = frame_start.get(packet.ssrc, (packet.sequence_number, 0))
            if not packet.marker:
                frame_start[packet.ssrc] = (first, packets + 1)
                return
            frame_start[packet.ssrc] = (uint16_add(packet.sequence_number, 1), 0)
            if packets + 1 != uint16_add(packet.sequence_number, 1 - first):
                return  # a packet of this frame is missing
            self.counts[key] = self.counts.get(key, 0) + 1
            data = packet.payload
            if self.trailer and len(data) > TRAILER.size:
                sent, magic = TRAILER.unpack(data[-TRAILER.size :])
                if magic == MAGIC:
                    self.latencies.append(round((time.time() - sent) * 1000, 1))

        receiver._handle_rtp_packet = handle  # type: ignore[method-assign]

    def reset(self) -> None:
        self.counts.clear()
        self.latencies.clear()
        self.packets = {"audio": 0, "video": 0}

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()
        self.pcs.clear()
        for handle in self.handles:
            await asyncio.to_thread(handle.destroy)
        self.handles.clear()


async def sleep_until(wall: float) -> None:
    await asyncio.sleep(max(0.0, wall - time.time()))


async def janus_publish(p: Participant, url: str) -> None:
    pc = p.make_pc(True, 0)
    await pc.setLocalDescription(await pc.createOffer())
    handle, answer = await janus_server.publish(
        url, janus_room(room_of(p.pid)), feed_of(p.pid), pc.localDescription.sdp
    )
    p.handles.append(handle)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


async def janus_subscribe(p: Participant, others: list[str], url: str) -> None:
    """Everyone else's audio and the first four others' video, as last-N 4 gives the box."""
    streams: list[dict[str, Any]] = [
        {"feed": feed_of(q)} if i < VIDEO_SLOTS else {"feed": feed_of(q), "mid": "0"}
        for i, q in enumerate(others)
    ]
    for attempt in range(50):  # a publisher is a feed only once its connection is up
        try:
            handle, offer = await janus_server.subscribe(url, janus_room(room_of(p.pid)), streams)
            break
        except RuntimeError as exc:
            if "No such feed" not in str(exc) or attempt == 49:
                raise
            await asyncio.sleep(0.2)
    p.handles.append(handle)
    pc = RTCPeerConnection(config())
    p.pcs.append(pc)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    for transceiver in pc.getTransceivers():
        p.count(transceiver)
    await pc.setLocalDescription(await pc.createAnswer())
    await janus_server.start_subscription(handle, pc.localDescription.sdp)


async def run_worker(
    mode: str,
    all_pids: list[str],
    pids: list[str],
    port: int,
    janus_url: str,
    address: str,
    clip_path: Path,
) -> None:
    """A participants process: obeys line-JSON commands on stdin, answers on stdout.

    `join` (phase pub, sub or both) negotiates its participants with the box; `measure`
    counts what arrives between two wall-clock instants and reports its own CPU over them.
    """
    restrict_host_addresses([address])
    # Browsers keep ICE consent through slow answers; aioice's own checks give up after 0.5 s,
    # and on a loaded machine the box answers later than that (the lab's callers do the same).
    consent.install()
    clip = pickle.loads(clip_path.read_bytes())
    loop = asyncio.get_running_loop()
    reader = writer = None
    if mode != "janus":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def ask(msg: dict[str, Any]) -> dict[str, Any]:
        assert reader is not None and writer is not None
        writer.write((json.dumps(msg) + "\n").encode())
        await writer.drain()
        return json.loads(await reader.readline())

    def others_of(pid: str) -> list[str]:
        return [q for q in all_pids if room_of(q) == room_of(pid) and q != pid]

    async def negotiate(p: Participant, phase: str) -> None:
        if mode == "janus":
            if phase == "pub":
                await janus_publish(p, janus_url)
            else:
                await janus_subscribe(p, others_of(p.pid), janus_url)
            return
        publish, receive = {
            "pub": (True, 0),
            "sub": (False, len(others_of(p.pid))),
            "both": (True, len(others_of(p.pid))),
        }[phase]
        pc = p.make_pc(publish, receive)
        await pc.setLocalDescription(await pc.createOffer())
        reply = await ask(
            {
                "op": "join",
                "room": room_of(p.pid),
                "pid": p.pid,
                "phase": phase,
                "sdp": pc.localDescription.sdp,
            }
        )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))

    def answer(msg: dict[str, Any]) -> None:
        print(json.dumps(msg), flush=True)

    people = [Participant(pid, clip, trailer=mode != "stock", mode=mode) for pid in pids]
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            cmd = json.loads(line)
            if cmd["op"] == "join":
                for p in people:
                    await negotiate(p, cmd["phase"])
                answer({"ok": True})
            elif cmd["op"] == "measure":
                await sleep_until(cmd["start"])
                for p in people:
                    p.reset()
                cpu0, t0 = cpu_seconds(), time.monotonic()
                await sleep_until(cmd["end"])
                cpu1, t1 = cpu_seconds(), time.monotonic()
                elapsed = t1 - t0
                video, audio, latencies, packets, audio_streams = [], [], [], 0, 0
                for p in people:
                    n = len(others_of(p.pid)) + 1
                    v = [c / elapsed for (k, _m), c in p.counts.items() if k == "video"]
                    a = [c / elapsed for (k, _m), c in p.counts.items() if k == "audio"]
                    video += v + [0.0] * (min(VIDEO_SLOTS, n - 1) - len(v))
                    # The box forwards the loudest voices only (all publishers send a tone,
                    # so all are loud): that many streams are expected, each at 50 packets/s.
                    voices = n - 1 if mode in ("janus", "stock") else min(DEFAULT_VOICES, n - 1)
                    a = sorted(a, reverse=True)
                    audio_streams += sum(1 for x in a if x > 0)
                    audio += a[:voices] + [0.0] * (voices - len(a[:voices]))
                    latencies += p.latencies
                    packets += p.packets["audio"] + p.packets["video"]
                answer(
                    {
                        "video_fps": video,
                        "audio_pps": audio,
                        "audio_streams": audio_streams,
                        "latencies": latencies,
                        "packets": packets,
                        "elapsed": elapsed,
                        "cpu_pct": (cpu1 - cpu0) / elapsed * 100,
                        "rss_mb": rss_mb(),
                    }
                )
            else:
                break
    finally:
        for p in people:
            await p.close()
        if writer is not None:
            writer.close()


def machine_busy_s() -> tuple[float, int]:
    """Busy CPU seconds of the whole machine since boot, and its number of cores."""
    lines = Path("/proc/stat").read_text().splitlines()
    fields = [int(x) for x in lines[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    cores = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return (sum(fields[:8]) - idle) / hz, cores


def bench_address() -> tuple[str, str]:
    """A non-loopback IPv4 interface and address: Janus gathers no loopback candidates, so
    both servers and the participants use this one (the kernel still loops it back)."""
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "scope", "global"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            return fields[1], fields[3].split("/")[0]
    raise SystemExit("sfu_capacity: no IPv4 address besides loopback (Janus needs one)")


class Worker:
    """One participants process, driven over its stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path, pids: list[str]) -> None:
        self.proc = proc
        self.log = log
        self.pids = pids

    async def ask(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"participants process died: {self.log.read_text()[-2000:]}")
        return json.loads(line)

    async def stop(self) -> None:
        """End of input: the process closes its peers and exits."""
        if self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class Bench:
    """One server under test (ClinicBox, Janus or stock relaying) and its participants."""

    def __init__(
        self, mode: str, per_process: int, clip_path: Path, tmp: Path, address: tuple[str, str]
    ) -> None:
        self.mode = mode
        self.per_process = per_process
        self.clip_path = clip_path
        self.tmp = tmp
        self.interface, self.address = address
        self.workers: list[Worker] = []
        self.box: asyncio.subprocess.Process | None = None
        self.janus: janus_server.JanusServer | None = None
        self.pid = 0
        self.port = 0
        self.url = ""
        self.all_pids: list[str] = []
        self._box_io: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def start(self, rooms: list[int]) -> None:
        me = str(Path(__file__).resolve())
        serve_mode = self.mode
        if self.mode == "before":  # the box as an earlier commit has it (--before REF)
            me, serve_mode = str(BEFORE_TREE / "benchmarks" / "sfu_capacity.py"), "clinicbox"
        if self.mode == "janus":
            self.janus = janus_server.JanusServer(
                self.tmp / f"janus-{time.monotonic_ns()}", self.interface
            )
            self.pid = await asyncio.to_thread(self.janus.start)
            self.url = self.janus.url
            for r, n in enumerate(rooms):
                await asyncio.to_thread(
                    janus_server.create_room, self.url, janus_room(f"r{r}"), n + 4
                )
        else:
            self.box = await asyncio.create_subprocess_exec(
                sys.executable,
                me,
                "--serve",
                serve_mode,
                "--address",
                self.address,
                stdout=asyncio.subprocess.PIPE,
            )
            assert self.box.stdout is not None
            self.port = int(await asyncio.wait_for(self.box.stdout.readline(), 30))
            self.pid = self.box.pid
            self._box_io = await asyncio.open_connection("127.0.0.1", self.port)
        self.all_pids = [f"r{r}-p{i}" for r, n in enumerate(rooms) for i in range(n)]
        for k in range(0, len(self.all_pids), self.per_process):
            await self.add_worker(self.all_pids[k : k + self.per_process])

    async def add_worker(self, pids: list[str]) -> Worker:
        me = str(Path(__file__).resolve())
        log = self.tmp / f"{self.mode}-{pids[0]}-{time.monotonic_ns()}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                me,
                "--worker",
                "--mode",
                self.mode,
                "--all-pids",
                ",".join(self.all_pids),
                "--pids",
                ",".join(pids),
                "--port",
                str(self.port),
                "--janus-url",
                self.url,
                "--address",
                self.address,
                "--clip",
                str(self.clip_path),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=1 << 22,
            )  # a report carries every latency sample
        worker = Worker(proc, log, pids)
        self.workers.append(worker)
        return worker

    async def join_all(self, workers: list[Worker] | None = None) -> None:
        # One process at a time, so the box sees joins in a fixed order. Stock relaying and
        # Janus need every publisher before a subscriber.
        phases = ["pub", "sub"] if self.mode in ("janus", "stock") else ["both"]
        for phase in phases:
            for w in workers or self.workers:
                await w.ask({"op": "join", "phase": phase}, timeout=90)
            if phase == "pub":
                await asyncio.sleep(2)

    async def box_call(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self._box_io is not None
        reader, writer = self._box_io
        writer.write((json.dumps(msg) + "\n").encode())
        await writer.drain()
        return json.loads(await reader.readline())

    def usage(self) -> tuple[float, dict[str, float], float]:
        """The server's CPU seconds (all threads), per thread, and RSS in MB."""
        return (
            janus_server.process_cpu_seconds(self.pid),
            janus_server.thread_cpu_seconds(self.pid),
            janus_server.process_rss_mb(self.pid),
        )

    async def stop(self) -> None:
        for w in self.workers:
            await w.stop()
        self.workers.clear()
        if self._box_io is not None:
            self._box_io[1].close()
        if self.box is not None:
            self.box.kill()
            await self.box.wait()
        if self.janus is not None:
            await asyncio.to_thread(self.janus.stop)


async def measure(bench: Bench, seconds: float, warmup: float) -> dict[str, Any]:
    start = time.time() + warmup  # connect, first keyframes, rate estimates ramp up
    end = start + seconds
    measuring = [
        asyncio.ensure_future(
            w.ask({"op": "measure", "start": start, "end": end}, timeout=seconds + warmup + 60)
        )
        for w in bench.workers
    ]
    await sleep_until(start)
    (cpu0, threads0, _), (machine0, _cores), t0 = bench.usage(), machine_busy_s(), time.monotonic()
    await sleep_until(end)
    (cpu1, threads1, rss), (machine1, cores), t1 = bench.usage(), machine_busy_s(), time.monotonic()
    reports = await asyncio.gather(*measuring)
    elapsed = t1 - t0
    video = [r for rep in reports for r in rep["video_fps"]]
    audio = [r for rep in reports for r in rep["audio_pps"]]
    lat = sorted(x for rep in reports for x in rep["latencies"])
    packets_per_s = sum(rep["packets"] / rep["elapsed"] for rep in reports)
    cpu_pct = (cpu1 - cpu0) / elapsed * 100
    threads = sorted(
        ((name, (threads1[name] - threads0.get(name, 0.0)) / elapsed * 100) for name in threads1),
        key=lambda x: -x[1],
    )
    return {
        "participants": len(bench.all_pids),
        "cpu_pct": round(cpu_pct, 1),
        "rss_mb": round(rss, 1),
        "packets_per_s": round(packets_per_s),
        "us_per_packet": round(cpu_pct / 100 * 1e6 / packets_per_s, 1) if packets_per_s else None,
        "min_fps": round(min(video), 1) if video else 0.0,
        "mean_fps": round(statistics.mean(video), 1) if video else 0.0,
        "min_audio_pps": round(min(audio), 1) if audio else 0.0,
        "audio_streams": sum(rep["audio_streams"] for rep in reports),
        "latency_p50_ms": round(lat[len(lat) // 2], 1) if lat else None,
        "latency_p95_ms": round(lat[int(len(lat) * 0.95)], 1) if lat else None,
        "busiest_thread_pct": round(threads[0][1], 1) if threads else 0.0,
        "threads_over_5_pct": [(name, round(pct, 1)) for name, pct in threads if pct >= 5],
        "generator_cpu_pct": [round(rep["cpu_pct"], 1) for rep in reports],
        "machine_busy_pct": round((machine1 - machine0) / elapsed * 100, 1),
        "machine_cores": cores,
    }


async def run_case_async(
    mode: str,
    rooms: list[int],
    seconds: float,
    warmup: float,
    per_process: int,
    clip_path: Path,
    tmp: Path,
    address: tuple[str, str],
) -> dict[str, Any]:
    bench = Bench(mode, per_process, clip_path, tmp, address)
    try:
        await bench.start(rooms)
        await bench.join_all()
        return await measure(bench, seconds, warmup)
    finally:
        await bench.stop()


def run_case(
    mode: str,
    rooms: list[int],
    seconds: float,
    warmup: float,
    per_process: int,
    clip_path: Path,
    tmp: Path,
    address: tuple[str, str],
) -> dict[str, Any]:
    return asyncio.run(
        run_case_async(mode, rooms, seconds, warmup, per_process, clip_path, tmp, address)
    )


async def soak_async(
    minutes: float, per_process: int, clip_path: Path, tmp: Path, address: tuple[str, str]
) -> dict[str, Any]:
    """8 people in one ClinicBox room; every minute one leaves and someone new joins."""
    bench = Bench("clinicbox", per_process, clip_path, tmp, address)
    try:
        await bench.start([8])
        await bench.join_all()
        await asyncio.sleep(WARMUP_S)
        first = await bench.box_call({"op": "census"})
        print(f"soak start: {first}", flush=True)
        generation = 0
        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline:
            await asyncio.sleep(min(60.0, max(0.0, deadline - time.monotonic())))
            # The last participant leaves (as the page's `leave` does) and a new one joins.
            leaving = next(w for w in reversed(bench.workers) if w.pids)
            for pid in leaving.pids:
                await bench.box_call({"op": "leave", "room": room_of(pid), "pid": pid})
            await leaving.stop()
            bench.workers.remove(leaving)
            generation += 1
            pids = [f"{pid.split('g')[0]}g{generation}" for pid in leaving.pids]
            bench.all_pids = [p for p in bench.all_pids if p not in leaving.pids] + pids
            await bench.join_all([await bench.add_worker(pids)])
            census = await bench.box_call({"op": "census"})
            print(f"soak {generation} min: {census}", flush=True)
        await asyncio.sleep(WARMUP_S)
        last = await bench.box_call({"op": "census"})
        row = await measure(bench, 10.0, 0.0)
        print(f"soak end: {last}", flush=True)
    finally:
        await bench.stop()
    return {
        "soak_minutes": minutes,
        "soak_start": first,
        "soak_end": last,
        "soak_rss_growth_pct": round((last["rss_mb"] / first["rss_mb"] - 1) * 100, 1),
        "soak_min_fps_at_end": row["min_fps"],
    }


def describe(label: str, row: dict[str, Any]) -> str:
    latency = (
        f"  latency p50/p95 {row['latency_p50_ms']}/{row['latency_p95_ms']} ms"
        if row["latency_p50_ms"] is not None
        else ""
    )
    return (
        f"{label} n={row['participants']:2d}: cpu {row['cpu_pct']:5.1f}%  "
        f"rss {row['rss_mb']:5.1f} MB  {row['packets_per_s']} pkt/s  "
        f"{row['us_per_packet']} us/pkt  "
        f"min/mean fps {row['min_fps']:4.1f}/{row['mean_fps']:4.1f}"
        f"  audio pps {row['min_audio_pps']:4.1f} ({row['audio_streams']} streams){latency}\n"
        f"{'':14}threads >= 5% {row['threads_over_5_pct']}\n"
        f"{'':14}participants processes cpu % {row['generator_cpu_pct']} "
        f"(sum {sum(row['generator_cpu_pct']):.0f})  machine busy "
        f"{row['machine_busy_pct']:.0f}% of {row['machine_cores'] * 100}%"
    )


# Where --before REF's tree is extracted (git archive), made afresh each run.
BEFORE_TREE = Path(tempfile.gettempdir()) / f"sfu-capacity-before-{os.getpid()}"


def extract_tree(ref: str, into: Path) -> None:
    """The files of commit `ref` of this checkout, into `into` (read-only use of git)."""
    root = Path(__file__).resolve().parents[1]
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", ref], capture_output=True, check=False
    )
    if archive.returncode != 0:
        sys.exit(f"sfu_capacity: --before {ref}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def at(rows: list[dict[str, Any]], n: int, key: str) -> Any:
    return next((r[key] for r in rows if r["participants"] == n), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument(
        "--quick", action="store_true", help="12 participants only, 5 s, no two-room run"
    )
    parser.add_argument("--counts", help="participant counts, e.g. 8,12 (default 6,8,12,16)")
    parser.add_argument(
        "--per-process", type=int, default=3, help="synthetic participants per process (default 3)"
    )
    parser.add_argument("--seconds", type=float, default=None, help="measured window per case")
    parser.add_argument(
        "--warmup",
        type=float,
        default=WARMUP_S,
        help=f"seconds after joining before measuring (default {WARMUP_S:.0f})",
    )
    parser.add_argument("--no-janus", action="store_true", help="skip the Janus baseline")
    parser.add_argument(
        "--stock",
        action="store_true",
        help="also run stock aiortc relaying (decode + re-encode) up to 8",
    )
    parser.add_argument(
        "--frames",
        action="store_true",
        help="also run the box with video as frames (Room(forward_packets=False))",
    )
    parser.add_argument(
        "--voice-frames",
        action="store_true",
        help="also run the box with voices as frames (Room(forward_voices=False)), "
        "as before voices took the packet path",
    )
    parser.add_argument(
        "--before",
        metavar="REF",
        help="also run the box as git commit REF has it (e.g. main), in the same run",
    )
    parser.add_argument(
        "--soak",
        type=float,
        metavar="MINUTES",
        help="instead: 8 people, one leaving and one joining every minute",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--all-pids", help=argparse.SUPPRESS)
    parser.add_argument("--pids", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="clinicbox", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--janus-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--address", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_box(args.serve, args.address))
        return
    if args.worker:
        asyncio.run(
            run_worker(
                args.mode,
                args.all_pids.split(","),
                args.pids.split(","),
                args.port,
                args.janus_url,
                args.address,
                Path(args.clip),
            )
        )
        return

    try:
        counts = (
            [int(c) for c in args.counts.split(",")]
            if args.counts
            else [12]
            if args.quick
            else [6, 8, 12, 16]
        )
    except ValueError:
        parser.exit(2, "sfu_capacity: --counts takes numbers, e.g. 8,12\n")
    if any(not 2 <= n <= 16 for n in counts):
        parser.exit(2, "sfu_capacity: participant counts must be 2 to 16\n")
    janus = not args.no_janus
    if janus and shutil.which("janus") is None:
        parser.exit(
            2, "sfu_capacity: janus is not installed (apt-get install janus, or --no-janus)\n"
        )
    seconds = args.seconds or (5.0 if args.quick else 10.0)
    per_process = max(1, args.per_process)
    address = bench_address()
    print(
        f"{per_process} synthetic participants per process; {seconds:.0f} s per case; "
        f"media on {address[1]} ({address[0]})",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        clip_path = Path(tmp) / "clip.pickle"
        clip_path.write_bytes(pickle.dumps(encode_clip()))
        if args.soak:
            result = asyncio.run(soak_async(args.soak, per_process, clip_path, Path(tmp), address))
            print(json.dumps(result))
            return
        rows, janus_rows, stock_rows, frame_rows, voice_frame_rows = [], [], [], [], []
        before_rows: list[dict[str, Any]] = []
        if args.before:
            extract_tree(args.before, BEFORE_TREE)
        for n in counts:
            row = run_case(
                "clinicbox", [n], seconds, args.warmup, per_process, clip_path, Path(tmp), address
            )
            rows.append(row)
            print(describe("clinicbox", row), flush=True)
            if janus:
                j = run_case(
                    "janus", [n], seconds, args.warmup, per_process, clip_path, Path(tmp), address
                )
                janus_rows.append(j)
                print(describe("janus    ", j), flush=True)
                if row["us_per_packet"] and j["us_per_packet"]:
                    print(
                        f"{'':14}cpu per packet vs janus: "
                        f"{row['us_per_packet'] / j['us_per_packet']:.2f}x",
                        flush=True,
                    )
            if args.before:
                b = run_case(
                    "before", [n], seconds, args.warmup, per_process, clip_path, Path(tmp), address
                )
                before_rows.append(b)
                print(describe(f"{args.before[:9]:9}", b), flush=True)
                if b["us_per_packet"] and row["us_per_packet"]:
                    print(
                        f"{'':14}cpu per packet, this tree vs {args.before}: "
                        f"{row['us_per_packet'] / b['us_per_packet']:.2f}x",
                        flush=True,
                    )
            if args.voice_frames:
                v = run_case(
                    "voiceframes",
                    [n],
                    seconds,
                    args.warmup,
                    per_process,
                    clip_path,
                    Path(tmp),
                    address,
                )
                voice_frame_rows.append(v)
                print(describe("voice-fr ", v), flush=True)
                if v["us_per_packet"] and row["us_per_packet"]:
                    print(
                        f"{'':14}cpu per packet, voice packets vs voice frames: "
                        f"{row['us_per_packet'] / v['us_per_packet']:.2f}x",
                        flush=True,
                    )
            if args.frames:
                f = run_case(
                    "frames", [n], seconds, args.warmup, per_process, clip_path, Path(tmp), address
                )
                frame_rows.append(f)
                print(describe("frames   ", f), flush=True)
            if args.stock and n <= 8:
                s = run_case(
                    "stock", [n], seconds, args.warmup, per_process, clip_path, Path(tmp), address
                )
                stock_rows.append(s)
                print(describe("stock    ", s), flush=True)
        two_rooms: dict[str, dict[str, Any]] = {}
        if not args.quick:
            for mode in ["clinicbox"] + (["janus"] if janus else []):
                two_rooms[mode] = run_case(
                    mode, [8, 8], seconds, args.warmup, per_process, clip_path, Path(tmp), address
                )
                print(describe(f"{mode:9} 2x8", two_rooms[mode]), flush=True)
    shutil.rmtree(BEFORE_TREE, ignore_errors=True)

    def ratio(n: int) -> float | None:
        ours, theirs = at(rows, n, "us_per_packet"), at(janus_rows, n, "us_per_packet")
        return round(ours / theirs, 2) if ours and theirs else None

    print(
        json.dumps(
            {
                "participants": [r["participants"] for r in rows],
                "cpu_pct": [r["cpu_pct"] for r in rows],
                "rss_mb": [r["rss_mb"] for r in rows],
                "packets_per_s": [r["packets_per_s"] for r in rows],
                "us_per_packet": [r["us_per_packet"] for r in rows],
                "min_fps": [r["min_fps"] for r in rows],
                "min_audio_pps": [r["min_audio_pps"] for r in rows],
                "audio_streams": [r["audio_streams"] for r in rows],
                "janus_audio_streams": [r["audio_streams"] for r in janus_rows],
                "latency_p95_ms": [r["latency_p95_ms"] for r in rows],
                "janus_cpu_pct": [r["cpu_pct"] for r in janus_rows],
                "janus_rss_mb": [r["rss_mb"] for r in janus_rows],
                "janus_packets_per_s": [r["packets_per_s"] for r in janus_rows],
                "janus_us_per_packet": [r["us_per_packet"] for r in janus_rows],
                "janus_min_fps": [r["min_fps"] for r in janus_rows],
                "janus_latency_p95_ms": [r["latency_p95_ms"] for r in janus_rows],
                "cpu_per_packet_ratio_vs_janus": [ratio(r["participants"]) for r in rows],
                "before": args.before,
                "before_cpu_pct": [r["cpu_pct"] for r in before_rows],
                "before_us_per_packet": [r["us_per_packet"] for r in before_rows],
                "before_min_fps": [r["min_fps"] for r in before_rows],
                "voice_frames_cpu_pct": [r["cpu_pct"] for r in voice_frame_rows],
                "voice_frames_us_per_packet": [r["us_per_packet"] for r in voice_frame_rows],
                "voice_frames_min_fps": [r["min_fps"] for r in voice_frame_rows],
                "voice_frames_latency_p95_ms": [r["latency_p95_ms"] for r in voice_frame_rows],
                "frames_cpu_pct": [r["cpu_pct"] for r in frame_rows],
                "frames_us_per_packet": [r["us_per_packet"] for r in frame_rows],
                "frames_min_fps": [r["min_fps"] for r in frame_rows],
                "stock_participants": [r["participants"] for r in stock_rows],
                "stock_cpu_pct": [r["cpu_pct"] for r in stock_rows],
                "stock_min_fps": [r["min_fps"] for r in stock_rows],
                "two_rooms_cpu_pct": {m: r["cpu_pct"] for m, r in two_rooms.items()},
                "two_rooms_busiest_thread_pct": {
                    m: r["busiest_thread_pct"] for m, r in two_rooms.items()
                },
                "two_rooms_min_fps": {m: r["min_fps"] for m, r in two_rooms.items()},
                "participants_per_process": per_process,
                "generator_cpu_pct": [sum(r["generator_cpu_pct"]) for r in rows],
                "machine_busy_pct": [r["machine_busy_pct"] for r in rows],
                "cpu_per_packet_ratio_vs_janus_at_12": ratio(12),
                "cpu_pct_at_12": at(rows, 12, "cpu_pct"),
                "min_fps_at_12": at(rows, 12, "min_fps"),
                "latency_p95_ms_at_12": at(rows, 12, "latency_p95_ms"),
                "rss_mb_at_12": at(rows, 12, "rss_mb"),
            }
        )
    )


if __name__ == "__main__":
    main()
