"""How much of its CPUs the machine running a lab call had: hypervisor steal and CPU pressure.

Steal is the share of the machine's CPU time its hypervisor gave to someone else. On a
virtual machine the host may not run a vCPU for tens of milliseconds at a time; every process
of a lab call (box, emulator, callers) then stops at once, and a 400 ms voice deadline with
50-70 ms to spare (EDGE) is missed however well the box adapts. In EDGE diagnosis calls the
seconds with late voices had ~20% of the machine's time stolen (the worst 100 ms of each), the
others ~4%; the worst call (81% of voices on time) had 20-35% stolen for ten seconds.

CPU pressure (/proc/pressure/cpu, "some") is the share of wall time in which at least one
runnable task of the machine waited for a CPU: the lab's own processes crowding its cores.

`HostLoadSampler` reads both in a thread (a few microseconds every 100 ms) and bins them by
whole seconds from a start time. Where a file is missing (bare metal has no steal to speak
of; kernels without PSI), that figure reads zero.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
CPU_PRESSURE = Path("/proc/pressure/cpu")
SAMPLE_S = 0.1
STEAL_FIELD = 7  # user nice system idle iowait irq softirq steal (proc(5))


def read_cpu_jiffies(stat: Path = PROC_STAT) -> tuple[int, int]:
    """(steal, total) clock ticks of all CPUs since boot; (0, 0) when unreadable."""
    try:
        with stat.open() as lines:
            fields = [int(x) for x in lines.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    if len(fields) <= STEAL_FIELD:
        return 0, 0
    # guest and guest_nice are already counted in user and nice.
    return fields[STEAL_FIELD], sum(fields[:STEAL_FIELD + 1])


def read_cpu_pressure_us(pressure: Path = CPU_PRESSURE) -> int:
    """Microseconds since boot in which some runnable task waited for a CPU; 0 without PSI."""
    try:
        with pressure.open() as lines:
            for line in lines:
                if line.startswith("some "):
                    return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass(frozen=True)
class Reading:
    """One sample: wall time, steal and total CPU ticks, CPU pressure in microseconds."""

    at: float
    steal: int
    total: int
    pressure_us: int


def per_second(readings: list[Reading], t0: float) -> tuple[list[float], list[float]]:
    """From readings in time order: steal in % of each whole second's CPU time from t0, and CPU
    pressure in % of its wall time. An interval counts in the second it ends in."""
    steal: dict[int, int] = {}
    total: dict[int, int] = {}
    pressure: dict[int, float] = {}
    wall: dict[int, float] = {}
    for before, after in zip(readings, readings[1:], strict=False):
        if after.at < t0:
            continue
        second = int(after.at - t0)
        steal[second] = steal.get(second, 0) + after.steal - before.steal
        total[second] = total.get(second, 0) + after.total - before.total
        pressure[second] = pressure.get(second, 0.0) + (after.pressure_us - before.pressure_us)
        wall[second] = wall.get(second, 0.0) + (after.at - before.at) * 1e6
    if not wall:
        return [], []
    seconds = range(max(wall) + 1)
    return ([round(100.0 * steal.get(s, 0) / total[s], 1) if total.get(s) else 0.0
             for s in seconds],
            [round(min(100.0, 100.0 * pressure.get(s, 0.0) / wall[s]), 1) if wall.get(s)
             else 0.0 for s in seconds])


class HostLoadSampler:
    """Samples steal and CPU pressure until stopped."""

    def __init__(self, stat: Path = PROC_STAT, pressure: Path = CPU_PRESSURE,
                 interval_s: float = SAMPLE_S) -> None:
        self._stat = stat
        self._pressure = pressure
        self._interval = interval_s
        self._readings: list[Reading] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="host-load", daemon=True)

    def start(self) -> None:
        """Begin sampling (once)."""
        self._thread.start()

    def stop(self) -> None:
        """End sampling; harmless if it never started."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def __enter__(self) -> HostLoadSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def per_second(self, t0: float) -> tuple[list[float], list[float]]:
        """(steal %, CPU pressure %) for each whole second from t0 (wall clock)."""
        return per_second(list(self._readings), t0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._readings.append(Reading(time.time(), *read_cpu_jiffies(self._stat),
                                          read_cpu_pressure_us(self._pressure)))
            self._stop.wait(self._interval)
