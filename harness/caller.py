"""A synthetic call participant for the weak-link lab: publishes, receives, measures.

Run inside a lab host (`lab.python_module(host, "harness.caller", ...)`). It joins the
box's room through `harness.callbox` (line-JSON over TCP), offering what the browser
client offers: its own Opus audio and VP8 video send-only, plus receive-only slots. It sends a
pre-encoded clip (no encoding while the call runs) and records, without decoding:
- every audio RTP packet received, with its arrival time (wall clock: every namespace of the
  machine shares it) and payload;
- every video frame the jitter buffer completes;
- downlink RTP bytes per half second.
At the end it prints one JSON line (`CallerReport`) and exits.

How on-time audio is measured: every publisher paces its packets on one shared clock, packet
n leaving at `t0 + n * 20 ms`, and packet n carries tone `n % TONES` (a sine at
`TONE_BASE_HZ + n % TONES * TONE_STEP_HZ`). A forwarded packet is recognised by its bytes;
a re-encoded one (the stock relay decodes and encodes again) by decoding it after the call
and finding its tone. Its send time is then the latest `t0 + n * 20 ms` with that tone before
its arrival, so delays longer than the tone period (2.56 s) would read short, and a
re-encoded packet can read up to one packet (20 ms) late because of the codecs' look-ahead.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import re
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from appliance.media.aiortc_glue import consent
from appliance.media.aiortc_glue.seams import install_forwarding
from appliance.media.encoded import EncodedFrame
from appliance.media.locality import nominated_pair_types
from appliance.media.turn import first_allocating

AUDIO_PTIME_S = 0.02
VIDEO_FPS = 15
TONES = 128
TONE_BASE_HZ = 400.0
TONE_STEP_HZ = 50.0  # one FFT bin of a 20 ms frame at 48 kHz
TONE_PERIOD_S = TONES * AUDIO_PTIME_S
BIN_S = 0.5
RTP_HEADER_BYTES = 12
#: An event loop held up this long sends its voice packets late enough to matter (on EDGE
#: voices have ~50 ms to spare).
STALL_MS = 50.0
MIX = "mix"  # what the box says an audio slot shows when it carries the mixed voices


# --- the clip -----------------------------------------------------------------------------
@dataclass
class Clip:
    """Pre-encoded media every participant loops: VP8 frames and one Opus packet per tone."""

    video: list[tuple[bytes, bool]]  # (frame, keyframe)
    audio: list[bytes]  # audio[k] sounds tone k
    # The same tones 24 dB quieter: participants who are not speaking. Mixed with a speaker,
    # the speaker's tone stands out; identical loud tones from several publishers would
    # interfere in a mix and could not be read back.
    quiet: list[bytes] = field(default_factory=list)

    @classmethod
    def encode(cls, width: int = 320, height: int = 180, video_kbps: int = 150,
               seconds: float = 4.0) -> Clip:
        """A moving VP8 picture (keyframe every second) and the Opus tone packets."""
        vp8 = av.CodecContext.create("libvpx", "w")
        vp8.width, vp8.height, vp8.pix_fmt = width, height, "yuv420p"
        vp8.bit_rate = video_kbps * 1000
        vp8.time_base = Fraction(1, VIDEO_FPS)
        vp8.gop_size = VIDEO_FPS
        vp8.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        texture = np.random.default_rng(5).integers(0, 256, (height, width, 3), dtype=np.uint8)
        texture = np.repeat(np.repeat(texture[::4, ::4], 4, axis=0), 4, axis=1)
        video = []
        for n in range(int(seconds * VIDEO_FPS)):
            # Moving texture: a picture with detail, so the clip costs what a camera would.
            img = np.roll(texture, n * 4, axis=1)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts = n
            video.extend((bytes(p), p.is_keyframe) for p in vp8.encode(frame))
        return cls(video=video, audio=_tones(8000), quiet=_tones(500))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({
            "video": [[base64.b64encode(d).decode(), k] for d, k in self.video],
            "audio": [base64.b64encode(d).decode() for d in self.audio],
            "quiet": [base64.b64encode(d).decode() for d in self.quiet],
        }))

    @classmethod
    def load(cls, path: Path) -> Clip:
        data = json.loads(path.read_text())
        return cls(video=[(base64.b64decode(d), bool(k)) for d, k in data["video"]],
                   audio=[base64.b64decode(d) for d in data["audio"]],
                   quiet=[base64.b64decode(d) for d in data.get("quiet", [])])


def _tones(amplitude: int) -> list[bytes]:
    """One 20 ms Opus packet per tone k (24 kbps, as a browser sends speech)."""
    opus = av.CodecContext.create("libopus", "w")
    opus.sample_rate, opus.layout, opus.format = 48000, "mono", "s16"
    opus.bit_rate = 24000
    samples = int(48000 * AUDIO_PTIME_S)
    audio: list[bytes] = []
    # One pass to prime the encoder, a second whose packets are kept: packet k then
    # follows tone k-1 as it does in the loop.
    for keep in (False, True):
        for k in range(TONES):
            t = (np.arange(samples) + k * samples) / 48000
            pcm = (amplitude * np.sin(2 * np.pi * tone_hz(k) * t)).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = 48000
            frame.pts = (k + TONES * keep) * samples
            packets = [bytes(p) for p in opus.encode(frame)]
            if keep:
                audio.extend(packets)
    if len(audio) < TONES:  # the encoder's look-ahead holds the last packets back
        audio.extend(bytes(p) for p in opus.encode(None))
    return audio[:TONES]


def tone_hz(k: int) -> float:
    return TONE_BASE_HZ + k * TONE_STEP_HZ


def tone_of(pcm: np.ndarray) -> int:
    """The tone (0..TONES-1) loudest in one 20 ms frame of 48 kHz mono samples."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64), n=960))
    bins = (TONE_BASE_HZ + np.arange(TONES) * TONE_STEP_HZ) / (48000 / 960)
    return int(np.argmax(spectrum[bins.astype(int)]))


