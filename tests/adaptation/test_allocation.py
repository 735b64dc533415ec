"""allocate(): audio first, then video by priority, within each allowance and the uplink."""

from __future__ import annotations

from appliance.media.adaptation import (
    AudioMode,
    Costs,
    Demand,
    Limit,
    Plan,
    Publisher,
    Tier,
    allocate,
)

COSTS = Costs()


def room(n: int = 5) -> list[Publisher]:
    """n publishers: p1 facilitates, p3 is the active speaker, p2 spoke before."""
    ranks = {"p3": 0, "p2": 1}
    return [Publisher(f"p{i}", facilitator=i == 1, speaking_rank=ranks.get(f"p{i}"))
            for i in range(1, n + 1)]


def plan_for(allowance: float, others: list[Publisher] | None = None, **kw) -> Plan:
    return allocate([Demand("me", allowance, others or room(), **kw)])["me"]


def test_a_lan_subscriber_gets_everything_forwarded():
    plan = plan_for(10_000_000)
    assert plan.audio is AudioMode.FORWARDED
    assert set(plan.tiers.values()) == {Tier.FORWARD}
    assert plan.last_n == 5


def test_edge_keeps_audio_and_low_video_for_the_facilitator_first():
    # 5 voices forwarded (200 kbps) do not fit an EDGE link: one mixed stream does, with room
    # for one low-tier video: the facilitator's.
    plan = plan_for(180_000)
    assert plan.audio is AudioMode.MIXED
    assert plan.tiers["p1"] is Tier.LOW
    assert all(plan.tiers[p] < Tier.LOW for p in ("p2", "p3", "p4", "p5"))
    assert plan.used_bps <= 180_000 * COSTS.fill
    assert plan.limits["p3"] is Limit.LINK


def test_gprs_gets_mixed_audio_and_no_video():
    plan = plan_for(75_000)
    assert plan.audio is AudioMode.MIXED
    assert set(plan.tiers.values()) == {Tier.AUDIO_ONLY}


def test_video_order_is_facilitator_then_speaker_then_recent_then_rest():
    plan = plan_for(COSTS.audio_bps * 5 / COSTS.fill + 3 * COSTS.low_bps / COSTS.fill + 1000)
    assert plan.audio is AudioMode.FORWARDED
    assert [p for p, t in plan.tiers.items() if t is Tier.LOW] == ["p1", "p2", "p3"]
    # Then breadth before depth: the rest see presence before anyone gets forward.
    low_everyone = (COSTS.audio_bps * 5 + 5 * COSTS.low_bps) / COSTS.fill
    plan = plan_for(low_everyone + (COSTS.forward_bps - COSTS.low_bps) / COSTS.fill + 1000)
    assert plan.tiers["p1"] is Tier.FORWARD
    assert [plan.tiers[p] for p in ("p3", "p2", "p4", "p5")] == [Tier.LOW] * 4


def test_last_n_caps_how_many_videos():
    plan = allocate([Demand("me", 10_000_000, room())], costs=Costs(max_video=2))["me"]
    assert plan.last_n == 2
    assert plan.tiers["p4"] is Tier.PRESENCE
    assert plan.limits["p4"] is Limit.LAST_N


def test_measured_rates_override_nominal_costs():
    quiet = [Publisher(f"p{i}", audio_bps=4_000) for i in range(1, 6)]  # DTX: nobody talks
    plan = plan_for(180_000, quiet)
    assert plan.audio is AudioMode.FORWARDED


def test_upgrades_need_a_margin_over_the_current_plan():
    need = (5 * COSTS.audio_bps + COSTS.low_bps) / COSTS.fill
    current = Plan(AudioMode.FORWARDED, {p.id: Tier.AUDIO_ONLY for p in room()})
    # Just enough for one low tier: a fresh plan takes it, a running one waits for margin.
    assert plan_for(need + 100).tiers["p1"] is Tier.LOW
    assert plan_for(need + 100, current=current).tiers["p1"] < Tier.LOW
    assert plan_for(need + 0.3 * COSTS.low_bps / COSTS.fill, current=current).tiers["p1"] \
        is Tier.LOW
    # Keeping what one has needs no margin.
    held = Plan(AudioMode.FORWARDED, {**current.tiers, "p1": Tier.LOW})
    assert plan_for(need + 100, current=held).tiers["p1"] is Tier.LOW


