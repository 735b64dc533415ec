"""The emulator holds rate, delay, loss, cuts and schedules on real namespaces and veths.

Measured with UDP probe flows between lab hosts; the first half second of a flow is skipped
(process start-up). Frames are counted whole (Ethernet header included), and a frame takes
its own serialization time (bytes * 8 / rate) on top of the one-way delay, as on a real link.
"""

from __future__ import annotations

import time

import pytest

from harness import Lab, profiles
from harness.probe import FRAME_OVERHEAD, Flow, ProbeRun

pytestmark = [pytest.mark.netns, pytest.mark.timeout(90)]


def steady(flow: Flow, skip: float = 0.5) -> Flow:
    start = flow.records[0].received + skip
    return flow.received_between(start, flow.records[-1].received + 1)


def serialization_ms(payload: int, kbps: float) -> float:
    """Time a probe datagram takes to go onto a link of that rate."""
    return (payload + FRAME_OVERHEAD) * 8 / kbps


def held(measure, attempts: int = 3) -> list[str]:
    """Run measure() (which returns what is off, [] when all held) until it holds.

    This shared machine sometimes stalls a process for a second or more; a systematic error
    fails every attempt, a stall fails one. Returns the problems of the last attempt.
    """
    problems: list[str] = []
    for _ in range(attempts):
        problems = measure()
        if not problems:
            break
    return problems


def test_holds_rate_and_delay_both_ways(lab: Lab):
    box = lab.host("box")
    patient = lab.host("p1", link=profiles.custom(down_kbps=800, up_kbps=400, delay_ms=60))

    def idle_delay() -> list[str]:
        # Idle link, small packets: one-way delay is the configured delay plus serialization.
        up = ProbeRun(lab, patient, box, rate_kbps=30, size=100, seconds=2.5, port=9001)
        down = ProbeRun(lab, box, patient, rate_kbps=30, size=100, seconds=2.5, port=9002)
        problems = []
        for flow, kbps in ((steady(up.result()), 400), (steady(down.result()), 800)):
            expected = 60 + serialization_ms(100, kbps)
            if len(flow) < 40 or abs(flow.delay_ms() - expected) > 0.03 * expected:
                problems.append(f"{kbps}: {len(flow)} packets, median {flow.delay_ms():.2f} ms")
            if flow.delay_ms(0.95) > expected * 1.1:
                problems.append(f"{kbps}: p95 {flow.delay_ms(0.95):.2f} ms")
        return problems

    def saturated_rate() -> list[str]:
        # Offered 1.5x the rate, delivered exactly the rate.
        up = ProbeRun(lab, patient, box, rate_kbps=600, seconds=3, port=9003)
        down = ProbeRun(lab, box, patient, rate_kbps=1200, seconds=3, port=9004)
        rates = {400: steady(up.result()).rate_kbps(), 800: steady(down.result()).rate_kbps()}
        return [f"{k}: {r:.1f}" for k, r in rates.items() if abs(r - k) > 0.03 * k]

    assert held(idle_delay) == []
    assert held(saturated_rate) == []
    stats = lab.stats()["links"]["p1"]
    assert stats["up"]["dropped_queue"] > 0 and stats["down"]["dropped_queue"] > 0


def test_edge_profile_rate_and_delay(lab: Lab):
    box = lab.host("box")
    patient = lab.host("p1", link=profiles.EDGE)

    def delay() -> list[str]:
        probe = steady(ProbeRun(lab, box, patient, rate_kbps=20, size=100, seconds=2.5).result())
        expected = 325 + serialization_ms(100, 200)
        off = abs(probe.delay_ms() - expected) > 0.03 * expected
        return [f"median {probe.delay_ms():.2f} ms"] if off else []

    def rate() -> list[str]:
        flood = steady(ProbeRun(lab, box, patient, rate_kbps=300, size=500, seconds=3).result())
        return [f"{flood.rate_kbps():.1f} kbps"] if abs(flood.rate_kbps() - 200) > 8 else []

    assert held(delay) == []
    assert held(rate) == []


