"""RTP timing read from kernel-stamped captures (harness.rtp_capture), on known input."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

from harness import rtp_capture


def _frame(src: str, dst: str, seq: int, ts: int, ssrc: int, payload: bytes = b"x" * 60) -> bytes:
    rtp = struct.pack("!BBHII", 0x80, 111, seq, ts, ssrc) + payload
    udp = struct.pack("!HHHH", 40000, 50000, 8 + len(rtp), 0) + rtp
    ip = bytes([0x45, 0]) + struct.pack("!H", 20 + len(udp)) + bytes(5) + bytes([17, 0, 0])
    ip += socket.inet_aton(src) + socket.inet_aton(dst)
    return bytes(12) + b"\x08\x00" + ip + udp


def test_rtp_headers_are_read_from_an_ethernet_frame_and_rtcp_is_left_out() -> None:
    row = rtp_capture._rtp_row(_frame("10.77.0.1", "10.77.0.3", 7, 960, 1234), outgoing=False)
    assert row == ["in", "10.77.0.1", 40000, 1234, 7, 960, 111, 72]
    out = rtp_capture._rtp_row(_frame("10.77.0.1", "10.77.0.3", 7, 960, 1234), outgoing=True)
    assert out is not None and out[:3] == ["out", "10.77.0.3", 50000]
    rtcp = bytearray(_frame("10.77.0.1", "10.77.0.3", 7, 960, 1234))
    rtcp[14 + 20 + 8 + 1] = 200  # a sender report's packet type
    assert rtp_capture._rtp_row(bytes(rtcp), outgoing=False) is None


def test_a_steady_stream_has_no_jitter_and_a_held_back_stretch_shows_as_spread() -> None:
    steady = [(100.0 + n * 0.02, n, n * 960, 72) for n in range(500)]
    packets, jitter, peak, spread, late = rtp_capture.timing(steady, (0, 1e9))
    assert (packets, round(jitter, 3), round(spread, 3), late) == (500, 0.0, 0.0, 0)
    # Packets 200-299 leave 150 ms late (a sender that stalled, then kept its lag).
    held = [(t + (0.15 if 200 <= n < 300 else 0.0), n, ts, b) for t, n, ts, b in steady]
    packets, jitter, peak, spread, late = rtp_capture.timing(held, (0, 1e9))
    assert late == 100 and round(spread) == 150 and peak > 5


def test_packet_time_and_rate_of_a_60_ms_stream(tmp_path: Path) -> None:
    rows = [(10.0 + n * 0.06, n, n * 2880, 12 + 78) for n in range(100)]
    ptime, kbps = rtp_capture.packet_time_and_rate(rows, (0, 1e9))
    assert ptime == 60.0 and 11.5 < kbps < 12.5  # 90 bytes every 60 ms
    # Read back from a capture file, audio streams are told from video by their clock.
    path = tmp_path / "cap.jsonl"
    video = [(10.0 + n * 0.066, n, n * 6000, 900) for n in range(150)]
    with path.open("w") as f:
        for t, seq, ts, size in rows:
            f.write(json.dumps([t, "in", "10.77.0.3", 50000, 1, seq, ts, 111, size]) + "\n")
        for t, seq, ts, size in video:
            f.write(json.dumps([t, "in", "10.77.0.3", 50000, 2, seq, ts, 96, size]) + "\n")
    found = rtp_capture.audio_streams(path, (0, 1e9), min_packets=50)
    assert [s.ssrc for s in found] == [1]
