"""RTP packet timing seen by a lab host's kernel, for calls whose media is encrypted (SRTP).

SRTP leaves the RTP header in the clear: version, payload type, sequence number, timestamp
and SSRC. Captured with an AF_PACKET socket inside a host's namespace and stamped by the
kernel (SO_TIMESTAMPNS), they say when each packet of each stream arrived (or left) against
its RTP clock, whatever the browser or the box was doing at that moment. Comparing the same
audio at the box's input, at its output and at the patient tells where arrival jitter comes
from: the publisher's sending, the box, the link, or the receiver's own scheduling.

    python -m harness.rtp_capture OUT.jsonl SECONDS     # inside a host's namespace

Each line: [kernel time s, "in" or "out", peer ip, peer port, ssrc, sequence, timestamp,
payload type, UDP payload bytes]. Only UDP datagrams that look like RTP (version 2, not
RTCP's payload types 64-95) are kept. `streams()` and `timing()` read the file back.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import struct
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4
AUDIO_CLOCK = 48_000


def capture(out: Path, seconds: float) -> None:
    """Write every RTP-looking UDP datagram this namespace's interfaces carry, for `seconds`."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    end = time.monotonic() + seconds
    with out.open("w") as f:
        while (left := end - time.monotonic()) > 0:
            if not select.select([sock], [], [], min(left, 0.5))[0]:
                continue
            data, ancdata, _flags, addr = sock.recvmsg(2048, socket.CMSG_SPACE(16))
            if addr[0] == "lo":
                continue
            stamp = next(
                (struct.unpack("qq", c[2][:16]) for c in ancdata if c[1] == SO_TIMESTAMPNS), None
            )
            row = _rtp_row(data, addr[2] == PACKET_OUTGOING)
            if row is not None and stamp is not None:
                f.write(json.dumps([stamp[0] + stamp[1] / 1e9, *row]) + "\n")


def _rtp_row(frame: bytes, outgoing: bool) -> list[object] | None:
    if len(frame) < 14 + 20 + 8 + 12 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    ihl = (frame[14] & 0x0F) * 4
    udp = 14 + ihl
    src, dst = socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34])
    sport, dport = struct.unpack("!HH", frame[udp : udp + 4])
    rtp = frame[udp + 8 :]
    if len(rtp) < 12 or rtp[0] >> 6 != 2 or 64 <= (rtp[1] & 0x7F) <= 95:
        return None
    seq, ts, ssrc = struct.unpack("!HII", rtp[2:12])
    peer, port = (dst, dport) if outgoing else (src, sport)
    return ["out" if outgoing else "in", peer, port, ssrc, seq, ts, rtp[1] & 0x7F, len(rtp)]


@dataclass(frozen=True)
class StreamTiming:
    """One RTP stream's arrival (or departure) against its RTP clock."""

    direction: str
    peer: str
    ssrc: int
    packets: int
    jitter_ms: float  # RFC 3550 interarrival jitter at the end of the window
    max_jitter_ms: float  # the highest it reached in the window
    spread_ms: float  # 99th minus 1st percentile of transit (arrival - timestamp / clock)
    late_over_60ms: int  # packets more than 60 ms later than the stream's earliest transit


def streams(path: Path) -> dict[tuple[str, str, int], list[tuple[float, int, int, int]]]:
    """Per (direction, peer ip, ssrc): [(time, sequence, timestamp, bytes)] in capture order."""
    out: dict[tuple[str, str, int], list[tuple[float, int, int, int]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        t, direction, peer, _port, ssrc, seq, ts, _pt, size = json.loads(line)
        out[(direction, peer, ssrc)].append((t, seq, ts, size))
    return out


def timing(
    rows: list[tuple[float, int, int, int]],
    window: tuple[float, float],
    clock: int = AUDIO_CLOCK,
) -> tuple[int, float, float, float, int]:
    """(packets, jitter ms at the end, highest jitter ms, transit spread ms, late > 60 ms) of
    one stream's packets in `window` (epoch s). RTP timestamps are unwrapped."""
    kept = [r for r in rows if window[0] <= r[0] <= window[1]]
    if len(kept) < 2:
        return len(kept), 0.0, 0.0, 0.0, 0
    transits, base, last_ts, wraps = [], kept[0][2], kept[0][2], 0
    for t, _seq, ts, _size in kept:
        if ts < last_ts and last_ts - ts > 1 << 31:
            wraps += 1
        last_ts = ts
        transits.append(t - (ts + (wraps << 32) - base) / clock)
    jitter = peak = 0.0
    for before, after in zip(transits, transits[1:], strict=False):
        jitter += (abs(after - before) - jitter) / 16
        peak = max(peak, jitter)
    ordered = sorted(transits)
    low = ordered[int(0.01 * (len(ordered) - 1))]
    high = ordered[int(0.99 * (len(ordered) - 1))]
    late = sum(1 for x in transits if x - ordered[0] > 0.060)
    return len(kept), 1000 * jitter, 1000 * peak, 1000 * (high - low), late


def packet_time_and_rate(
    rows: list[tuple[float, int, int, int]], window: tuple[float, float], clock: int = AUDIO_CLOCK
) -> tuple[float, float]:
    """(median RTP timestamp step between consecutive packets in ms, RTP payload kbit/s
    including the RTP header) of one stream in `window`: the packet time and bitrate a
    sender really uses, whatever its SDP was asked for."""
    kept = [r for r in rows if window[0] <= r[0] <= window[1]]
    if len(kept) < 2:
        return 0.0, 0.0
    steps = sorted(
        (b[2] - a[2]) % (1 << 32) / clock * 1000
        for a, b in zip(kept, kept[1:], strict=False)
        if b[1] == (a[1] + 1) % 65536
    )
    seconds = kept[-1][0] - kept[0][0]
    kbps = sum(r[3] for r in kept[1:]) * 8 / seconds / 1000 if seconds > 0 else 0.0
    return (round(steps[len(steps) // 2], 1) if steps else 0.0), round(kbps, 1)


def audio_streams(
    path: Path, window: tuple[float, float], min_packets: int = 100
) -> list[StreamTiming]:
    """Every stream in the capture that advances at the audio clock (48 kHz, Opus) with at
    least `min_packets` packets in the window."""
    found = []
    for (direction, peer, ssrc), rows in streams(path).items():
        kept = [r for r in rows if window[0] <= r[0] <= window[1]]
        if len(kept) < min_packets:
            continue
        span_t = kept[-1][0] - kept[0][0]
        span_ts = (kept[-1][2] - kept[0][2]) % (1 << 32)
        if span_t <= 0 or not 0.8 * AUDIO_CLOCK <= span_ts / span_t <= 1.2 * AUDIO_CLOCK:
            continue  # video (90 kHz) or something that is not a steady audio stream
        packets, jitter, peak, spread, late = timing(rows, window)
        found.append(
            StreamTiming(
                direction,
                peer,
                ssrc,
                packets,
                round(jitter, 1),
                round(peak, 1),
                round(spread, 1),
                late,
            )
        )
    return found


if __name__ == "__main__":
    # Stopped early by the lab (SIGTERM): leave through `with`, so what was written is kept.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    capture(Path(sys.argv[1]), float(sys.argv[2]))
