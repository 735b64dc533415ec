"""All of one session's adaptation in one object the SFU drives: an estimator and a policy per
subscriber, the shared uplink budget, and allocate() between them.

The SFU feeds RTCP into estimator(sub) as it arrives, reports what it sends each subscriber
with set_sending(), and calls tick() a few times a second with the room's roster. tick()
returns, per subscriber, the plan to apply (audio mode and a tier per publisher) and the
notices to send to that subscriber's client.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial

from appliance.media.adaptation.allocation import Demand, Plan, allocate, plan_cost
from appliance.media.adaptation.budget import UplinkBudget
from appliance.media.adaptation.estimator import (
    DownlinkEstimator,
    Estimate,
    EstimatorConfig,
    LinkState,
)
from appliance.media.adaptation.ladder import Costs, Publisher
from appliance.media.adaptation.policy import Notice, SubscriberPolicy

#: Allowance multiples tried, in order, when 1.5x the estimate buys nothing better.
_PROBE_GAINS = (1.75, 2.0, 2.5)
#: Tried first on a thin link with little voice margin (EstimatorConfig.fine_probe_below_bps).
_FINE_PROBE_GAINS = (1.1, 1.2, 1.3, 1.4)
# ...and on a clean, short path, further (the next rung may be forwarded video, ~4-6x away).
_CLEAN_PROBE_GAINS = (3.0, 4.0, 6.0, 8.0)
#: Least a LAN subscriber's estimate falls to: a clinic network that cannot carry a megabit
#: to one tablet is broken, and loss on it below that is likelier the box overloaded, which
#: taking video away from the room would not mend.
LAN_MIN_BPS = 1_000_000


@dataclass
class Update:
    """What tick() decided for one subscriber."""

    plan: Plan
    estimate: Estimate
    notices: list[Notice] = field(default_factory=list)


@dataclass(frozen=True)
class _LinkView:
    """What the next-rung search reads of an estimator, taken before its tick."""

    room_for_video: bool
    tight: bool
    estimate_bps: float
    probe_gain_cap: float

    @classmethod
    def of(cls, estimator: DownlinkEstimator) -> _LinkView:
        return cls(estimator.room_for_video, estimator.tight, estimator.estimate_bps,
                   estimator.probe_gain_cap)


@dataclass
class _Subscriber:
    estimator: DownlinkEstimator
    policy: SubscriberPolicy
    remote: bool
    sending_bps: float = 0.0


class SessionAdaptation:
    """Adaptation state of one session (one room)."""

    def __init__(self, budget: UplinkBudget | None = None, costs: Costs | None = None,
                 estimator_config: EstimatorConfig | None = None,
                 upgrade_hold_s: float = 3.0) -> None:
        self.budget = budget or UplinkBudget()
        self.costs = costs or Costs()
        self._estimator_config = estimator_config
        self._upgrade_hold_s = upgrade_hold_s
        self._subs: dict[str, _Subscriber] = {}

    def add_subscriber(self, sub: str, now: float, remote: bool = True) -> None:
        """A participant starts receiving. LAN participants are remote=False."""
        config = self._estimator_config or EstimatorConfig()
        if not remote:
            # The LAN is fast until its reports say otherwise: start at full quality. Only
            # loss cuts it (RTT there measures CPU load), and never below LAN_MIN_BPS.
            config = replace(config, initial_bps=config.max_bps, queue_from_rtt=False,
                             min_bps=max(config.min_bps, LAN_MIN_BPS))
        self._subs[sub] = _Subscriber(
            DownlinkEstimator(now, config),
            SubscriberPolicy(sub, self._upgrade_hold_s),
            remote,
        )

    def remove_subscriber(self, sub: str) -> None:
        """A participant left (for good, not reconnecting)."""
        self._subs.pop(sub, None)

    def estimator(self, sub: str) -> DownlinkEstimator:
        """Where the SFU feeds this subscriber's REMB and receiver reports."""
        return self._subs[sub].estimator

    def set_sending(self, sub: str, bps: float) -> None:
        """What the SFU sends this subscriber now, all streams together."""
        entry = self._subs[sub]
        entry.sending_bps = bps
        entry.estimator.set_sending(bps)

    def _next_rung(self, sub: str, entry: _Subscriber, others: list[Publisher],
                   link: _LinkView) -> tuple[float, float] | None:
        """What a probe should try, as (allowance, what the plan would send under it): up to
        probe_step_gain x the estimate if that buys a better plan (on a tight link, the least
        multiple that does), else the nearest better plan up to probe_max_gain x; None if
        nothing better is within reach. Bounded steps keep a failed probe's overshoot small.
        Unmixing voices is never a probe's goal: it waits for a confirmed estimate, so every
        better plan a probe seeks has more video."""
        if not link.room_for_video:
            return None
        if link.tight and entry.policy.plan.last_n >= 1:
            # One moving picture is all a tight link is asked to carry: past it (a second
            # picture, or more stills beside it) EDGE's 200 kbps is full, and each probe
            # that found out cost voices 2-4 s of queue, then the picture itself.
            return None
        base = link.estimate_bps
        config = entry.estimator.config
        # Each allowance's plan is computed once (the clean path asks for its best one twice).
        plans: dict[float, Plan] = {}

        def plan_at(allowance: float) -> Plan:
            if (plan := plans.get(allowance)) is None:
                demand = Demand(sub, allowance, others, entry.policy.plan, keep_mixed=True)
                plan = plans[allowance] = allocate([demand], None, self.costs)[sub]
            return plan

        def used(allowance: float) -> int:
            return plan_at(allowance).used_bps

        if not plan_at(base).short_of_allowance:
            # Nothing was refused for want of allowance (a subscriber already given all that
            # last-N lets it have): more allowance buys the same plan, so no gain is tried.
            return None
        now_used = used(base)
        fine = _FINE_PROBE_GAINS if link.tight else ()
        cap = link.probe_gain_cap
        gains = [g for g in (*fine, config.probe_step_gain, *_PROBE_GAINS, *_CLEAN_PROBE_GAINS)
                 if g <= cap]
        if cap > config.probe_max_gain:
            # A clean, short path goes for the best plan within reach at once (the least
            # gain that buys it): each rung on the way cost a report interval or two.
            best = used(base * gains[-1])
            if best <= now_used:
                return None
            return next((base * g, use) for g in gains if (use := used(base * g)) >= best)
        for gain in gains:
            if (use := used(base * gain)) > now_used:
                return base * gain, use
        return None

    def tick(self, now: float, roster: list[Publisher],
             groups: dict[str, int] | None = None) -> dict[str, Update]:
        """Decide every subscriber's plan now; roster is everyone publishing in the room.

        groups: breakout room of each participant id (absent: 0); a subscriber is planned only
        for the publishers in its own group."""
        estimates: dict[str, Estimate] = {}
        demands = []
        group = (groups or {}).get
        others_of = {sub: [p for p in roster if p.id != sub and group(p.id, 0) == group(sub, 0)]
                     for sub in self._subs}
        for sub, entry in self._subs.items():
            others = others_of[sub]
            # The goal is worked out only if the estimator can start a probe on this tick,
            # from the link as it was before the tick (as when it was always worked out).
            link = _LinkView.of(entry.estimator)
            estimate = entry.estimator.tick(
                now, goal=partial(self._next_rung, sub, entry, others, link))
            estimates[sub] = estimate
            demands.append(Demand(sub, estimate.allowance_bps, others, entry.policy.plan,
                                  entry.remote, estimate.state is LinkState.PROBING))
        remote = [e for e in self._subs.values() if e.remote]
        self.budget.observe(
            now,
            sum(e.sending_bps for e in remote),
            len(remote),
            sum(1 for s, e in self._subs.items()
                if e.remote and estimates[s].state is LinkState.BACKING_OFF),
        )
        plans = allocate(demands, self.budget.capacity_bps, self.costs)
        updates = {}
        for sub, entry in self._subs.items():
            state = estimates[sub].state
            silent = state is LinkState.SILENT
            notices = entry.policy.connection_lost() if silent else []
            notices += entry.policy.apply(now, plans[sub], probing=state is LinkState.PROBING,
                                          announce=not silent)
            # What is really sent: an upgrade still on hold is not.
            entry.policy.plan.used_bps = plan_cost(entry.policy.plan, others_of[sub], self.costs)
            updates[sub] = Update(entry.policy.plan, estimates[sub], notices)
        return updates

