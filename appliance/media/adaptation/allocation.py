"""Who gets what: per subscriber, per publisher, a tier, within each subscriber's allowance and
(for remote subscribers) the clinic's shared uplink.

One greedy pass over increments in priority order, across all subscribers at once:
1. audio for everyone: forwarded voices if they fit the subscriber's allowance, otherwise one
   mixed stream (a mixed subscriber is unmixed only when they fit beside the video it already
   has); if the clinic's uplink cannot carry everyone's forwarded voices, the
   subscribers with the costliest voice sets switch to mixed until it can;
2. the low tier of each subscriber's publishers in priority order (facilitator, active
   speaker, most recent speakers, the rest), up to Costs.max_video of them (last-N);
3. a presence thumbnail for publishers left without video (only the first-ranked one's while
   nobody's low tier fits);
(no video at all, not even presence, below Costs.video_floor_bps: voice takes everything);
4. upgrades from low to forward, in the same order.
Within one step subscribers are served least-served first, so one subscriber cannot take the
whole uplink. A rung above the subscriber's current one must fit with a margin (up_margin),
which gives hysteresis: a plan does not flap between two rungs on a noisy estimate.
LAN subscribers have an allowance but do not draw on the clinic's uplink.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from appliance.media.adaptation.ladder import (
    AudioMode,
    Costs,
    Publisher,
    Tier,
    audio_cost,
    priority,
    video_cost,
)


class Limit(enum.Enum):
    """Why a publisher's video is not at a higher tier for a subscriber."""

    LINK = "link"  # the subscriber's own downlink
    CLINIC = "clinic"  # the clinic's shared uplink
    LAST_N = "last_n"  # enough other videos shown already


@dataclass(frozen=True)
class Demand:
    """One subscriber: its allowance (from its estimator), the publishers it may receive, its
    current plan (for hysteresis), whether it is remote (draws on the clinic's uplink), and
    whether mixed voices must stay mixed (during a probe)."""

    id: str
    allowance_bps: float
    others: list[Publisher]
    current: Plan | None = None
    remote: bool = True
    keep_mixed: bool = False  # a probe is running: voices stay mixed whatever it allows


@dataclass
class Plan:
    """What one subscriber receives."""

    audio: AudioMode = AudioMode.FORWARDED
    tiers: dict[str, Tier] = field(default_factory=dict)
    limits: dict[str, Limit] = field(default_factory=dict)
    used_bps: int = 0
    # Something was refused for want of this subscriber's allowance (voices mixed, a rung
    # that did not fit). When nothing was, more allowance buys the same plan: allocate()
    # makes the same grants in the same order with more left at each.
    short_of_allowance: bool = field(default=False, compare=False, repr=False)

    @property
    def last_n(self) -> int:
        """How many publishers' video this subscriber gets above presence."""
        return sum(1 for tier in self.tiers.values() if tier >= Tier.LOW)


@dataclass
class _Subscriber:
    demand: Demand
    left: float
    plan: Plan


