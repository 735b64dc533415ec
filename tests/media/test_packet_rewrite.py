"""A video slot's RTP rewrite: one continuous stream across source switches, NACKs mapped back."""

from __future__ import annotations

import struct

from appliance.media.forwarding.packet_cache import PacketCache
from appliance.media.forwarding.rewrite import (
    SWITCH_GAP_TICKS,
    ExtensionTemplate,
    SlotRewriter,
    extension_block,
    parse_rtp,
    parse_vp8,
    unwrap_rtx,
)

SLOT_SSRC = 0x5107
SLOT_PT = 96


def vp8_packet(
    seq: int,
    ts: int,
    pid: int,
    *,
    ssrc: int = 1,
    start: bool = True,
    keyframe: bool = False,
    marker: bool = True,
    tl0: int | None = None,
    body: bytes = b"frame-data",
    pt: int = 100,
    extension: bool = True,
) -> bytes:
    """A publisher's VP8 packet as a browser sends it: 15-bit picture id, header extension."""
    flags = 0x80 | (0x40 if tl0 is not None else 0)  # I (and L)
    descriptor = bytes([0x80 | (0x10 if start else 0), flags, 0x80 | (pid >> 8), pid & 0xFF])
    if tl0 is not None:
        descriptor += bytes([tl0])
    vp8 = bytes([0x10 if keyframe else 0x11]) + body  # P bit 0: keyframe
    first = 0x80 | (0x10 if extension else 0)
    header = struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    if extension:
        header += extension_block([(3, b"\x01\x02\x03"), (4, b"0")])  # publisher's own ids
    return header + descriptor + vp8


def fields(packet: bytes) -> tuple[int, int, int, int, int]:
    """(seq, timestamp, ssrc, payload type, picture id) of a rewritten packet."""
    view = parse_rtp(packet)
    assert view is not None
    vp8 = parse_vp8(packet[view.payload_start : view.payload_end])
    assert vp8 is not None and vp8.picture_id_bits == 15
    at = view.payload_start + vp8.picture_id_at
    pid = ((packet[at] & 0x7F) << 8) | packet[at + 1]
    return view.seq, view.timestamp, view.ssrc, packet[1] & 0x7F, pid


def payload_after_descriptor(packet: bytes) -> bytes:
    view = parse_rtp(packet)
    assert view is not None
    vp8 = parse_vp8(packet[view.payload_start : view.payload_end])
    assert vp8 is not None
    return packet[view.payload_start + vp8.length : view.payload_end]


EXT = extension_block([(1, b"1"), (2, b"\x00\x00\x01")])  # the subscriber's mid, abs-send-time


