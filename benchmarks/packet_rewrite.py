"""CPU per forwarded video packet on the box's packet path, its pieces measured alone.

    python benchmarks/packet_rewrite.py [--quick]

One publisher's VP8 packets (1,200-byte payloads, browser-style header extensions) are
rewritten for a slot (`SlotRewriter` with a subscriber's extension template), encrypted with
pylibsrtp as the subscriber's transport does, and, for comparison, built the frame path's way
(`Vp8Encoder.pack` then aiortc's `RtpPacket` and `serialize`, as `RTCRtpSender` does per
subscriber), and parsed as aiortc's transport parses every incoming packet. Process CPU time
(not wall time), so other work on the machine moves it less than a socket benchmark; still,
compare the lines of one run with each other. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiortc.codecs.vpx import Vp8Encoder  # noqa: E402
from aiortc.rtp import HeaderExtensionsMap, RtpPacket  # noqa: E402
from pylibsrtp import Policy, Session  # noqa: E402

from appliance.media.encoded import EncodedFrame  # noqa: E402
from appliance.media.forwarding.rewrite import (  # noqa: E402
    ExtensionTemplate,
    SlotRewriter,
    extension_block,
    parse_video,
)


def publisher_packet(seq: int, keyframe: bool) -> bytes:
    descriptor = bytes([0x90, 0x80, 0x80 | (seq >> 8 & 0x7F), seq & 0xFF])
    header = struct.pack("!BBHII", 0x90, 0x80 | 100, seq, seq * 6000, 0xABCD)
    header += extension_block([(3, b"\x01\x02\x03"), (4, b"0")])
    return header + descriptor + bytes([0x10 if keyframe else 0x11]) + b"\x55" * 1199


def per_call_us(fn: Callable[[int], object], n: int) -> float:
    start = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--quick", action="store_true", help="20,000 packets instead of 200,000")
    args = parser.parse_args()
    n = 20_000 if args.quick else 200_000
    packets = [publisher_packet(i & 0xFFFF, i % 1000 == 0) for i in range(1024)]
    parsed = [parse_video(p) for p in packets]
    rewriter = SlotRewriter(0x5107, 96)
    template = ExtensionTemplate((1, b"3"), 2)
    source = object()
    key = bytes(30)
    wall = time.time()

    def rewrite(i: int) -> object:
        return rewriter.rewrite(packets[i & 1023], source, template.at(wall), 0.0, parsed[i & 1023])

    def rewrite_and_parse(i: int) -> object:
        return rewriter.rewrite(packets[i & 1023], source, template.at(wall), 0.0)

    base = rewrite(0)
    assert isinstance(base, bytes)
    # SRTP refuses a sequence number twice: 4,096 in order, then a fresh session.
    rewritten = [base[:2] + seq.to_bytes(2, "big") + base[4:] for seq in range(4096)]
    sessions: list[Session] = []

    def protect(i: int) -> object:
        if i % 4096 == 0:
            sessions[:] = [Session(policy=Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))]
        return sessions[0].protect(rewritten[i % 4096])

    ext_map = HeaderExtensionsMap()
    encoder = Vp8Encoder()
    frame = EncodedFrame(b"\x11" + b"\x55" * 1199, 3000, Fraction(1, 90000), "video")

    def frame_path(i: int) -> object:
        payloads, timestamp = encoder.pack(frame)
        packet = RtpPacket(payload_type=96, sequence_number=i & 0xFFFF, timestamp=timestamp)
        packet.ssrc = 0x5107
        packet.payload = payloads[0]
        packet.marker = 1
        packet.extensions.abs_send_time = 1234
        packet.extensions.mid = "3"
        return packet.serialize(ext_map)

    def aiortc_parse(i: int) -> object:
        return RtpPacket.parse(packets[i & 1023], ext_map)

    figures = {
        "rewrite_us": per_call_us(rewrite, n),
        "rewrite_with_parse_us": per_call_us(rewrite_and_parse, n),
        "srtp_protect_us": per_call_us(protect, n),
        "frame_path_pack_serialize_us": per_call_us(frame_path, n),
        "aiortc_parse_us": per_call_us(aiortc_parse, n),
    }
    for name, value in figures.items():
        print(f"{name:30} {value:6.2f} us per packet", flush=True)
    print(json.dumps({k: round(v, 2) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