class PacedTrack(MediaStreamTrack):
    """Sends clip frames on the shared clock: frame n leaves at t0 + n * period, pre-encoded."""

    def __init__(self, kind: str, clip: Clip, t0: float, phase: int = 0,
                 quiet: bool = False) -> None:
        super().__init__()
        self.kind = kind
        self.tones = clip.quiet if quiet and clip.quiet else clip.audio
        # Where in the video clip this publisher starts: keyframes of several publishers
        # sending the same clip in step would otherwise reach every subscriber at once.
        self.phase = phase
        self.clip = clip
        self.t0 = t0
        self.period = AUDIO_PTIME_S if kind == "audio" else 1 / VIDEO_FPS
        self.n: int | None = None

    async def recv(self) -> EncodedFrame:
        if self.n is None:
            self.n = max(0, math.ceil((time.time() - self.t0) / self.period))
        wait = self.t0 + self.n * self.period - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        n = self.n
        self.n += 1
        if self.kind == "audio":
            return EncodedFrame(self.tones[n % TONES], n * 960, Fraction(1, 48000), "audio")
        data, keyframe = self.clip.video[(n + self.phase) % len(self.clip.video)]
        return EncodedFrame(data, n * 6000, Fraction(1, 90000), "video", keyframe=keyframe)


# --- what is received ---------------------------------------------------------------------
@dataclass
class CallerReport:
    """What one participant received, times relative to t0 (seconds), per receive slot."""

    pid: str
    connected_s: float | None = None
    # mid -> [[arrival_s, delay_s], ...], one per distinct packet recognised
    audio: dict[str, list[list[float]]] = field(default_factory=dict)
    # mid -> [arrival_s, ...] of completed video frames
    video: dict[str, list[float]] = field(default_factory=dict)
    # downlink RTP bytes per BIN_S from t0
    bytes_per_bin: list[int] = field(default_factory=list)
    max_loop_lag_ms: float = 0.0
    # [t_s, lag_ms] of each time its event loop was held up >= STALL_MS: its own packets
    # then left late, whatever the box and the link did
    loop_stalls: list[list[float]] = field(default_factory=list)
    unrecognised_audio: int = 0
    # [arrival_s, event] of the box's in-call events (slots, quality, ...)
    events: list[list[Any]] = field(default_factory=list)
    # ICE: candidate types in its offer and in the box's answer, and of the nominated pair
    # (local, remote), e.g. ["relay", "relay"] through the centre's TURN server
    offer_candidates: list[str] = field(default_factory=list)
    answer_candidates: list[str] = field(default_factory=list)
    ice_pair: list[str] = field(default_factory=list)
    turn_url: str | None = None
    # when (from t0) its offer was ready (candidates gathered) and the box's answer came
    offer_s: float | None = None
    answer_s: float | None = None


