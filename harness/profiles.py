"""Link profiles: what one emulated link does to packets in each direction, over time.

A profile is a schedule of steps; each step gives the shape of the downlink (box -> host) and
the uplink (host -> box) from its start time until the next step. Constant profiles have one
step at t=0. Times are seconds since the profile was applied to the link.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

#: Default bound of a rate-limited queue, as time at the current rate. Real cellular buffers are
#: often larger (bufferbloat); 300 ms keeps the emulated queue honest without hiding delay.
DEFAULT_QUEUE_MS = 300.0


@dataclass(frozen=True)
class Shape:
    """What one direction of a link does to frames.

    rate_kbps counts whole Ethernet frames (header included); None means unlimited.
    loss is a fraction (0.01 = 1%); jitter_ms spreads the delay uniformly in +-jitter_ms
    without reordering; queue_ms bounds the queue in front of the rate limit.
    """

    rate_kbps: float | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    queue_ms: float = DEFAULT_QUEUE_MS

    def __post_init__(self) -> None:
        rate = self.rate_kbps
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate_kbps must be a positive number or None, not {self.rate_kbps}")
        for name in ("delay_ms", "jitter_ms", "queue_ms"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a non-negative number, not {value}")
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss is a fraction between 0 and 1, not {self.loss}")
        if self.jitter_ms > self.delay_ms:
            raise ValueError("jitter_ms cannot exceed delay_ms")


@dataclass(frozen=True)
class Step:
    """From at_s seconds on, the link has these shapes (or is cut when cut is true)."""

    at_s: float
    down: Shape
    up: Shape
    cut: bool = False


@dataclass(frozen=True)
class Profile:
    """A named schedule of steps, with the seed of its random loss and jitter."""

    name: str
    steps: tuple[Step, ...]
    seed: int = 1
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.steps or self.steps[0].at_s != 0:
            raise ValueError("a profile needs a first step at 0 s")
        times = [step.at_s for step in self.steps]
        if times != sorted(times) or len(set(times)) != len(times):
            raise ValueError("profile steps must have strictly increasing times")

    def step_at(self, elapsed_s: float) -> Step:
        """The step in force elapsed_s seconds after the profile was applied."""
        current = self.steps[0]
        for step in self.steps:
            if step.at_s <= elapsed_s:
                current = step
        return current

    def next_change(self, elapsed_s: float) -> float | None:
        """When (in elapsed seconds) the next step starts, or None after the last one."""
        for step in self.steps:
            if step.at_s > elapsed_s:
                return step.at_s
        return None

    def time_scaled(self, factor: float) -> Profile:
        """The same schedule run factor times as fast (factor 10: 40 s becomes 4 s)."""
        if not factor > 0:
            raise ValueError("time scale factor must be positive")
        steps = tuple(replace(step, at_s=step.at_s / factor) for step in self.steps)
        return replace(self, steps=steps, name=f"{self.name}/x{factor:g}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, sent to the emulator process."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """Rebuild a profile from to_dict() output; raises ValueError on bad input."""
        try:
            steps = tuple(
                Step(
                    at_s=float(s["at_s"]),
                    down=Shape(**s["down"]),
                    up=Shape(**s["up"]),
                    cut=bool(s.get("cut", False)),
                )
                for s in data["steps"]
            )
            return cls(
                name=str(data["name"]),
                steps=steps,
                seed=int(data.get("seed", 1)),
                description=str(data.get("description", "")),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad profile: {exc}") from exc


def custom(
    name: str = "custom",
    *,
    down_kbps: float | None = None,
    up_kbps: float | None = None,
    delay_ms: float = 0.0,
    jitter_ms: float = 0.0,
    loss: float = 0.0,
    queue_ms: float = DEFAULT_QUEUE_MS,
    seed: int = 1,
) -> Profile:
    """A constant profile: same delay, jitter and loss both ways, own rate per direction."""
    down = Shape(down_kbps, delay_ms, jitter_ms, loss, queue_ms)
    up = Shape(up_kbps, delay_ms, jitter_ms, loss, queue_ms)
    return Profile(name, (Step(0.0, down, up),), seed=seed)


def _stepped(name: str, rates_kbps: list[tuple[float, float]], delay_ms: float) -> Profile:
    steps = tuple(
        Step(at_s, Shape(kbps, delay_ms), Shape(kbps, delay_ms)) for at_s, kbps in rates_kbps
    )
    return Profile(name, steps, description="rate steps, same both ways")


#: Figures from public WebRTC test practice (see docs/weak-links.md).
THREE_G = replace(
    custom("3g", down_kbps=1200, up_kbps=1200, delay_ms=125, jitter_ms=25, loss=0.005),
    description="3G: 1.2 Mbps both ways, 125+-25 ms, 0.5% loss",
)
EDGE = replace(
    custom("edge", down_kbps=200, up_kbps=260, delay_ms=325, loss=0.01),
    description="EDGE: 200/260 kbps down/up, 325 ms, 1% loss",
)
GPRS = replace(
    custom("gprs", down_kbps=80, up_kbps=20, delay_ms=325, loss=0.01),
    description="GPRS: 80/20 kbps down/up, 325 ms, 1% loss",
)
#: RMCAT test case 5.1 (variable available capacity): 1 -> 2.5 -> 0.6 -> 1 Mbps.
RMCAT_5_1 = _stepped("rmcat-5.1", [(0, 1000), (40, 2500), (60, 600), (80, 1000)], 50)
#: No shaping at all: the forwarder only copies frames (its own cost and latency).
UNSHAPED = custom("unshaped")

NAMED: dict[str, Profile] = {p.name: p for p in (THREE_G, EDGE, GPRS, RMCAT_5_1, UNSHAPED)}


def by_name(name: str) -> Profile:
    """A named profile: 3g, edge, gprs, rmcat-5.1 or unshaped."""
    try:
        return NAMED[name]
    except KeyError:
        raise ValueError(f"unknown link profile {name!r}; known: {', '.join(NAMED)}") from None
