"""RTT per report block from the SRs a sender really sent (RFC 3550 6.4.1)."""

from __future__ import annotations

import pytest

from appliance.media.round_trip import HISTORY, SenderReportClock


def test_rtt_is_read_against_the_sr_the_block_names() -> None:
    clock = SenderReportClock()
    clock.sent(lsr=1000, at=100.0)
    clock.sent(lsr=2000, at=101.0)
    # Echoing the older SR after holding it 0.25 s (DLSR in 1/65536 s), arriving at 100.9.
    assert clock.rtt(1000, dlsr=65536 // 4, now=100.9) == pytest.approx(0.65)
    assert clock.rtt(2000, dlsr=65536 // 4, now=101.9) == pytest.approx(0.65)


def test_an_lsr_sent_twice_is_ambiguous() -> None:
    # An idle sender's SRs repeat the NTP time of its last RTP packet, hence the same LSR:
    # against the newer SR's time a block about the older one would read far too low.
    clock = SenderReportClock()
    clock.sent(lsr=1000, at=100.0)
    clock.sent(lsr=1000, at=101.0)
    assert clock.rtt(1000, dlsr=65536 // 4, now=101.5) is None


def test_unknown_missing_or_impossible_blocks_say_nothing() -> None:
    clock = SenderReportClock()
    clock.sent(lsr=1000, at=100.0)
    assert clock.rtt(999, dlsr=100, now=101.0) is None  # no such SR
    assert clock.rtt(0, dlsr=100, now=101.0) is None  # no SR received yet
    assert clock.rtt(1000, dlsr=0, now=101.0) is None  # no delay reported
    assert clock.rtt(1000, dlsr=65536 * 5, now=101.0) is None  # negative


def test_history_is_bounded() -> None:
    clock = SenderReportClock()
    for n in range(HISTORY + 5):
        clock.sent(lsr=n + 1, at=float(n))
    assert clock.rtt(1, dlsr=1, now=100.0) is None
    assert clock.rtt(HISTORY + 5, dlsr=1, now=HISTORY + 5.0) is not None


def test_sent_at_names_when_the_echoed_sr_left() -> None:
    # A report says what its SR met on the way, however late the report itself arrives.
    clock = SenderReportClock()
    clock.sent(lsr=1000, at=100.0)
    clock.sent(lsr=2000, at=101.0)
    assert clock.sent_at(1000) == 100.0 and clock.sent_at(2000) == 101.0
    clock.sent(lsr=2000, at=102.0)
    assert clock.sent_at(2000) is None and clock.sent_at(0) is None and clock.sent_at(5) is None