class Recorder:
    """Records arrivals at the RTP level (before any jitter buffer) and completed video frames."""

    def __init__(self, t0: float, clip: Clip) -> None:
        self.t0 = t0
        self.known = {data: k for tones in (clip.quiet, clip.audio) for k, data in enumerate(tones)}
        self.audio: dict[str, list[tuple[float, int, bytes]]] = {}
        self.video: dict[str, list[float]] = {}
        self.bytes_per_bin: list[int] = []
        self.events: list[list[Any]] = []
        self.showing: dict[str, str | None] = {}  # audio mid -> who the box says it shows

    def on_event(self, message: object) -> None:
        """An in-call event from the box's data channel."""
        if not isinstance(message, str):
            return
        event = json.loads(message)
        self.events.append([round(time.time() - self.t0, 3), event])
        if event.get("type") == "slots":
            self.showing = dict(event.get("audio") or {})

    def watch(self, receiver: RTCRtpReceiver, kind: str, mid: Callable[[], str | None]) -> None:
        """Wrap the receiver's RTP entry point (a private aiortc seam, pinned with aiortc)."""
        original = receiver._handle_rtp_packet

        async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
            now = time.time()
            index = int((now - self.t0) / BIN_S)
            if index >= 0:
                if index >= len(self.bytes_per_bin):
                    self.bytes_per_bin.extend([0] * (index + 1 - len(self.bytes_per_bin)))
                self.bytes_per_bin[index] += (RTP_HEADER_BYTES + len(packet.payload)
                                              + packet.padding_size)
            if kind == "audio" and packet.payload:
                key = mid() or "?"
                mixed = self.showing.get(key) == MIX
                self.audio.setdefault(key, []).append(
                    (now, packet.sequence_number, packet.payload, mixed, packet.timestamp))
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = handle  # type: ignore[method-assign]

    async def consume(self, track: MediaStreamTrack, mid: str) -> None:
        """Pull a received track (so nothing piles up); note when each video frame completes."""
        frames = self.video.setdefault(mid, []) if track.kind == "video" else None
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            if frames is not None:
                frames.append(time.time() - self.t0)

    def report(self, pid: str) -> CallerReport:
        """Recognise each audio packet's tone, hence its send time; build the report."""
        out = CallerReport(pid=pid, bytes_per_bin=self.bytes_per_bin, events=self.events)
        out.video = {mid: [round(t, 4) for t in times] for mid, times in self.video.items()}
        for mid, packets in self.audio.items():
            decoder = None
            seen: set[int] = set()
            rows = []
            mixed_media: list[tuple[int, float]] = []  # (row, media time) of the mix's parts
            for arrival, seq, payload, mixed, timestamp in sorted(packets, key=lambda p: p[0]):
                if seq in seen:
                    continue
                seen.add(seq)
                tone = self.known.get(payload)
                if tone is not None:
                    rows.append([round(arrival - self.t0, 4),
                                 round(delay_for(arrival - self.t0, tone), 4), 0])
                    continue
                # Re-encoded on the way (stock relaying, or the box's mix): decode and listen
                # to each 20 ms of it (a mixed packet holds 40 ms).
                decoder = decoder or av.CodecContext.create("opus", "r")
                frames = decoder.decode(av.Packet(payload))
                if not frames:
                    out.unrecognised_audio += 1
                    continue
                pcm = np.concatenate([_mono(f) for f in frames])
                chunks = len(pcm) // 960
                for k in range(chunks):
                    # Decoding and encoding again delays the sound by both codecs' look-ahead
                    # (2 x 312 samples), so a re-encoded packet sounds loudest the tone of the
                    # packet before it (370 of 374 packets in a check of aiortc's codecs).
                    tone = (tone_of(pcm[k * 960:(k + 1) * 960]) + 1) % TONES
                    # Each part's own tone says when it was sent: later parts, less delay.
                    if mixed:
                        mixed_media.append((len(rows), timestamp / 48000 + k * AUDIO_PTIME_S))
                    rows.append([round(arrival - self.t0, 4),
                                 round(delay_for(arrival - self.t0, tone), 4), int(mixed)])
            _steady_mixed_send_times(rows, mixed_media)
            out.audio[mid] = rows
        return out


