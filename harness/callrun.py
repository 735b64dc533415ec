"""One synthetic group call through the lab, and what its participants received.

```python
with Lab() as lab:
    box = lab.host("box")
    seats = [Seat("nurse"), Seat("p1", link=profiles.THREE_G)]
    hosts = {s.name: lab.host(s.name, link=s.link) for s in seats}
    run = run_call(lab, box, hosts, seats, mode="clinicbox", seconds=15, clip=clip_path)
    run.audio("p1", window=(6, 15))        # AudioStats: on-time %, longest gap
```

`run_call` starts `harness.callbox` in the box host and one `harness.caller`
process per seat in its host, all on one shared clock origin `t0` (the moment the call starts,
when `on_start` runs, e.g. to apply a link schedule), waits for them and keeps their reports.
The analysis methods read those reports over a time window (seconds after `t0`).
"""

from __future__ import annotations

import json
import select
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.caller import AUDIO_PTIME_S, BIN_S, VIDEO_FPS
from harness.host_load import HostLoadSampler
from harness.lab import Host, Lab
from harness.profiles import Profile

ON_TIME_S = 0.4
#: The forwarder leaving frames this late (or this often) means the host stalled the run.
STALL_MAX_LATE_MS = 150.0
STALL_LATE_FRACTION = 0.01
#: A second in which the hypervisor took this much of the machine's CPU time stops every
#: process of the call at once (see harness.host_load): the run timed the host.
STEAL_LIMIT_PCT = 8.0
#: Calls made before a stalled host's run is kept anyway (see `repeat_while_host_stalled`).
ATTEMPTS = 3


@dataclass(frozen=True)
class Seat:
    """A participant: its host name (also its id), link (None: LAN) and what it publishes."""

    name: str
    link: Profile | None = None
    publish: tuple[str, ...] = ("audio", "video")
    role: str = "patient"
    quiet: bool = False  # listening: its tones are 24 dB down (see `Clip.quiet`)


@dataclass(frozen=True)
class AudioStats:
    on_time_pct: float
    delivered_pct: float  # arrived at all, however late
    longest_gap_ms: float
    streams: int


@dataclass(frozen=True)
class VideoStats:
    fps: float  # mean over the slots that showed video in the window
    min_fps: float  # lowest of the expected slots (a slot with no video counts 0)
    longest_freeze_s: float  # over the slots that showed video
    streams: int