def allocate(demands: list[Demand], capacity_bps: float | None = None,
             costs: Costs | None = None, up_margin: float = 1.25) -> dict[str, Plan]:
    """Plans for every subscriber; capacity_bps is the clinic uplink (None: unlimited)."""
    costs = costs or Costs()
    subs = [_Subscriber(d, d.allowance_bps * costs.fill, Plan()) for d in demands]
    shared = float("inf") if capacity_bps is None else capacity_bps * costs.fill

    # 1. Audio first.
    for sub in subs:
        forwarded = audio_cost(sub.demand.others, costs)
        current = sub.demand.current
        was_mixed = current is not None and current.audio is AudioMode.MIXED
        need: float = forwarded
        if current is not None and was_mixed:
            # Unmixing must not cost the video already held: on EDGE two forwarded voices
            # (96 kbps) beside a just-proven low tier did not fit, and unmixing took the
            # picture away for a still.
            need = forwarded * up_margin + _video_bps(current, sub.demand.others, costs)
        keep = was_mixed and sub.demand.keep_mixed
        sub.plan.audio = AudioMode.FORWARDED if need <= sub.left and not keep else AudioMode.MIXED
        sub.plan.short_of_allowance = need > sub.left and not keep
    remote = [s for s in subs if s.demand.remote]
    while sum(_audio_bps(s, costs) for s in remote) > shared:
        forwarding = [s for s in remote if s.plan.audio is AudioMode.FORWARDED]
        if not forwarding:
            break  # even mixed voices do not fit: nothing cheaper to offer
        costliest = max(forwarding, key=lambda s: audio_cost(s.demand.others, costs))
        costliest.plan.audio = AudioMode.MIXED
    for sub in subs:
        spent = _audio_bps(sub, costs) if sub.demand.others else 0
        sub.left -= spent
        sub.plan.used_bps += spent
        if sub.demand.remote:
            shared -= spent
        for pub in sub.demand.others:
            sub.plan.tiers[pub.id] = Tier.AUDIO_ONLY

    # 2-4. Video, rung by rung, in priority order.
    ranked = {s.demand.id: priority([p for p in s.demand.others if p.has_video]) for s in subs}
    depth = max((len(r) for r in ranked.values()), default=0)
    for tier in (Tier.LOW, Tier.PRESENCE, Tier.FORWARD):
        for rank in range(depth):
            for sub in sorted(subs, key=lambda s: (s.plan.used_bps, s.demand.id)):
                if rank >= len(ranked[sub.demand.id]):
                    continue
                if tier is Tier.PRESENCE and rank > 0 and sub.plan.last_n == 0:
                    # No moving picture fits: one still, the first-ranked publisher's. More
                    # stills would cost voices their keyframes and leave the next probe
                    # going for another still rather than for moving video.
                    sub.plan.limits.setdefault(ranked[sub.demand.id][rank].id, Limit.LINK)
                    continue
                shared = _offer(sub, ranked[sub.demand.id][rank], tier, shared, costs, up_margin)
    return {sub.demand.id: sub.plan for sub in subs}


def _audio_bps(sub: _Subscriber, costs: Costs) -> int:
    if sub.plan.audio is AudioMode.MIXED:
        return costs.mixed_audio_bps
    return audio_cost(sub.demand.others, costs)


def _offer(sub: _Subscriber, pub: Publisher, tier: Tier, shared: float, costs: Costs,
           up_margin: float) -> float:
    """Grant pub at tier to sub if it fits; returns what is left of the shared uplink."""
    plan = sub.plan
    have = plan.tiers[pub.id]
    if sub.demand.allowance_bps < costs.video_floor_bps:
        plan.limits[pub.id] = Limit.LINK
        plan.short_of_allowance = True
        return shared
    if tier is Tier.PRESENCE and have is not Tier.AUDIO_ONLY:
        return shared  # already has better
    if tier is Tier.FORWARD and have is not Tier.LOW:
        return shared  # forward is an upgrade of low only
    if tier is Tier.LOW and plan.last_n >= costs.max_video:
        plan.limits[pub.id] = Limit.LAST_N
        return shared
    cost = max(0, video_cost(pub, tier, costs) - video_cost(pub, have, costs))
    current = sub.demand.current.tiers.get(pub.id) if sub.demand.current else None
    # Only a step above a tier the subscriber already has pays the margin; a new plan does not.
    check = cost * (up_margin if current is not None and tier > current else 1.0)
    remote = sub.demand.remote
    if check > sub.left:
        plan.limits.setdefault(pub.id, Limit.LINK)
        plan.short_of_allowance = True
        return shared
    if remote and check > shared:
        plan.limits.setdefault(pub.id, Limit.CLINIC)
        return shared
    plan.tiers[pub.id] = tier
    if tier is not Tier.PRESENCE:  # presence keeps the reason low did not fit
        plan.limits.pop(pub.id, None)
    plan.used_bps += cost
    sub.left -= cost
    return shared - cost if remote else shared


def plan_cost(plan: Plan, others: list[Publisher], costs: Costs) -> int:
    """What a plan sends one subscriber, by the same costs allocate() uses."""
    if not others:
        return 0
    audio = (costs.mixed_audio_bps if plan.audio is AudioMode.MIXED
             else audio_cost(others, costs))
    return audio + _video_bps(plan, others, costs)


def _video_bps(plan: Plan, others: list[Publisher], costs: Costs) -> int:
    """What a plan's video costs, every publisher at its tier."""
    return sum(video_cost(p, plan.tiers.get(p.id, Tier.AUDIO_ONLY), costs) for p in others)
