"""How closely the weak-link lab's emulator holds each profile, and what forwarding costs.

For each named profile: one-way delay on an idle link (both ways), delivered rate with the link
saturated at 1.5x (both ways at once), loss seen by the emulator, and the forwarder's CPU as a
share of one core. The rmcat-5.1 schedule is run 10x faster and each step's rate measured.
Baseline in the same run: a LAN host (no emulator) against an unshaped emulated link, which
gives the latency the userspace forwarder itself adds. A run during which the forwarder was
stalled (a frame left >10 ms late) is repeated, up to twice, rather than reported.

    python benchmarks/link_emulator.py [--quick]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import Lab, LabUnavailable, profiles  # noqa: E402
from harness.probe import FRAME_OVERHEAD, Flow, ProbeRun  # noqa: E402


def steady(flow: Flow, skip: float = 0.5) -> Flow:
    if not flow.records:
        return flow
    return flow.received_between(flow.records[0].received + skip, float("inf"))


def measure_profile(lab: Lab, box, name: str, profile, seconds: float, attempt: int) -> dict:
    host = lab.host(f"p{name.replace('-', '')[:8]}{attempt}", link=profile)
    shape = profile.steps[0]
    size_down = 1000 if (shape.down.rate_kbps or 10_000) >= 150 else 200
    size_up = 1000 if (shape.up.rate_kbps or 10_000) >= 150 else 200
    # Light probes (<= 8% of the link) so no queue builds; more of them where the link allows,
    # so the median of a jittered delay is not sampling noise.
    probe_kbps = max(16.0, 0.05 * min(shape.down.rate_kbps or 1200, shape.up.rate_kbps or 1200))
    idle_up = ProbeRun(lab, host, box, rate_kbps=probe_kbps, size=100, seconds=seconds,
                       port=9101)
    idle_down = ProbeRun(lab, box, host, rate_kbps=probe_kbps, size=100, seconds=seconds,
                         port=9102)
    up_idle, down_idle = steady(idle_up.result()), steady(idle_down.result())
    before = lab.stats()
    wall = time.monotonic()
    flood_up = ProbeRun(lab, host, box, rate_kbps=1.5 * (shape.up.rate_kbps or 2000),
                        size=size_up, seconds=seconds, port=9103)
    flood_down = ProbeRun(lab, box, host, rate_kbps=1.5 * (shape.down.rate_kbps or 2000),
                          size=size_down, seconds=seconds, port=9104)
    up_flow, down_flow = steady(flood_up.result()), steady(flood_down.result())
    wall = time.monotonic() - wall
    after = lab.stats()
    link = after["links"][host.name]
    forwarded = sum(link[d]["delivered"] - before["links"][host.name][d]["delivered"]
                    for d in ("down", "up"))
    cpu_s = after["cpu_s"] - before["cpu_s"]
    loss = {d: link[d]["dropped_loss"] / max(1, link[d]["offered"]) for d in ("down", "up")}
    result = {
        "profile": name,
        "configured": {"down_kbps": shape.down.rate_kbps, "up_kbps": shape.up.rate_kbps,
                       "delay_ms": shape.down.delay_ms, "jitter_ms": shape.down.jitter_ms,
                       "loss": shape.down.loss},
        "down_kbps": round(down_flow.rate_kbps(), 1),
        "up_kbps": round(up_flow.rate_kbps(), 1),
        "down_delay_ms": round(down_idle.delay_ms(), 2),
        "up_delay_ms": round(up_idle.delay_ms(), 2),
        "delay_p95_ms": round(max(down_idle.delay_ms(0.95), up_idle.delay_ms(0.95)), 2),
        "loss_down": round(loss["down"], 4),
        "loss_up": round(loss["up"], 4),
        "forwarder_cpu_pct": round(100 * cpu_s / wall, 2),
        "forwarder_us_per_frame": round(1e6 * cpu_s / max(1, forwarded), 1),
        "late_frames": link["late_frames"],
        "max_late_ms": link["max_late_ms"],
    }
    if shape.down.rate_kbps:
        result["down_rate_ratio"] = round(result["down_kbps"] / shape.down.rate_kbps, 4)
        result["up_rate_ratio"] = round(result["up_kbps"] / shape.up.rate_kbps, 4)
    if shape.down.delay_ms:
        # What an ideal link gives a 100-byte probe: the delay plus its serialization.
        expected = [shape.down.delay_ms + (100 + FRAME_OVERHEAD) * 8 / (kbps or float("inf"))
                    for kbps in (shape.down.rate_kbps, shape.up.rate_kbps)]
        result["expected_delay_ms"] = [round(e, 2) for e in expected]
        result["delay_ratio"] = round(
            (result["down_delay_ms"] + result["up_delay_ms"]) / sum(expected), 4)
    return result


def measure_rmcat(lab: Lab, box, attempt: int, scale: float) -> dict:
    host = lab.host(f"rmcat{attempt}", link=profiles.custom(delay_ms=50))
    schedule = profiles.RMCAT_5_1.time_scaled(scale)
    start = time.monotonic()
    lab.set_profile(host, schedule)
    total = 100 / scale
    flow = ProbeRun(lab, box, host, rate_kbps=3000, seconds=total, port=9105).result()
    steps = []
    times = [s.at_s for s in schedule.steps] + [total]
    for step, end in zip(schedule.steps, times[1:], strict=False):
        window = flow.received_between(start + step.at_s + 0.3, start + end)
        measured = window.rate_kbps()
        steps.append({"at_s": step.at_s * scale, "kbps": step.down.rate_kbps,
                      "measured_kbps": round(measured, 1),
                      "ratio": round(measured / step.down.rate_kbps, 4)})
    link = lab.stats()["links"][host.name]
    return {"time_scale": scale, "steps": steps, "late_frames": link["late_frames"]}


def baseline_latency(lab: Lab, box, seconds: float) -> dict:
    lan = lab.host("lan")
    wan = lab.host("unshaped", link=profiles.UNSHAPED)
    direct = steady(ProbeRun(lab, lan, box, rate_kbps=16, size=100, seconds=seconds,
                             port=9106).result())
    forwarded = steady(ProbeRun(lab, wan, box, rate_kbps=16, size=100, seconds=seconds,
                                port=9107).result())
    return {
        "lan_one_way_ms": round(direct.delay_ms(), 3),
        "through_forwarder_one_way_ms": round(forwarded.delay_ms(), 3),
        "forwarder_added_ms": round(forwarded.delay_ms() - direct.delay_ms(), 3),
        "forwarder_added_p95_ms": round(forwarded.delay_ms(0.95) - direct.delay_ms(0.95), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter flows (about 30 s)")
    args = parser.parse_args()
    seconds = 2.5 if args.quick else 5.0
    try:
        lab = Lab()
        lab.start()
    except LabUnavailable as exc:
        print(json.dumps({"benchmark": "link_emulator", "skipped": str(exc)}))
        return 0
    with lab:
        box = lab.host("box")
        baseline = baseline_latency(lab, box, seconds / 2)
        print(f"baseline: LAN {baseline['lan_one_way_ms']} ms one way, through the forwarder "
              f"{baseline['through_forwarder_one_way_ms']} ms")
        results = []
        for name in ("3g", "edge", "gprs"):
            for attempt in range(3):
                result = measure_profile(lab, box, name, profiles.by_name(name), seconds, attempt)
                if result["late_frames"] == 0:
                    break
                print(f"{name}: forwarder stalled ({result['max_late_ms']} ms late), repeating")
            result["repeats"] = attempt
            results.append(result)
            print(f"{name}: rate down {result['down_kbps']} / up {result['up_kbps']} kbps "
                  f"(configured {result['configured']['down_kbps']}/"
                  f"{result['configured']['up_kbps']}), delay {result['down_delay_ms']}/"
                  f"{result['up_delay_ms']} ms (configured {result['configured']['delay_ms']}), "
                  f"loss {result['loss_down']:.2%}/{result['loss_up']:.2%}, "
                  f"forwarder {result['forwarder_cpu_pct']}% of a core")
        for attempt in range(3):
            rmcat = measure_rmcat(lab, box, attempt, scale=20 if args.quick else 10)
            if rmcat["late_frames"] == 0:
                break
        rmcat["repeats"] = attempt
        for step in rmcat["steps"]:
            print(f"rmcat-5.1 step {step['kbps']} kbps: measured {step['measured_kbps']}")
    print(json.dumps({"benchmark": "link_emulator", "quick": args.quick, "baseline": baseline,
                      "profiles": results, "rmcat_5_1": rmcat}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
