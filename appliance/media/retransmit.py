"""How many lost packets a remote subscriber may have resent.

aiortc's sender answers every NACK by resending each packet named. On a weak link the loss
that brings NACKs is the link's own queue overflowing, so resending all of it refills that
queue: on GPRS (80 kbps) one NACK for 60 thumbnail packets after a failed probe was ~24 KB,
2.4 s of the link, and every voice packet queued behind it. Retransmissions therefore get a
share of the subscriber's allowance (a token bucket), and none while its estimate backs off
or the link is silent.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Share of the allowance that retransmissions may use, and how much may be saved up.
SHARE = 0.1
DEPTH_S = 0.5


@dataclass
class RetransmitBudget:
    """One subscriber's retransmission allowance, in bytes."""

    tokens: float = 0.0
    last: float | None = None

    def allow(self, now: float, packets: int, packet_bytes: int, allowance_bps: float,
              congested: bool) -> int:
        """How many of `packets` lost packets (about packet_bytes each) to resend now."""
        rate = SHARE * allowance_bps / 8
        elapsed = 0.0 if self.last is None else max(0.0, now - self.last)
        self.last = now
        self.tokens = min(rate * DEPTH_S, self.tokens + elapsed * rate)
        if congested or packet_bytes <= 0:
            return 0
        granted = min(packets, int(self.tokens // packet_bytes))
        self.tokens -= granted * packet_bytes
        return granted


class FreshLosses:
    """Counts the packets a subscriber's NACKs name for the first time.

    Receivers repeat a NACK every round trip until the packet comes, so the raw count says
    more about the RTT than about the link; a packet named again within `horizon_s` counts
    once."""

    def __init__(self, horizon_s: float = 2.0) -> None:
        self.horizon_s = horizon_s
        self._seen: dict[tuple[int, int], float] = {}

    def add(self, now: float, ssrc: int, sequences: list[int]) -> int:
        """Record one NACK; returns how many of its packets are newly lost."""
        # Entries go in as time goes on, so the stale ones are the first in the dict.
        while self._seen:
            oldest = next(iter(self._seen))
            if now - self._seen[oldest] <= self.horizon_s:
                break
            del self._seen[oldest]
        fresh = 0
        for seq in sequences:
            if (ssrc, seq) not in self._seen:
                self._seen[(ssrc, seq)] = now
                fresh += 1
        return fresh
