"""The emulator holds rate, delay, loss, cuts and schedules on real namespaces and veths.

Measured with UDP probe flows between lab hosts; the first half second of a flow is skipped
(process start-up). Frames are counted whole (Ethernet header included), and a frame takes
its own serialization time (bytes * 8 / rate) on top of the one-way delay, as on a real link.
"""

from __future__ import annotations

import time

import pytest

from appliance.lab import Lab, profiles
from appliance.lab.probe import FRAME_OVERHEAD, Flow, ProbeRun

pytestmark = [pytest.mark.netns, pytest.mark.timeout(90)]


def steady(flow: Flow, skip: float = 0.5) -> Flow:
    start = flow.records[0].received + skip
    return flow.received_between(start, flow.records[-1].received + 1)


def serialization_ms(payload: int, kbps: float) -> float:
    """Time a probe datagram takes to go onto a link of that rate."""
    return (payload + FRAME_OVERHEAD) * 8 / kbps


def test_holds_rate_and_delay_both_ways(lab: Lab):
    box = lab.host("box")
    patient = lab.host("p1", link=profiles.custom(down_kbps=800, up_kbps=400, delay_ms=60))
    # Idle link: small packets, so one-way delay is the configured delay alone.
    up = ProbeRun(lab, patient, box, rate_kbps=30, size=100, seconds=2.5, port=9001)
    down = ProbeRun(lab, box, patient, rate_kbps=30, size=100, seconds=2.5, port=9002)
    for flow, kbps in ((steady(up.result()), 400), (steady(down.result()), 800)):
        expected = 60 + serialization_ms(100, kbps)
        assert len(flow) > 40
        assert flow.delay_ms() == pytest.approx(expected, rel=0.03)
        assert flow.delay_ms(0.95) < expected * 1.1
    # Saturated link: offered 1.5x the rate, delivered exactly the rate.
    up = ProbeRun(lab, patient, box, rate_kbps=600, seconds=3, port=9003)
    down = ProbeRun(lab, box, patient, rate_kbps=1200, seconds=3, port=9004)
    assert steady(up.result()).rate_kbps() == pytest.approx(400, rel=0.03)
    assert steady(down.result()).rate_kbps() == pytest.approx(800, rel=0.03)
    stats = lab.stats()["links"]["p1"]
    assert stats["up"]["dropped_queue"] > 0 and stats["down"]["dropped_queue"] > 0


def test_edge_profile_rate_and_delay(lab: Lab):
    box = lab.host("box")
    patient = lab.host("p1", link=profiles.EDGE)
    probe = steady(ProbeRun(lab, box, patient, rate_kbps=20, size=100, seconds=2.5).result())
    assert probe.delay_ms() == pytest.approx(325 + serialization_ms(100, 200), rel=0.03)
    flood = steady(ProbeRun(lab, box, patient, rate_kbps=300, size=500, seconds=3).result())
    assert flood.rate_kbps() == pytest.approx(200, rel=0.04)


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
    run = ProbeRun(lab, box, patient, rate_kbps=50, size=100, seconds=4)
    time.sleep(1.0)
    cut_at = time.monotonic()
    lab.cut(patient, seconds=1.5)
    flow = run.result()
    during = flow.sent_between(cut_at + 0.05, cut_at + 1.45)
    after = flow.sent_between(cut_at + 1.6, run.started + 4)
    assert len(during) == 0
    assert len(after) > 50
    assert flow.longest_gap_s() == pytest.approx(1.5, abs=0.25)
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
    start = time.monotonic()
    lab.set_profile(patient, schedule)
    flow = ProbeRun(lab, box, patient, rate_kbps=3000, seconds=5.5).result()
    windows = [(0.5, 2.0, 1000), (2.3, 3.0, 2500), (3.3, 4.0, 600), (4.3, 5.5, 1000)]
    for begin, end, kbps in windows:
        measured = flow.received_between(start + begin, start + end).rate_kbps()
        assert measured == pytest.approx(kbps, rel=0.06), (begin, kbps)
    assert lab.stats()["links"]["p1"]["profile"] == schedule.name