@dataclass
class CallRun:
    """Reports of one call, plus the box's CPU and the forwarder's lateness during it."""

    mode: str
    seats: list[Seat]
    seconds: float
    reports: dict[str, dict[str, Any]]
    box_cpu_pct: float
    forwarder_late_frames: int
    forwarder_max_late_ms: float
    forwarder_frames: int
    errors: dict[str, str] = field(default_factory=dict)
    #: Per second from t0, the share of the machine's CPU time its hypervisor took (%), and
    #: of wall time in which some task waited for a CPU (see harness.host_load).
    steal_pct: list[float] = field(default_factory=list)
    cpu_pressure_pct: list[float] = field(default_factory=list)

    @property
    def stalled(self) -> bool:
        """True when the link emulator was held up: timing in this run is not the link's."""
        late_share = self.forwarder_late_frames / max(1, self.forwarder_frames)
        return (self.forwarder_max_late_ms >= STALL_MAX_LATE_MS
                or late_share >= STALL_LATE_FRACTION)

    def worst_steal_pct(self, window: tuple[float, float]) -> float:
        """The most CPU time the hypervisor took in any second of the window (%): a run with
        much of it timed the host, not the box."""
        return _worst(self.steal_pct, window)

    def host_stall(self, window: tuple[float, float]) -> str | None:
        """Why this run's timing within the window is the host's rather than the box's, or
        None: the link emulator was held up, or the hypervisor took the CPUs."""
        if self.stalled:
            return (f"link emulator stalled {self.forwarder_max_late_ms:.0f} ms "
                    f"({self.forwarder_late_frames} late frames)")
        steal = self.worst_steal_pct(window)
        if steal >= STEAL_LIMIT_PCT:
            return f"the hypervisor took {steal:.0f}% of the CPU time in a second of the window"
        return None

    def worst_cpu_pressure_pct(self, window: tuple[float, float]) -> float:
        """The most wall time in any second of the window in which some task waited for a
        CPU (%): the lab's processes crowding the machine's cores."""
        return _worst(self.cpu_pressure_pct, window)

    def _publishers(self, subscriber: str, kind: str) -> int:
        return sum(1 for s in self.seats if s.name != subscriber and kind in s.publish)

    def audio(self, subscriber: str, window: tuple[float, float]) -> AudioStats:
        """Audio a subscriber got from everyone else, sent within the window.

        On time: arrived within 400 ms of being sent. The longest gap is between packets that
        arrived on time (what a listener can play), window edges included, per voice. A part
        of the box's mixed stream carries every voice at once (all publishers send tone n at
        the same moment), so it counts once per expected voice and fills every voice's gaps;
        parts read as sent in the same 20 ms (the mix re-timed after a gap) count once.
        """
        w0, w1 = window
        expected = self._publishers(subscriber, "audio")
        streams = self.reports.get(subscriber, {}).get("audio", {})
        on_time, delivered = 0, 0
        voices: list[list[float]] = []
        mixed: list[float] = []
        mixed_sent: set[int] = set()  # 20 ms send slots the mix delivered...
        mixed_on_time: set[int] = set()  # ...and delivered on time
        present = 0
        for rows in streams.values():
            inside = [r for r in rows if w0 <= r[0] - r[1] < w1]
            own = [r for r in inside if not (len(r) > 2 and r[2])]
            mix = [r for r in inside if len(r) > 2 and r[2]]
            delivered += len(own)
            good = [r[0] for r in own if r[1] <= ON_TIME_S]
            mixed += [r[0] for r in mix if r[1] <= ON_TIME_S]
            mixed_sent |= {round((r[0] - r[1]) / AUDIO_PTIME_S) for r in mix}
            mixed_on_time |= {round((r[0] - r[1]) / AUDIO_PTIME_S) for r in mix
                              if r[1] <= ON_TIME_S}
            on_time += len(good)
            if own:
                voices.append(good)
            present += 1 if rows else 0
        on_time += expected * len(mixed_on_time)
        delivered += expected * len(mixed_sent)
        voices += [[] for _ in range(max(0, expected - len(voices)))]
        gaps = []
        for good in voices:
            edges = [w0, *sorted(good + mixed), w1]
            gaps.append(max(b - a for a, b in zip(edges, edges[1:], strict=False)))
        sent = expected * round((w1 - w0) / AUDIO_PTIME_S)

        def pct(count: int) -> float:
            return round(100.0 * min(count, sent) / sent, 1) if sent else 0.0

        return AudioStats(pct(on_time), pct(delivered), round(1000 * max(gaps, default=0.0)),
                          present)

    def events(self, subscriber: str, kind: str) -> list[tuple[float, dict[str, Any]]]:
        """The box's in-call events of one type a subscriber got, with arrival times."""
        rows = self.reports.get(subscriber, {}).get("events", [])
        return [(t, e) for t, e in rows if e.get("type") == kind]

    def caller_stalls(self, window: tuple[float, float]) -> dict[str, float]:
        """Per participant, the longest its own event loop was held up within the window (ms;
        only those held up at least caller.STALL_MS): its packets then left late."""
        w0, w1 = window
        worst: dict[str, float] = {}
        for name, report in self.reports.items():
            lags = [lag for t, lag in report.get("loop_stalls", []) if w0 <= t < w1]
            if lags:
                worst[name] = max(lags)
        return worst

    def video(self, subscriber: str, window: tuple[float, float], slots: int = 4,
              publishers: set[str] | None = None) -> VideoStats:
        """Video frames a subscriber's slots completed within the window; with `publishers`,
        only frames of slots the box said showed one of them at the time."""
        w0, w1 = window
        expected = min(slots, self._publishers(subscriber, "video"))
        if publishers is not None:
            expected = min(expected, len(publishers - {subscriber}))
        shows = self._video_slot_history(subscriber)
        rates, freezes = [], []
        for mid, times in self.reports.get(subscriber, {}).get("video", {}).items():
            inside = [t for t in times if w0 <= t < w1]
            if publishers is not None:
                inside = [t for t in inside if _shown_at(shows.get(mid, []), t) in publishers]
            if not inside:
                continue
            rates.append(len(inside) / (w1 - w0))
            edges = [w0, *inside, w1]
            freezes.append(max(b - a for a, b in zip(edges, edges[1:], strict=False)))
        shown = rates + [0.0] * max(0, expected - len(rates))
        return VideoStats(
            fps=round(sum(rates) / len(rates), 1) if rates else 0.0,
            min_fps=round(min(shown), 1) if shown else 0.0,
            longest_freeze_s=round(max(freezes, default=w1 - w0), 2),
            streams=len(rates),
        )

    def _video_slot_history(self, subscriber: str) -> dict[str, list[tuple[float, str | None]]]:
        """Per video slot (mid), (time, publisher shown from then) from the box's events."""
        history: dict[str, list[tuple[float, str | None]]] = {}
        for t, event in self.events(subscriber, "slots"):
            for mid, shown in (event.get("video") or {}).items():
                history.setdefault(mid, []).append((t, shown))
        return history

    def downlink_kbps(self, subscriber: str, window: tuple[float, float]) -> float:
        """RTP bytes the subscriber received in the window, as kbit/s."""
        bins = self.reports.get(subscriber, {}).get("bytes_per_bin", [])
        first, last = int(window[0] / BIN_S), int(window[1] / BIN_S)
        total = sum(bins[first:last])
        return round(total * 8 / 1000 / max(BIN_S, (last - first) * BIN_S), 1)

    def rate_series(self, subscriber: str) -> list[float]:
        """Downlink kbit/s per half second from t0."""
        bins = self.reports.get(subscriber, {}).get("bytes_per_bin", [])
        return [b * 8 / 1000 / BIN_S for b in bins]


