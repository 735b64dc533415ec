"""Host load readings: what a lab run uses to tell the machine's stalls from the box's."""

from __future__ import annotations

import time
from pathlib import Path

from harness.callrun import CallRun, repeat_while_host_stalled
from harness.host_load import (
    HostLoadSampler,
    Reading,
    per_second,
    read_cpu_jiffies,
    read_cpu_pressure_us,
)

STAT = "cpu  {user} 0 100 {idle} 0 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
PRESSURE = ("some avg10=1.00 avg60=0.50 avg300=0.10 total={total}\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")


def test_steal_and_total_come_from_the_cpu_line(tmp_path: Path):
    stat = tmp_path / "stat"
    stat.write_text(STAT.format(user=500, idle=1000, steal=40))
    assert read_cpu_jiffies(stat) == (40, 500 + 100 + 1000 + 40)
    assert read_cpu_jiffies(tmp_path / "missing") == (0, 0)
    stat.write_text("cpu  1 2 3\n")  # a kernel without the steal column
    assert read_cpu_jiffies(stat) == (0, 0)


def test_cpu_pressure_is_the_some_line_s_total(tmp_path: Path):
    pressure = tmp_path / "cpu"
    pressure.write_text(PRESSURE.format(total=123456))
    assert read_cpu_pressure_us(pressure) == 123456
    assert read_cpu_pressure_us(tmp_path / "missing") == 0  # a kernel without PSI


def test_readings_are_binned_by_whole_seconds_from_t0():
    t0 = 1000.0
    readings = [Reading(999.9, 0, 0, 0),
                Reading(1000.5, 0, 100, 100_000), Reading(1000.9, 10, 200, 100_000),
                Reading(1001.5, 10, 300, 100_000), Reading(1001.9, 10, 400, 100_000),
                Reading(1002.5, 50, 500, 400_000)]
    steal, pressure = per_second(readings, t0)
    assert steal == [5.0, 0.0, 40.0]  # 10 of 200 ticks; none; 40 of 100
    assert pressure == [10.0, 0.0, 50.0]  # 0.1 of 1.0 s; none; 0.3 of 0.6 s
    assert per_second(readings[:1], t0) == ([], [])


def test_the_worst_second_is_read_within_the_window_only():
    run = CallRun(mode="clinicbox", seats=[], seconds=5, reports={}, box_cpu_pct=0.0,
                  forwarder_late_frames=0, forwarder_max_late_ms=0.0, forwarder_frames=0,
                  steal_pct=[30.0, 1.0, 2.0, 8.0, 50.0],
                  cpu_pressure_pct=[90.0, 10.0, 40.0, 20.0, 95.0])
    assert run.worst_steal_pct((1.0, 4.0)) == 8.0
    assert run.worst_cpu_pressure_pct((1.0, 4.0)) == 40.0
    assert run.worst_steal_pct((0.5, 1.5)) == 30.0  # second 0 reaches into the window
    assert run.worst_steal_pct((6.0, 9.0)) == 0.0


def test_the_sampler_reads_the_files_while_running(tmp_path: Path):
    stat, pressure = tmp_path / "stat", tmp_path / "cpu"
    stat.write_text(STAT.format(user=0, idle=0, steal=0))
    pressure.write_text(PRESSURE.format(total=0))
    t0 = time.time()
    with HostLoadSampler(stat, pressure, interval_s=0.01) as sampler:
        time.sleep(0.1)
        stat.write_text(STAT.format(user=0, idle=300, steal=100))
        pressure.write_text(PRESSURE.format(total=50_000))
        time.sleep(0.1)
    steal, crowded = sampler.per_second(t0)
    assert 0 < max(steal) <= 100.0
    assert 0 < max(crowded) <= 100.0


def _run(steal: list[float], late_frames: int = 0) -> CallRun:
    return CallRun(mode="clinicbox", seats=[], seconds=len(steal), reports={}, box_cpu_pct=0.0,
                   forwarder_late_frames=late_frames, forwarder_max_late_ms=0.0,
                   forwarder_frames=1000, steal_pct=steal)


def test_a_call_the_host_stalled_is_made_again_at_most_three_times():
    made: list[CallRun] = [_run([0.0, 20.0, 0.0]), _run([0.0, 0.0, 9.0], late_frames=50),
                           _run([0.0, 1.0, 0.0]), _run([0.0, 0.0, 0.0])]
    calls = iter(made)
    heard: list[str] = []
    run, attempts = repeat_while_host_stalled(lambda: next(calls), (1.0, 3.0), log=heard.append)
    assert run is made[2] and attempts == 3
    assert "hypervisor took 20%" in heard[0] and "emulator stalled" in heard[1]
    # Outside the window the host's stalls do not matter; the last call is kept regardless.
    early = _run([30.0, 0.0, 0.0])
    assert repeat_while_host_stalled(lambda: early, (1.0, 3.0)) == (early, 1)
    stolen = [_run([0.0, 50.0]) for _ in range(3)]
    calls = iter(stolen)
    assert repeat_while_host_stalled(lambda: next(calls), (0.0, 2.0)) == (stolen[2], 3)
