"""How many plans a session computes per tick: the next-rung search for each subscriber's probe
is the costly part of the adaptation tick (11% of the box's CPU in a 12-person profile when it
ran on every tick for every subscriber), so it runs only on ticks whose estimator could start a
probe, and stops at once when more allowance cannot change the plan."""

from __future__ import annotations

import pytest

import appliance.media.adaptation.session as session_module
from appliance.media.adaptation import AudioMode, Costs, Publisher, Tier
from appliance.media.adaptation.allocation import Demand, Plan, allocate
from harness.fluid import FluidLink, simulate


def _roster(n: int) -> list[Publisher]:
    return [
        Publisher(
            f"p{i}",
            facilitator=i == 0,
            speaking_rank=i if i < 4 else None,
            audio_bps=40_000,
            video_bps=600_000,
        )
        for i in range(n)
    ]


def _plans_per_tick(monkeypatch: pytest.MonkeyPatch, links: dict[str, FluidLink | None]) -> float:
    calls = 0
    real = session_module.allocate

    def counting(*args: object, **kwargs: object) -> dict[str, Plan]:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(session_module, "allocate", counting)
    ticks = sum(1 for _ in simulate(links, _roster(len(links)), 60))
    return calls / ticks


def test_twelve_lan_subscribers_cost_few_plans_per_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: one allocate() for the room plus ~3 per subscriber on every tick (37 a tick).
    per_tick = _plans_per_tick(monkeypatch, {f"p{i}": None for i in range(12)})
    assert per_tick <= 4.0, per_tick


def test_remote_subscribers_search_only_when_a_probe_can_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    links = {f"p{i}": (FluidLink(lambda t: 3e6) if i % 3 == 0 else None) for i in range(12)}
    per_tick = _plans_per_tick(monkeypatch, links)
    assert per_tick <= 6.0, per_tick


@pytest.mark.parametrize("allowance", [60_000, 150_000, 400_000, 900_000, 2e6, 4e6])
@pytest.mark.parametrize("mixed_before", [False, True])
@pytest.mark.parametrize("max_video", [0, 2, 4, 6])
def test_a_saturated_plan_is_the_same_under_any_larger_allowance(
    allowance: float, mixed_before: bool, max_video: int
) -> None:
    """The shortcut's premise, checked against allocate() itself."""
    costs = Costs(max_video=max_video)
    others = _roster(8)[1:] + [Publisher("novideo", has_video=False)]
    current = Plan(
        AudioMode.MIXED if mixed_before else AudioMode.FORWARDED,
        {p.id: Tier.LOW for p in others[:3]},
    )

    def plan_at(bps: float) -> Plan:
        return allocate([Demand("me", bps, others, current, keep_mixed=True)], None, costs)["me"]

    base = plan_at(allowance)
    bigger = [plan_at(allowance * gain) for gain in (1.01, 1.1, 1.5, 2.0, 4.0, 8.0, 100.0)]
    if not base.short_of_allowance:
        assert all(plan == base for plan in bigger)
    else:
        # Something was refused for want of allowance: enough more gets it.
        assert bigger[-1] != base