def test_seeded_loss_is_close_to_configured_and_replays(lab: Lab):
    box = lab.host("box")
    lossy = profiles.custom(loss=0.1, seed=42)
    patient = lab.host("p1", link=lossy)
    # Let ARP settle first: it is exempt from loss, but the first datagrams wait for it.
    ProbeRun(lab, patient, box, rate_kbps=20, size=100, seconds=0.3).result()
    lab.set_profile(patient, lossy)  # restart the seeded draws
    first = ProbeRun(lab, patient, box, rate_kbps=1200, size=100, seconds=1.5).result()
    lab.set_profile(patient, lossy)
    again = ProbeRun(lab, patient, box, rate_kbps=1200, size=100, seconds=1.5).result()
    sent = max(first.seqs() | again.seqs()) + 1
    assert sent > 1000
    assert 1 - len(first) / sent == pytest.approx(0.1, abs=0.025)
    # Same seed, same sequence of arrivals: the same datagrams are lost.
    common = min(max(first.seqs()), max(again.seqs()))
    lost_first = {s for s in range(common) if s not in first.seqs()}
    lost_again = {s for s in range(common) if s not in again.seqs()}
    assert lost_first == lost_again


def test_cut_blocks_traffic_then_restores(lab: Lab):
    box = lab.host("box")
    patient = lab.host("p1", link=profiles.custom(delay_ms=20))

    def timed_cut() -> list[str]:
        run = ProbeRun(lab, box, patient, rate_kbps=50, size=100, seconds=4)
        time.sleep(1.0)
        cut_at = time.monotonic()
        lab.cut(patient, seconds=1.5)
        flow = run.result()
        during = flow.sent_between(cut_at + 0.05, cut_at + 1.45)
        after = flow.sent_between(cut_at + 1.6, run.started + 4)
        problems = [f"{len(during)} packets crossed the cut"] if during else []
        if len(after) <= 50 or abs(flow.longest_gap_s() - 1.5) > 0.25:
            problems.append(f"{len(after)} after, longest gap {flow.longest_gap_s():.2f} s")
        return problems

    assert held(timed_cut) == []
    # A cut without a duration lasts until restore().
    lab.cut(patient)
    assert lab.run(patient, ["true"]).returncode == 0
    blocked = ProbeRun(lab, box, patient, rate_kbps=50, size=100, seconds=0.5)
    assert len(blocked.result()) == 0
    lab.restore(patient)
    assert len(ProbeRun(lab, box, patient, rate_kbps=50, size=100, seconds=0.5).result()) > 20


def test_rmcat_schedule_and_profile_change_take_effect(lab: Lab):
    box = lab.host("box")
    patient = lab.host("p1", link=profiles.custom(delay_ms=50))
    schedule = profiles.RMCAT_5_1.time_scaled(20)  # steps at 0, 2, 3 and 4 s

    def steps() -> list[str]:
        start = time.monotonic()
        lab.set_profile(patient, schedule)  # the schedule restarts at 0 s
        flow = ProbeRun(lab, box, patient, rate_kbps=3000, seconds=5.5).result()
        windows = [(0.5, 2.0, 1000), (2.3, 3.0, 2500), (3.3, 4.0, 600), (4.3, 5.5, 1000)]
        problems = []
        for begin, end, kbps in windows:
            measured = flow.received_between(start + begin, start + end).rate_kbps()
            if abs(measured - kbps) > 0.06 * kbps:
                problems.append(f"step at {begin} s: {measured:.0f} kbps, not {kbps}")
        return problems

    assert held(steps) == []
    assert lab.stats()["links"]["p1"]["profile"] == schedule.name


def test_a_frame_read_late_is_timed_from_its_kernel_stamp() -> None:
    # A busy machine can leave frames in the forwarder's socket: the link is then timed from
    # when each arrived (the kernel's stamp), not from when the forwarder got to it.
    import socket

    from harness.emulator import open_packet_socket, read_wait

    sock = open_packet_socket("lo")
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender.sendto(b"stamped", ("127.0.0.1", 9))
        time.sleep(0.05)  # the forwarder busy elsewhere
        ancillary: list = []
        while not ancillary:
            _frame, ancillary, _flags, _address = sock.recvmsg(65535, 64)
        assert 0.045 <= read_wait(ancillary) < 1.0
        assert read_wait([]) == 0.0
    finally:
        sock.close()
        sender.close()