def _steady_mixed_send_times(rows: list[list[float]], media: list[tuple[int, float]]) -> None:
    """Correct the mix's misread tones from its RTP clock.

    The box's mix at ~20 kbps wideband loses the highest test tones (above ~6 kHz), and a
    misread tone would read as a late part. Send time minus RTP media time is the same for
    every part of one stream (up to the box's own re-timing after a gap), so each part gets
    the median of its neighbours'.
    """
    if len(media) < 5:
        return
    unwrapped: list[float] = []
    for _, m in media:
        if unwrapped:
            period = 2**32 / 48000
            while m < unwrapped[-1] - period / 2:
                m += period
        unwrapped.append(m)
    offsets = [(rows[i][0] - rows[i][1]) - m for (i, _), m in zip(media, unwrapped, strict=True)]
    for j, ((i, _), m) in enumerate(zip(media, unwrapped, strict=True)):
        # Misreads come in runs (the highest tones, ~13 parts of every 128): a wide window.
        window = sorted(offsets[max(0, j - 20):j + 21])
        sent = window[len(window) // 2] + m
        rows[i][1] = round(rows[i][0] - sent, 4)


def _mono(frame: av.AudioFrame) -> np.ndarray:
    pcm = frame.to_ndarray()
    if frame.format.is_planar:
        return pcm.mean(axis=0)
    return pcm.reshape(-1, len(frame.layout.channels)).mean(axis=1)


def delay_for(arrival_s: float, tone: int) -> float:
    """Delay of a packet with this tone arriving arrival_s after t0 (latest matching send)."""
    # Sent at n * ptime with n % TONES == tone; allow one packet of early reading.
    latest = math.floor((arrival_s + AUDIO_PTIME_S) / AUDIO_PTIME_S)
    n = latest - ((latest - tone) % TONES)
    return arrival_s - n * AUDIO_PTIME_S


# --- the participant ----------------------------------------------------------------------
def _codecs(kind: str) -> list[Any]:
    wanted = ("audio/opus",) if kind == "audio" else ("video/vp8", "video/rtx")
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() in wanted]


async def _loop_lag(stop: asyncio.Event, worst: list[float], stalls: list[list[float]],
                    t0: float) -> None:
    while not stop.is_set():
        before = time.monotonic()
        await asyncio.sleep(0.05)
        lag_ms = (time.monotonic() - before - 0.05) * 1000
        worst[0] = max(worst[0], lag_ms)
        if lag_ms >= STALL_MS:
            stalls.append([round(time.time() - t0 - lag_ms / 1000, 3), round(lag_ms, 1)])


