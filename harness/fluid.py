"""A fluid model of the lab's links, for testing adaptation decisions in milliseconds.

Where the emulator shapes real packets, this model moves bit rates: a bottleneck of the
profile's capacity with the same 300 ms queue and tail drop, random loss, and one receiver
report a second (loss fraction, RTT). `simulate` drives a SessionAdaptation over it, sending
each subscriber exactly what its plan uses. It checks the decisions, not the wire.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from appliance.media.adaptation import Publisher, SessionAdaptation, Update, UplinkBudget

#: Simulation step, seconds.
DT = 0.1


class FluidLink:
    """One downlink: capacity(t) in bps, a 300 ms queue, one-way delay, random loss."""

    def __init__(self, capacity: Callable[[float], float], delay_s: float = 0.05,
                 loss: float = 0.0, seed: int = 1, queue_s: float = 0.3) -> None:
        self.capacity = capacity
        self.delay_s = delay_s
        self.loss = loss
        self.queue_s = queue_s
        self._rng = random.Random(seed)
        self.backlog = 0.0  # bits waiting
        self._sent = 0.0
        self._lost = 0.0
        self.full_s = 0.0  # time with the queue overflowing (voices would be lost too)

    def carry(self, t: float, bps: float) -> None:
        """Offer bps for one step."""
        cap = self.capacity(t)
        limit = cap * self.queue_s
        self.backlog += (bps - cap) * DT
        self._sent += bps * DT
        if self.backlog > limit:
            self._lost += self.backlog - limit
            self.backlog = limit
            self.full_s += DT
        self.backlog = max(0.0, self.backlog)

    def report(self, t: float) -> tuple[float, float]:
        """A receiver report: loss fraction since the last one, and the RTT now."""
        fraction = self._lost / self._sent if self._sent else 0.0
        fraction = min(1.0, fraction + self.loss * self._rng.uniform(0.5, 1.5))
        self._sent = self._lost = 0.0
        return fraction, 2 * self.delay_s + self.backlog / self.capacity(t)


def simulate(links: dict[str, FluidLink | None], roster: list[Publisher], seconds: float,
             budget: UplinkBudget | None = None, cut: tuple[float, float] | None = None,
             ) -> Iterator[tuple[float, dict[str, Update]]]:
    """Drive a session; yields (t, updates) every step.

    links[sub] None is a LAN subscriber (no loss, 2 ms RTT, not remote); subscribers given
    the same FluidLink share it (the clinic's uplink). During cut (start, end) remote links
    carry nothing and report nothing.
    """
    session = SessionAdaptation(budget)
    for sub, link in links.items():
        session.add_subscriber(sub, 0.0, remote=link is not None)
    used = dict.fromkeys(links, 0)
    shared = {id(link): link for link in links.values() if link is not None}
    step = 0
    while step * DT < seconds:
        t = round(step * DT, 6)
        cut_now = cut is not None and cut[0] <= t < cut[1]
        report_now = step % round(1 / DT) == 0
        reports = {}
        for key, link in shared.items():
            if not cut_now:
                link.carry(t, sum(used[s] for s, other in links.items() if other is link))
                if report_now:
                    reports[key] = link.report(t)
        for sub, link in links.items():
            session.set_sending(sub, used[sub])
            if report_now and (link is None or not cut_now):
                report = (0.0, 0.002) if link is None else reports[id(link)]
                session.estimator(sub).on_receiver_report(t, *report)
                session.estimator(sub).on_remb(t, 1.5 * used[sub] + 10_000)
        updates = session.tick(t, roster)
        for sub, update in updates.items():
            used[sub] = update.plan.used_bps
        yield t, updates
        step += 1