def repeat_while_host_stalled(call: Callable[[], CallRun], window: tuple[float, float],
                              attempts: int = ATTEMPTS,
                              log: Callable[[str], None] | None = None) -> tuple[CallRun, int]:
    """Make the call again while the host stalled it within the window (`host_stall`), at
    most `attempts` times; the last run is kept whatever it measured. Returns it and how
    many calls were made; `log` hears why each repeat was needed."""
    run = call()
    for attempt in range(2, attempts + 1):
        reason = run.host_stall(window)
        if reason is None:
            return run, attempt - 1
        if log is not None:
            log(f"{reason}; repeating")
        run = call()
    return run, attempts


def _worst(per_second: list[float], window: tuple[float, float]) -> float:
    """The largest value of the seconds that overlap the window."""
    w0, w1 = window
    return max((value for second, value in enumerate(per_second)
                if second + 1 > w0 and second < w1), default=0.0)


def _shown_at(history: list[tuple[float, str | None]], t: float) -> str | None:
    """Who a slot showed at time t (None: nothing, or not known yet)."""
    shown = None
    for since, who in history:
        if since > t:
            break
        shown = who
    return shown


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def _read_port(proc: subprocess.Popen[str], timeout: float) -> int:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line.strip().isdigit():
        raise RuntimeError(f"the lab's call box did not start (exit {proc.poll()})")
    return int(line)


def _forwarder(lab: Lab) -> tuple[int, float, int]:
    stats = lab.stats()
    links = stats.get("links", {}).values()
    late = sum(int(link["late_frames"]) for link in links)
    worst = max((float(link["max_late_ms"]) for link in links), default=0.0)
    frames = sum(int(link[d]["delivered"]) for link in links for d in ("down", "up"))
    return late, worst, frames


def run_call(
    lab: Lab,
    box: Host,
    hosts: dict[str, Host],
    seats: list[Seat],
    mode: str,
    seconds: float,
    clip: Path,
    on_start: Callable[[], None] | None = None,
    audio_slots: int = 5,
    video_slots: int = 4,
    signal_addresses: dict[str, str] | None = None,
    box_args: tuple[str, ...] = (),
    caller_args: dict[str, list[str]] | None = None,
    env: dict[str, str] | None = None,
) -> CallRun:
    """Run one call of `seconds` (from t0) in `mode` ("clinicbox" or "stock").

    Callers dial the box at their `signal_addresses` entry (default: the box's own address;
    from behind NAT, the clinic router's, which forwards TCP to the box), with their own extra
    `caller_args`.
    """
    lan = ",".join(f"{hosts[s.name].ip}/32" for s in seats if s.link is None)
    box_proc = lab.python_module(box, "harness.callbox", "--mode", mode, "--host",
                                 box.ip, "--lan", lan, *box_args, stdout=subprocess.PIPE,
                                 text=True, env=env)
    host_load = HostLoadSampler()
    try:
        port = _read_port(box_proc, timeout=30)
        late0, worst0, frames0 = _forwarder(lab)
        host_load.start()
        if on_start is not None:
            on_start()
        t0 = time.time()
        cpu0 = _cpu_seconds(box_proc.pid)
        procs = {}
        for index, seat in enumerate(seats):
            procs[seat.name] = lab.python_module(
                hosts[seat.name], "harness.caller",
                "--box", f"{(signal_addresses or {}).get(seat.name, box.ip)}:{port}",
                "--pid", seat.name, "--role", seat.role, "--clip", str(clip),
                "--t0", repr(t0), "--seconds", str(seconds),
                "--publish", ",".join(seat.publish), "--audio-slots", str(audio_slots),
                # Keyframes (one a second) spread evenly over the publishers.
                "--video-phase", str(index * VIDEO_FPS // len(seats)),
                "--video-slots", str(video_slots), *(["--quiet"] if seat.quiet else []),
                *(caller_args or {}).get(seat.name, []),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        reports, errors = {}, {}
        for name, proc in procs.items():
            try:
                out, err = proc.communicate(timeout=max(0.0, t0 + seconds - time.time()) + 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            lines = out.strip().splitlines()
            if proc.returncode == 0 and lines:
                reports[name] = json.loads(lines[-1])
            else:
                errors[name] = (err.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        cpu = _cpu_seconds(box_proc.pid) - cpu0
        late1, worst1, frames1 = _forwarder(lab)
    finally:
        host_load.stop()
        box_proc.kill()
        box_proc.wait()
    steal_pct, pressure_pct = host_load.per_second(t0)
    return CallRun(
        mode=mode, seats=seats, seconds=seconds, reports=reports,
        box_cpu_pct=round(100 * cpu / seconds, 1),
        forwarder_late_frames=late1 - late0,
        forwarder_max_late_ms=worst1 if worst1 > worst0 else 0.0,
        forwarder_frames=frames1 - frames0,
        errors=errors,
        steal_pct=steal_pct,
        cpu_pressure_pct=pressure_pct,
    )
