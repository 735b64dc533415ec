"""CPU steal readings: what a lab run uses to tell the host's stalls from the box's."""

from __future__ import annotations

import time
from pathlib import Path

from appliance.lab.callrun import CallRun
from appliance.lab.steal import StealSampler, read_cpu_jiffies, steal_per_second

STAT = "cpu  {user} 0 100 {idle} 0 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"


def test_steal_and_total_come_from_the_cpu_line(tmp_path: Path):
    stat = tmp_path / "stat"
    stat.write_text(STAT.format(user=500, idle=1000, steal=40))
    assert read_cpu_jiffies(stat) == (40, 500 + 100 + 1000 + 40)
    assert read_cpu_jiffies(tmp_path / "missing") == (0, 0)
    stat.write_text("cpu  1 2 3\n")  # a kernel without the steal column
    assert read_cpu_jiffies(stat) == (0, 0)


def test_steal_is_binned_by_whole_seconds_from_t0():
    t0 = 1000.0
    samples = [(999.9, 0, 0), (1000.5, 0, 100), (1000.9, 10, 200),  # second 0: 10 of 200
               (1001.5, 10, 300), (1001.9, 10, 400),                # second 1: none
               (1002.5, 50, 500)]                                   # second 2: 40 of 100
    assert steal_per_second(samples, t0) == [5.0, 0.0, 40.0]
    assert steal_per_second(samples[:1], t0) == []


def test_the_worst_second_is_read_within_the_window_only():
    run = CallRun(mode="clinicbox", seats=[], seconds=5, reports={}, box_cpu_pct=0.0,
                  forwarder_late_frames=0, forwarder_max_late_ms=0.0, forwarder_frames=0,
                  steal_pct=[30.0, 1.0, 2.0, 8.0, 50.0])
    assert run.worst_steal_pct((1.0, 4.0)) == 8.0
    assert run.worst_steal_pct((0.5, 1.5)) == 30.0  # second 0 reaches into the window
    assert run.worst_steal_pct((6.0, 9.0)) == 0.0


def test_the_sampler_reads_the_file_while_running(tmp_path: Path):
    stat = tmp_path / "stat"
    stat.write_text(STAT.format(user=0, idle=0, steal=0))
    t0 = time.time()
    with StealSampler(stat, interval_s=0.01) as sampler:
        time.sleep(0.1)
        stat.write_text(STAT.format(user=0, idle=300, steal=100))
        time.sleep(0.1)
    assert 0 < max(sampler.per_second(t0)) <= 100.0
