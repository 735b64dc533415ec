"""Adaptation decisions on the fluid model of the lab's profiles, and what deciding costs.

A 6-person room; one remote subscriber behind each profile's downlink (fluid model: the
emulator's bottleneck, 300 ms queue, tail drop, random loss, a receiver report a second):
- rmcat-5.1: seconds from the 2.5 -> 0.6 Mbps step until the plan fits the link, and from
  the 0.6 -> 1 Mbps step until every publisher is back at the low tier or better;
- edge, gprs: audio mode, share of time with video, time the queue overflowed;
- a 20 s cut on a 1 Mbps link: seconds to the full plan after it ends;
- cost: CPU per SessionAdaptation.tick() for rooms of 6, 12 and 24 (all remote), against a
  bare allocate() of the same room as the baseline (ratio).
These are decisions on a model, not wire measurements (see docs/weak-links.md).

    python benchmarks/adaptation.py [--quick]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.media.adaptation import (  # noqa: E402
    AudioMode,
    Demand,
    LinkState,
    Publisher,
    SessionAdaptation,
    Tier,
    allocate,
)
from harness.fluid import DT, FluidLink, simulate  # noqa: E402


def roster(n: int) -> list[Publisher]:
    return [Publisher(f"p{i}", facilitator=i == 1, speaking_rank=i - 1) for i in range(1, n)] + [
        Publisher("far")
    ]


def rmcat(t: float) -> float:
    return 1e6 if t < 40 else 2.5e6 if t < 60 else 0.6e6 if t < 80 else 1e6


def run_rmcat() -> dict:
    link = FluidLink(rmcat)
    trace = [(t, u["far"]) for t, u in simulate({"far": link}, roster(6), 100)]
    down = next(t for t, u in trace if t >= 60 and u.plan.used_bps <= 600_000) - 60
    up = next(t for t, u in trace
              if t >= 80 and min(u.plan.tiers.values()) >= Tier.LOW) - 80
    return {"profile": "rmcat-5.1", "step_down_s": round(down, 1), "step_up_s": round(up, 1),
            "audio_forwarded_pct": pct(u.plan.audio is AudioMode.FORWARDED for _, u in trace),
            "queue_overflow_s": round(link.full_s, 1)}


def run_constant(name: str, kbps: float, seconds: float) -> dict:
    link = FluidLink(lambda t: kbps * 1000, delay_s=0.325, loss=0.01)
    trace = [u["far"] for t, u in simulate({"far": link}, roster(6), seconds) if t >= 10]
    steady = [u for u in trace if u.estimate.state is not LinkState.PROBING]
    return {
        "profile": name,
        "audio_mixed_pct": pct(u.plan.audio is AudioMode.MIXED for u in trace),
        "any_video_pct": pct(max(u.plan.tiers.values()) >= Tier.PRESENCE for u in steady),
        "low_or_better_pct": pct(max(u.plan.tiers.values()) >= Tier.LOW for u in steady),
        "probing_pct": pct(u.estimate.state is LinkState.PROBING for u in trace),
        "mean_used_kbps": round(sum(u.plan.used_bps for u in trace) / len(trace) / 1000, 1),
        "queue_overflow_pct": round(100 * link.full_s / seconds, 1),
    }


def run_cut() -> dict:
    link = FluidLink(lambda t: 1e6)
    trace = [(t, u["far"]) for t, u in simulate({"far": link}, roster(6), 60, cut=(20, 40))]
    back = next(t for t, u in trace if t >= 40 and min(u.plan.tiers.values()) >= Tier.LOW)
    told = [t for t, u in trace for n in u.notices if n.reason.name == "CONNECTION_LOST"]
    return {"profile": "cut-20s", "announced_after_s": round(told[0] - 20, 1),
            "full_plan_after_s": round(back - 40, 1)}


def cost(n: int, ticks: int) -> dict:
    people = roster(n)
    session = SessionAdaptation()
    for p in people:
        session.add_subscriber(p.id, 0.0)
        session.set_sending(p.id, 300_000)
    start = time.process_time()
    for i in range(ticks):
        session.tick(i * DT, people)
    tick_s = (time.process_time() - start) / ticks
    demands = [Demand(p.id, 1e6, [o for o in people if o.id != p.id]) for p in people]
    start = time.process_time()
    for _ in range(ticks):
        allocate(demands)
    allocate_s = (time.process_time() - start) / ticks
    return {"room": n, "tick_ms": round(tick_s * 1000, 3),
            "allocate_ms": round(allocate_s * 1000, 3),
            "tick_vs_allocate": round(tick_s / allocate_s, 2),
            "core_pct_at_4_ticks_per_s": round(100 * 4 * tick_s, 2)}


def pct(flags) -> float:
    flags = list(flags)
    return round(100 * sum(flags) / max(1, len(flags)), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    args = parser.parse_args()
    seconds = 40 if args.quick else 120
    ticks = 50 if args.quick else 200
    scenarios = [run_rmcat(), run_constant("edge", 200, seconds),
                 run_constant("gprs", 80, seconds), run_cut()]
    for s in scenarios:
        print(", ".join(f"{k}={v}" for k, v in s.items()))
    costs = [cost(n, ticks) for n in (6, 12, 24)]
    for c in costs:
        print(f"room of {c['room']}: tick {c['tick_ms']} ms (allocate alone "
              f"{c['allocate_ms']} ms, x{c['tick_vs_allocate']}), "
              f"{c['core_pct_at_4_ticks_per_s']}% of a core at 4 ticks/s")
    print(json.dumps({"benchmark": "adaptation", "quick": args.quick, "scenarios": scenarios,
                      "cost": costs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