def test_sequence_timestamp_and_picture_id_continue_across_a_switch() -> None:
    rw = SlotRewriter(SLOT_SSRC, SLOT_PT)
    a, b = object(), object()
    out = []
    # Source a: a keyframe then two more frames (one of two packets).
    for i, (start, key) in enumerate([(True, True), (True, False), (False, False)]):
        packet = rw.rewrite(
            vp8_packet(1000 + i, 90_000 + 6000 * (i // 2 * 2), 700 + i, start=start, keyframe=key),
            a,
            EXT,
            now=10.0 + i * 0.066,
        )
        assert packet is not None
        out.append(packet)
    last_seq, last_ts, _, _, last_pid = fields(out[-1])

    # Source b, far away in every numbering, wrapping sequence and picture id.
    rw.switch()
    assert rw.rewrite(vp8_packet(65_534, 4_000_000, 32_766, ssrc=2), b, EXT, now=10.3) is None
    assert rw.waiting  # not a keyframe: nothing of b until its keyframe
    first_b = rw.rewrite(
        vp8_packet(65_535, 4_003_000, 32_767, ssrc=2, keyframe=True), b, EXT, now=10.4
    )
    second_b = rw.rewrite(vp8_packet(0, 4_009_000, 0, ssrc=2), b, EXT, now=10.46)
    assert first_b is not None and second_b is not None

    seq1, ts1, ssrc1, pt1, pid1 = fields(first_b)
    seq2, ts2, ssrc2, pt2, pid2 = fields(second_b)
    assert (seq1, seq2) == ((last_seq + 1) & 0xFFFF, (last_seq + 2) & 0xFFFF)
    assert (pid1, pid2) == (last_pid + 1, last_pid + 2)
    # Real time passed (0.268 s) is more than the minimum gap: timestamps carry it.
    assert ts1 - last_ts == max(SWITCH_GAP_TICKS, int((10.4 - 10.132) * 90_000))
    assert ts2 - ts1 == 6000  # the source's own spacing is kept
    assert {ssrc1, ssrc2} == {SLOT_SSRC} and {pt1, pt2} == {SLOT_PT}
    # The payload itself is untouched; the subscriber's extensions replace the publisher's.
    assert payload_after_descriptor(first_b) == b"\x10frame-data"
    assert first_b[12 : 12 + len(EXT)] == EXT


def test_a_switch_gap_is_at_least_the_minimum_even_when_no_time_passed() -> None:
    rw = SlotRewriter(SLOT_SSRC, SLOT_PT)
    a, b = object(), object()
    first = rw.rewrite(vp8_packet(5, 1000, 1, keyframe=True), a, b"", now=1.0)
    rw.switch()
    second = rw.rewrite(vp8_packet(9000, 77, 9, ssrc=2, keyframe=True), b, b"", now=1.0)
    assert first is not None and second is not None
    assert fields(second)[1] - fields(first)[1] == SWITCH_GAP_TICKS
    assert second[0] & 0x10 == 0  # no extensions asked for: none written


def test_packets_from_before_a_switch_are_not_forwarded() -> None:
    rw = SlotRewriter(SLOT_SSRC, SLOT_PT)
    a = object()
    assert rw.rewrite(vp8_packet(100, 0, 1, keyframe=True), a, EXT, now=0) is not None
    assert rw.rewrite(vp8_packet(101, 0, 1, start=False), a, EXT, now=0) is not None
    # A retransmission of a packet older than this segment's keyframe arrives late.
    assert rw.rewrite(vp8_packet(99, 0, 0, start=False), a, EXT, now=0) is None


def test_a_late_packet_keeps_its_place_and_does_not_move_the_stream_back() -> None:
    rw = SlotRewriter(SLOT_SSRC, SLOT_PT)
    a = object()
    base = rw.rewrite(vp8_packet(10, 0, 1, keyframe=True), a, EXT, now=0)
    rw.rewrite(vp8_packet(12, 3000, 2), a, EXT, now=0)
    late = rw.rewrite(vp8_packet(11, 0, 1, start=False), a, EXT, now=0)
    assert base is not None and late is not None
    assert fields(late)[0] == fields(base)[0] + 1
    assert rw.highest_out == fields(base)[0] + 2


def test_tl0picidx_continues_across_a_switch() -> None:
    rw = SlotRewriter(SLOT_SSRC, SLOT_PT)
    a, b = object(), object()
    first = rw.rewrite(vp8_packet(1, 0, 1, keyframe=True, tl0=200), a, b"", now=0)
    rw.switch()
    second = rw.rewrite(vp8_packet(50, 0, 60, ssrc=2, keyframe=True, tl0=7), b, b"", now=0)
    assert first is not None and second is not None
    # TL0PICIDX is the byte after the 15-bit picture id (RTP 12 + X, flags, pid 2).
    assert (first[16], second[16]) == (200, 201)


def test_a_nack_is_answered_from_the_source_cache_across_a_switch() -> None:
    rw = SlotRewriter(SLOT_SSRC, SLOT_PT)
    a, b = PacketCache(), PacketCache()
    sent: dict[int, bytes] = {}
    for seq in range(300, 305):
        packet = vp8_packet(seq, seq * 10, seq, keyframe=seq == 300)
        a.put(seq, packet)
        out = rw.rewrite(packet, a, EXT, now=0)
        assert out is not None
        sent[fields(out)[0]] = out
    rw.switch()
    for seq in range(9, 12):
        packet = vp8_packet(seq, seq * 10, seq, ssrc=2, keyframe=seq == 9)
        b.put(seq, packet)
        out = rw.rewrite(packet, b, EXT, now=0)
        assert out is not None
        sent[fields(out)[0]] = out
    # The subscriber lost one packet of each source: each maps back to its own cache.
    for lost in sorted(sent)[2], sorted(sent)[6]:
        found = rw.lookup(lost)
        assert found is not None
        segment, source_seq = found
        cached = segment.source.get(source_seq)  # type: ignore[attr-defined]
        assert cached is not None
        assert rw.rewrite_again(cached, segment, EXT) == sent[lost]
    # Never sent: nothing to resend.
    assert rw.lookup((max(sent) + 5) & 0xFFFF) is None


def test_the_cache_keeps_the_newest_packet_per_position_only() -> None:
    cache = PacketCache(size=4)
    for seq in range(6):
        cache.put(seq, bytes([seq]))
    assert cache.get(5) == b"\x05"
    assert cache.get(1) is None  # overwritten by 5
    assert cache.get(70_000) is None


def test_a_retransmission_is_unwrapped_to_the_packet_it_repairs() -> None:
    original = vp8_packet(4242, 999, 17, ssrc=0xAAAA, keyframe=True)
    view = parse_rtp(original)
    assert view is not None
    header, payload = original[: view.payload_start], original[view.payload_start :]
    rtx = bytearray(header)
    rtx[2:4], rtx[8:12] = (77).to_bytes(2, "big"), (0xBBBB).to_bytes(4, "big")
    rtx_packet = bytes(rtx) + (4242).to_bytes(2, "big") + payload
    assert unwrap_rtx(rtx_packet, 0xAAAA) == original


def test_malformed_packets_are_dropped_not_raised() -> None:
    rw = SlotRewriter(SLOT_SSRC, SLOT_PT)
    for junk in (
        b"",
        b"\x80" * 5,
        b"\x00" * 20,
        vp8_packet(1, 1, 1)[:13],
        struct.pack("!BBHII", 0x90, 96, 1, 1, 1) + b"\xbe\xde\x00\x09",
    ):
        assert rw.rewrite(junk, object(), EXT, now=0) is None


def test_the_extension_template_writes_what_a_fresh_block_would() -> None:
    wall = 1_765_000_000.123456
    value = (int((wall + 2_208_988_800) * (1 << 18)) & 0xFFFFFF).to_bytes(3, "big")
    for mid, abs_id in (((1, b"0"), 3), ((4, b"12"), 2), (None, 3), ((1, b"7"), 0)):
        elements = ([mid] if mid else []) + ([(abs_id, value)] if abs_id else [])
        assert ExtensionTemplate(mid, abs_id).at(wall) == extension_block(elements), (mid, abs_id)