def test_clinic_uplink_serves_audio_for_all_then_facilitator_video():
    others = room(3)
    subs = [Demand(f"r{i}", 2_000_000, others) for i in range(4)]
    audio_all = 4 * 3 * COSTS.audio_bps
    # Room for everyone's voices and the facilitator's low video for two of four.
    capacity = (audio_all + 2.5 * COSTS.low_bps) / COSTS.fill
    plans = allocate(subs, capacity)
    assert all(p.audio is AudioMode.FORWARDED for p in plans.values())
    with_video = [s for s, p in plans.items() if p.tiers["p1"] is Tier.LOW]
    assert len(with_video) == 2
    assert all(p.tiers["p3"] is Tier.AUDIO_ONLY for p in plans.values())  # speaker after
    assert sum(p.used_bps for p in plans.values()) <= capacity * COSTS.fill
    assert any(p.limits.get("p1") is Limit.CLINIC for p in plans.values())


def test_clinic_uplink_too_small_for_voices_mixes_them():
    others = room(5)
    subs = [Demand(f"r{i}", 2_000_000, others) for i in range(3)]
    capacity = (2 * 5 * COSTS.audio_bps + COSTS.mixed_audio_bps) / COSTS.fill
    plans = allocate(subs, capacity_bps=capacity + 100)
    modes = sorted(p.audio.value for p in plans.values())
    assert modes == ["forwarded", "forwarded", "mixed"]


def test_lan_subscribers_do_not_draw_on_the_clinic_uplink():
    others = room(3)
    plans = allocate(
        [Demand("lan", 10_000_000, others, remote=False), Demand("far", 10_000_000, others)],
        capacity_bps=3 * COSTS.audio_bps / COSTS.fill,
    )
    assert set(plans["lan"].tiers.values()) == {Tier.FORWARD}
    assert set(plans["far"].tiers.values()) == {Tier.AUDIO_ONLY}
    assert plans["far"].limits["p1"] is Limit.CLINIC


def test_publishers_without_video_and_empty_rooms():
    plan = plan_for(1_000_000, [Publisher("a", has_video=False)])
    assert plan.tiers == {"a": Tier.AUDIO_ONLY} and plan.audio is AudioMode.FORWARDED
    alone = allocate([Demand("me", 1_000_000, [])])["me"]
    assert alone.used_bps == 0 and alone.tiers == {}


def test_without_room_for_moving_video_only_the_first_ranked_publisher_gets_a_still():
    # 160 kbps: mixed voices and stills fit, a low tier does not (with the margin a new
    # rung pays). More stills would cost voices keyframes; one of the facilitator will do.
    plan = plan_for(160_000, current=Plan(AudioMode.MIXED, {f"p{i}": Tier.PRESENCE
                                                           for i in range(1, 6)}))
    assert plan.last_n == 0
    assert plan.tiers["p1"] is Tier.PRESENCE
    assert all(plan.tiers[p] is Tier.AUDIO_ONLY for p in ("p2", "p3", "p4", "p5"))
    assert plan.limits["p3"] is Limit.LINK


def test_mixed_voices_are_unmixed_only_beside_the_video_already_held():
    # EDGE, three in the call: a probe proved 180 kbps for mixed voices and the facilitator's
    # low tier. Forwarding the two voices (96 kbps) would fit 180 alone, but not beside it.
    two = room(3)[:2]
    held = Plan(AudioMode.MIXED, {"p1": Tier.LOW, "p2": Tier.AUDIO_ONLY})
    plan = plan_for(180_000, two, current=held)
    assert plan.audio is AudioMode.MIXED and plan.tiers["p1"] is Tier.LOW
    # With a still only, forwarded voices come first, as before.
    still = Plan(AudioMode.MIXED, {"p1": Tier.PRESENCE, "p2": Tier.AUDIO_ONLY})
    assert plan_for(180_000, two, current=still).audio is AudioMode.FORWARDED
    # With room for both, they are unmixed and the picture stays.
    plan = plan_for(300_000, two, current=held)
    assert plan.audio is AudioMode.FORWARDED and plan.tiers["p1"] is Tier.LOW
