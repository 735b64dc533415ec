"""Round-trip time per RTCP report block, from the sender reports a sender really sent.

RFC 3550 6.4.1: RTT = arrival - (when the SR named by LSR left) - DLSR. aiortc keeps only the
time of its last SR and a slowly smoothed RTT, and its SR carries the NTP time of the last RTP
packet rather than of the report: a sender that sent nothing between two SRs repeats the same
LSR, so a block about the older SR, read against the newer one's time, comes out far too low
(seen: 0.07 s and 0.22 s on a 0.66 s path). Those samples then become the path's minimum and
make every later one look like a queue. Here every SR is remembered by its LSR; a block whose
LSR named more than one SR says nothing.
"""

from __future__ import annotations

from collections import OrderedDict

from aiortc import RTCRtpSender
from aiortc.rtp import RtcpSrPacket

from appliance.media.aiortc_glue.rtp import watch_sender_reports

#: SRs remembered per sender (about one a second): older ones are never echoed in practice.
HISTORY = 16


class SenderReportClock:
    """When each of one sender's SRs left, keyed by the LSR a receiver will echo."""

    def __init__(self) -> None:
        self._sent: OrderedDict[int, tuple[float, int]] = OrderedDict()

    def sent(self, lsr: int, at: float) -> None:
        """An SR whose middle NTP bits are lsr left at `at` (time.time())."""
        _, count = self._sent.pop(lsr, (at, 0))
        self._sent[lsr] = (at, count + 1)
        while len(self._sent) > HISTORY:
            self._sent.popitem(last=False)

    def rtt(self, lsr: int, dlsr: int, now: float) -> float | None:
        """The block's RTT in seconds, or None if it names no SR (or an ambiguous one)."""
        sent = self.sent_at(lsr)
        if sent is None or not dlsr:
            return None
        rtt = now - sent - dlsr / 65536
        return rtt if rtt > 0 else None

    def sent_at(self, lsr: int) -> float | None:
        """When the SR a block names left (time.time()), or None if unknown or ambiguous.

        What a report says about the path is what that SR met on its way: a report that
        arrives late may still echo an SR sent before a change."""
        entry = self._sent.get(lsr)
        if not lsr or entry is None or entry[1] != 1:
            return None
        return entry[0]

    def watch(self, sender: RTCRtpSender) -> None:
        """Record every SR the sender sends from now on."""

        def sent(report: RtcpSrPacket, now: float) -> None:
            self.sent((report.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF, now)

        watch_sender_reports(sender, sent)