async def run(args: argparse.Namespace) -> CallerReport:
    """Join, publish and receive until t0 + seconds, then report."""
    install_forwarding(asyncio.get_running_loop())  # receive encoded frames: no decoding
    consent.install()  # as a browser does: a slow link's round trip is not a lost consent
    clip = Clip.load(Path(args.clip))
    recorder = Recorder(args.t0, clip)
    ice_servers, turn_url = await _ice_servers(args.turn)
    pc = RTCPeerConnection(
        RTCConfiguration(iceServers=ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )
    for kind in args.publish:
        track = PacedTrack(kind, clip, args.t0, phase=args.video_phase, quiet=args.quiet)
        pc.addTransceiver(track, "sendonly").setCodecPreferences(_codecs(kind))
    for kind, count in (("audio", args.audio_slots), ("video", args.video_slots)):
        for _ in range(count):
            transceiver = pc.addTransceiver(kind, "recvonly")
            transceiver.setCodecPreferences(_codecs(kind))
            recorder.watch(transceiver.receiver, kind, lambda t=transceiver: t.mid)
    tasks: list[asyncio.Task[None]] = []
    channel = pc.createDataChannel("events")
    channel.on("message", recorder.on_event)

    @pc.on("track")
    def _on_track(track: MediaStreamTrack) -> None:
        mid = next(str(t.mid) for t in pc.getTransceivers() if t.receiver.track is track)
        tasks.append(asyncio.ensure_future(recorder.consume(track, mid)))

    report_connected: list[float] = []

    @pc.on("connectionstatechange")
    def _on_state() -> None:
        if pc.connectionState == "connected" and not report_connected:
            report_connected.append(time.time() - args.t0)

    host, port = args.box.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    await pc.setLocalDescription(await pc.createOffer())
    offer_sdp = pc.localDescription.sdp
    offer_s = time.time() - args.t0
    writer.write((json.dumps({"op": "join", "pid": args.pid, "role": args.role,
                              "sdp": pc.localDescription.sdp}) + "\n").encode())
    await writer.drain()
    reply = json.loads(await asyncio.wait_for(reader.readline(), 30))
    if "error" in reply:
        raise SystemExit(f"join refused: {reply['error']}")
    answer_s = time.time() - args.t0
    await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))

    stop = asyncio.Event()
    worst = [0.0]
    stalls: list[list[float]] = []
    lag = asyncio.ensure_future(_loop_lag(stop, worst, stalls, args.t0))
    await asyncio.sleep(max(0.0, args.t0 + args.seconds - time.time()))
    stop.set()
    await lag
    for task in tasks:
        task.cancel()
    report = recorder.report(args.pid)
    report.connected_s = report_connected[0] if report_connected else None
    report.offer_candidates = sorted(set(_CANDIDATE_TYPE.findall(offer_sdp)))
    report.answer_candidates = sorted(set(_CANDIDATE_TYPE.findall(reply["sdp"])))
    report.ice_pair = list(nominated_pair_types(pc) or [])
    report.turn_url = turn_url
    report.offer_s, report.answer_s = round(offer_s, 3), round(answer_s, 3)
    report.max_loop_lag_ms = round(worst[0], 1)
    report.loop_stalls = stalls
    writer.close()
    await _close(pc.close())
    return report


_CANDIDATE_TYPE = re.compile(r" typ (host|srflx|prflx|relay)")


async def _ice_servers(path: Path | None) -> tuple[list[RTCIceServer], str | None]:
    """A browser's iceServers (the call page's JSON) made fit for aiortc, which uses only the
    first TURN URL: the first that allocates, as the box chooses its own."""
    if path is None:
        return [], None
    servers = json.loads(path.read_text())
    if not servers:
        return [], None
    server = servers[0]
    url = await first_allocating(server["urls"], server["username"], server["credential"])
    if url is None:
        return [], None
    return [RTCIceServer(url, server["username"], server["credential"])], url


async def _close(closing: Coroutine[Any, Any, None]) -> None:
    try:
        await asyncio.wait_for(closing, 5)
    except TimeoutError:
        pass  # a link cut mid-close: the process exits anyway


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Synthetic call participant for the lab.")
    parser.add_argument("--box", required=True, help="ip:port of harness.callbox")
    parser.add_argument("--pid", required=True)
    parser.add_argument("--role", default="patient")
    parser.add_argument("--clip", required=True, help="file written by Clip.save")
    parser.add_argument("--t0", type=float, required=True, help="shared clock origin (epoch s)")
    parser.add_argument("--seconds", type=float, required=True, help="run until t0 + seconds")
    parser.add_argument("--publish", default="audio,video",
                        type=lambda s: [k for k in s.split(",") if k])
    parser.add_argument("--video-phase", type=int, default=0,
                        help="start the video clip this many frames in")
    parser.add_argument("--audio-slots", type=int, default=5)
    parser.add_argument("--quiet", action="store_true", help="send the quiet tones (listening)")
    parser.add_argument("--video-slots", type=int, default=4)
    parser.add_argument("--turn", type=Path, default=None,
                        help="JSON file with the call page's iceServers (a remote patient's)")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    sys.stdout.write(json.dumps(asdict(report)) + "\n")


if __name__ == "__main__":
    main()
