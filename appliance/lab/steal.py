"""CPU steal: the share of this machine's CPU time its hypervisor gave to someone else.

On a virtual machine the host may not run a vCPU for tens of milliseconds at a time. Every
process of a lab call (box, emulator, callers) then stops at once, and a 400 ms voice deadline
with 50-70 ms to spare (EDGE) is missed however well the box adapts. In EDGE diagnosis calls
the seconds with late voices had on average 20% of the machine's time stolen (max of 100 ms
samples), the others 4%; the worst call (81% of voices on time) had 20-35% stolen for ten
seconds. A run whose window held such seconds measured the host, not the box.

`StealSampler` reads the `cpu` line of /proc/stat in a thread (a few microseconds every 100
ms) and bins the steal share by whole seconds from a start time. On bare metal, or where
/proc/stat is missing, steal reads zero.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

PROC_STAT = Path("/proc/stat")
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


def steal_per_second(samples: list[tuple[float, int, int]], t0: float) -> list[float]:
    """From (time, steal, total) readings in time order, steal in % of the CPU time of each
    whole second from t0; an interval counts in the second it ends in."""
    steal: dict[int, int] = {}
    total: dict[int, int] = {}
    for (_, s0, c0), (t, s1, c1) in zip(samples, samples[1:], strict=False):
        second = int(t - t0) if t >= t0 else -1
        if second < 0:
            continue
        steal[second] = steal.get(second, 0) + s1 - s0
        total[second] = total.get(second, 0) + c1 - c0
    if not total:
        return []
    return [round(100.0 * steal.get(s, 0) / total[s], 1) if total.get(s) else 0.0
            for s in range(max(total) + 1)]


class StealSampler:
    """Samples the machine's steal share until stopped; per second from t0 in percent."""

    def __init__(self, stat: Path = PROC_STAT, interval_s: float = SAMPLE_S) -> None:
        self._stat = stat
        self._interval = interval_s
        self._samples: list[tuple[float, int, int]] = []  # (time.time(), steal, total)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steal-sampler", daemon=True)

    def start(self) -> None:
        """Begin sampling (once)."""
        self._thread.start()

    def stop(self) -> None:
        """End sampling; harmless if it never started."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def __enter__(self) -> StealSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def per_second(self, t0: float) -> list[float]:
        """Steal in % of the machine's CPU time for each whole second from t0 (wall clock)."""
        return steal_per_second(list(self._samples), t0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._samples.append((time.time(), *read_cpu_jiffies(self._stat)))
            self._stop.wait(self._interval)
