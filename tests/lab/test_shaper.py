"""The shaping logic of one link direction and the profiles, on a synthetic clock."""

from __future__ import annotations

import random

import pytest

from harness import profiles
from harness.profiles import Profile, Shape, Step
from harness.shaper import DirectionShaper

FRAME = b"x" * 1000


def run(shaper: DirectionShaper, arrivals: list[float], until: float, step: float = 0.001):
    """Offer FRAME at each arrival time, tick every step; return delivery times."""
    delivered: list[float] = []
    pending = sorted(arrivals)
    t = 0.0
    while t <= until:
        while pending and pending[0] <= t:
            shaper.offer(FRAME, pending.pop(0))
        delivered += [t] * len(shaper.due(t))
        t = round(t + step, 6)
    return delivered


def test_rate_limit_holds_the_configured_rate_exactly():
    shaper = DirectionShaper(Shape(rate_kbps=400), random.Random(1), 0.0)
    arrivals = [i * 0.01 for i in range(400)]  # 800 kbps offered, twice the rate
    out = run(shaper, arrivals, until=4.0)
    steady = [t for t in out if 1.0 <= t < 3.0]
    assert len(steady) == pytest.approx(100, abs=1)  # 400 kbps / 8 kbit per frame * 2 s
    assert shaper.stats.dropped_queue > 0  # the queue is bounded, the excess is dropped


def test_frames_pay_serialization_and_never_burst_after_idle():
    shaper = DirectionShaper(Shape(rate_kbps=400, delay_ms=50), random.Random(1), 0.0)
    out = run(shaper, [10.0] * 5, until=10.2, step=0.0005)
    # 1000 bytes at 400 kbps take 20 ms each: arrivals at 70, 90, 110, 130, 150 ms after 10 s.
    assert [round((t - 10.0) * 1000) for t in out] == [70, 90, 110, 130, 150]


def test_queue_is_bounded_in_time_at_the_current_rate():
    shaper = DirectionShaper(Shape(rate_kbps=400, queue_ms=200), random.Random(1), 0.0)
    for _ in range(50):
        shaper.offer(FRAME, 0.0)
    assert shaper.queued_bytes <= 400_000 / 8 * 0.2
    shaper.configure(Shape(rate_kbps=100, queue_ms=200), 0.0)
    assert shaper.queued_bytes <= 100_000 / 8 * 0.2 + 1000  # trimmed at the step down


def test_delay_and_jitter_stay_in_bounds_and_never_reorder():
    shaper = DirectionShaper(Shape(delay_ms=100, jitter_ms=20), random.Random(3), 0.0)
    sent = [i * 0.005 for i in range(200)]
    frames = [i.to_bytes(4, "big") for i in range(200)]
    out: list[tuple[float, bytes]] = []
    t = 0.0
    i = 0
    while t < 2.0:
        while i < len(sent) and sent[i] <= t:
            shaper.offer(frames[i], t)
            i += 1
        out += [(t, f) for f in shaper.due(t)]
        t = round(t + 0.0005, 6)
    assert [f for _, f in out] == frames  # same order
    delays = [(t - sent[int.from_bytes(f, "big")]) * 1000 for t, f in out]
    assert min(delays) >= 80 - 0.5
    assert max(delays) <= 120 + 25  # no reordering may push a frame past the max a little
    assert 95 < sum(delays) / len(delays) < 110


def test_seeded_loss_is_close_to_configured_and_repeats():
    def lost(seed: int) -> list[int]:
        shaper = DirectionShaper(Shape(loss=0.1), random.Random(seed), 0.0)
        gone = []
        for i in range(5000):
            before = shaper.stats.dropped_loss
            shaper.offer(FRAME, 0.0)
            if shaper.stats.dropped_loss > before:
                gone.append(i)
        return gone

    first = lost(7)
    assert len(first) / 5000 == pytest.approx(0.1, abs=0.015)
    assert lost(7) == first
    assert lost(8) != first


def test_cut_drops_queue_and_arrivals_then_restores():
    shaper = DirectionShaper(Shape(rate_kbps=80, delay_ms=10), random.Random(1), 0.0)
    for _ in range(3):
        shaper.offer(FRAME, 0.0)
    shaper.set_cut(True, 0.0)
    shaper.offer(FRAME, 0.1)
    assert shaper.stats.dropped_cut == 4
    assert shaper.due(0.5) == []
    assert shaper.queued_bytes == 0
    shaper.set_cut(False, 1.0)
    shaper.offer(FRAME, 1.0)
    assert shaper.due(1.2)


def test_arp_skips_delay_and_loss_but_not_cuts():
    shaper = DirectionShaper(Shape(delay_ms=300, loss=1.0), random.Random(1), 0.0)
    shaper.offer(b"arp", 0.0, exempt=True)
    assert shaper.due(0.0) == [b"arp"]
    shaper.set_cut(True, 0.0)
    shaper.offer(b"arp", 0.1, exempt=True)
    assert shaper.due(0.2) == []


def test_profiles_named_and_scaled():
    assert profiles.by_name("edge").steps[0].down.rate_kbps == 200
    assert profiles.by_name("gprs").steps[0].up.rate_kbps == 20
    rmcat = profiles.RMCAT_5_1
    assert [s.down.rate_kbps for s in rmcat.steps] == [1000, 2500, 600, 1000]
    fast = rmcat.time_scaled(10)
    assert [s.at_s for s in fast.steps] == [0, 4, 6, 8]
    assert fast.step_at(5.0).down.rate_kbps == 2500
    assert fast.next_change(6.5) == 8
    assert fast.next_change(9) is None
    assert Profile.from_dict(fast.to_dict()) == fast
    with pytest.raises(ValueError, match="unknown link profile"):
        profiles.by_name("5g")


@pytest.mark.parametrize(
    "kwargs",
    [{"rate_kbps": 0}, {"loss": 1.5}, {"delay_ms": -1}, {"delay_ms": 5, "jitter_ms": 10}],
)
def test_bad_shapes_are_refused(kwargs):
    with pytest.raises(ValueError):
        Shape(**kwargs)


def test_bad_schedules_are_refused():
    shape = Shape()
    with pytest.raises(ValueError):
        Profile("x", (Step(1.0, shape, shape),))
    with pytest.raises(ValueError):
        Profile("x", (Step(0.0, shape, shape), Step(0.0, shape, shape)))
    with pytest.raises(ValueError, match="bad profile"):
        Profile.from_dict({"name": "x"})
