"""The clinic's uplink, shared by every remote subscriber: configured, or learned.

Remote subscribers' downlinks all leave the clinic through one backhaul. When most of them (and
at least three) back off at the same moment, their own links are not the likely cause: the
shared uplink is full.
The budget then takes 90% of what the box was sending them all as the capacity, and lets it
grow back 5% every 10 s without such shared congestion, forgetting it once it is well above
what the session uses. A configured capacity is used as it is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BudgetConfig:
    """When congestion counts as shared, and how the learnt capacity recovers."""

    shared_fraction: float = 0.5  # at least this share of remote subscribers backing off...
    #: ...and at least this many. Two is not evidence: two patients on similar links, sent
    #: the same streams, back off together by coincidence (seen in the lab on EDGE), and a
    #: capacity learnt from that starved both of video for good.
    shared_minimum: int = 3
    backoff: float = 0.9
    growth: float = 0.05
    growth_every_s: float = 10.0
    forget_above: float = 2.0  # forget a learnt capacity this many times above the use


class UplinkBudget:
    """The capacity allocate() shares among remote subscribers (None: no known limit)."""

    def __init__(self, capacity_bps: float | None = None,
                 config: BudgetConfig | None = None) -> None:
        self.configured_bps = capacity_bps
        self.config = config or BudgetConfig()
        self._learnt_bps: float | None = None
        self._last_change = 0.0

    @property
    def capacity_bps(self) -> float | None:
        """The uplink capacity to plan with."""
        return self.configured_bps if self.configured_bps is not None else self._learnt_bps

    @property
    def learnt(self) -> bool:
        """Whether the capacity was learnt from shared congestion rather than configured."""
        return self.configured_bps is None and self._learnt_bps is not None

    def observe(self, now: float, remote_sending_bps: float, remote_subscribers: int,
                backing_off: int) -> None:
        """One look at the session: what goes to remote subscribers, and how many back off."""
        if self.configured_bps is not None or remote_subscribers == 0:
            return
        cfg = self.config
        shared = (backing_off >= cfg.shared_minimum
                  and backing_off >= cfg.shared_fraction * remote_subscribers)
        if shared and remote_sending_bps > 0:
            if self._learnt_bps is None or now - self._last_change >= 1.0:
                learnt = cfg.backoff * remote_sending_bps
                if self._learnt_bps is None or learnt < self._learnt_bps:
                    self._learnt_bps = learnt
                    self._last_change = now
            return
        if self._learnt_bps is not None and now - self._last_change >= cfg.growth_every_s:
            self._learnt_bps *= 1 + cfg.growth
            self._last_change = now
            if self._learnt_bps > cfg.forget_above * max(remote_sending_bps, 1.0):
                self._learnt_bps = None
