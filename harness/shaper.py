"""One direction of an emulated link as pure logic: loss, a rate-limited queue, delay, cuts.

The shaper never reads a clock or touches a socket: the emulator hands it frames with the time
they arrived and asks it which frames are due. That keeps the packet path testable without
namespaces and lets the emulator sleep exactly until the next deadline.

Order of effects for a frame: cut -> random loss -> bounded FIFO -> serialization at the rate
(a token bucket one frame deep: pacing, never a burst above the rate) -> one-way delay with
jitter (never reordering) -> out. A frame of S bytes thus arrives S*8/rate after it started to
leave, plus the delay, as on a real link.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from harness.profiles import Shape

#: Largest frame on these links (1500-byte MTU plus the Ethernet header).
MAX_FRAME = 1514


@dataclass
class DirectionStats:
    """Counters of one direction since the link was added."""

    offered: int = 0
    delivered: int = 0
    delivered_bytes: int = 0
    dropped_loss: int = 0
    dropped_queue: int = 0
    dropped_cut: int = 0
    max_queue_bytes: int = 0


class DirectionShaper:
    """Shapes the frames going one way over one link."""

    def __init__(self, shape: Shape, rng: random.Random, now: float) -> None:
        self._rng = rng
        self._queue: deque[tuple[float, bytes]] = deque()  # (arrival time, frame)
        self._queued_bytes = 0
        self._in_flight: deque[tuple[float, bytes]] = deque()  # (arrival at the far end, frame)
        self._express: list[bytes] = []
        self._free_at = now  # when the wire finishes the frame it is sending
        self._last_release = now
        self._cut = False
        self.stats = DirectionStats()
        self.shape = shape

    # -- configuration -------------------------------------------------------------------

    def configure(self, shape: Shape, now: float) -> None:
        """Apply a new shape from now on; the queue is trimmed to the new bound."""
        self._serve(now)  # frames that were due under the old rate leave under it
        self.shape = shape
        limit = self._queue_limit()
        # Trimming avoids the slow drain of a queue sized for the old, higher rate.
        while self._queue and self._queued_bytes > limit:
            self._queued_bytes -= len(self._queue.pop()[1])
            self.stats.dropped_queue += 1

    def reseed(self, seed: float) -> None:
        """Restart the random sequence of loss and jitter."""
        self._rng.seed(seed)

    def set_cut(self, cut: bool, now: float) -> None:
        """Cut the link (drop what waits, what is in flight and what arrives) or restore it."""
        self._serve(now)
        if cut and not self._cut:
            # Down means down: what waits and what is on its way are both lost.
            self.stats.dropped_cut += len(self._queue) + len(self._in_flight)
            self._queue.clear()
            self._in_flight.clear()
            self._queued_bytes = 0
            self._free_at = min(self._free_at, now)
        self._cut = cut

    @property
    def is_cut(self) -> bool:
        """Whether the link is cut in this direction."""
        return self._cut

    # -- packet path ---------------------------------------------------------------------

    def offer(self, frame: bytes, now: float, *, exempt: bool = False) -> None:
        """A frame arrived at now. exempt frames (ARP) skip loss, rate and delay, not cuts."""
        self.stats.offered += 1
        if self._cut:
            self.stats.dropped_cut += 1
            return
        if exempt:
            # ARP exists only because the lab emulates at layer 2; a real cellular link has
            # none, so it must not pay the link's delay or loss.
            self._express.append(frame)
            return
        # Loss decided on arrival: a lost frame takes no capacity, and the draw sequence
        # depends only on the order of arrivals, so a seed replays the same losses.
        if self.shape.loss and self._rng.random() < self.shape.loss:
            self.stats.dropped_loss += 1
            return
        if self.shape.rate_kbps is None:
            self._launch(frame, now)
            return
        self._serve(now)
        if self._queued_bytes + len(frame) > self._queue_limit():
            self.stats.dropped_queue += 1
            return
        self._queue.append((now, frame))
        self._queued_bytes += len(frame)
        self.stats.max_queue_bytes = max(self.stats.max_queue_bytes, self._queued_bytes)
        self._serve(now)

    def due(self, now: float) -> list[bytes]:
        """Frames whose time to leave has come, in order."""
        self._serve(now)
        out, self._express = self._express, []
        while self._in_flight and self._in_flight[0][0] <= now:
            out.append(self._in_flight.popleft()[1])
        self.stats.delivered += len(out)
        self.stats.delivered_bytes += sum(len(frame) for frame in out)
        return out

    def next_deadline(self) -> float | None:
        """The earliest time something changes: a frame due out, or the queue head's turn."""
        deadlines = []
        if self._express:
            return float("-inf")
        if self._in_flight:
            deadlines.append(self._in_flight[0][0])
        if self._queue and self.shape.rate_kbps is not None:
            deadlines.append(self._head_done())
        return min(deadlines) if deadlines else None

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting for the rate limit."""
        return self._queued_bytes

    # -- internals -----------------------------------------------------------------------

    def _bytes_per_s(self) -> float:
        assert self.shape.rate_kbps is not None
        return self.shape.rate_kbps * 1000.0 / 8.0

    def _queue_limit(self) -> float:
        if self.shape.rate_kbps is None:
            return float("inf")
        return max(self._bytes_per_s() * self.shape.queue_ms / 1000.0, 2 * MAX_FRAME)

    def _head_done(self) -> float:
        """When the queue's first frame has been serialized onto the wire."""
        arrived, frame = self._queue[0]
        return max(self._free_at, arrived) + len(frame) / self._bytes_per_s()

    def _serve(self, now: float) -> None:
        """Move frames from the queue onto the wire as the rate allows."""
        if self.shape.rate_kbps is None:
            while self._queue:
                arrived, frame = self._queue.popleft()
                self._queued_bytes -= len(frame)
                self._launch(frame, arrived)
            return
        while self._queue:
            done = self._head_done()
            if done > now:
                break
            # Departures are accounted at the exact time the rate allowed them, so a forwarder
            # that woke up late neither delays the frame further nor loses capacity.
            self._free_at = done
            frame = self._queue.popleft()[1]
            self._queued_bytes -= len(frame)
            self._launch(frame, done)

    def _launch(self, frame: bytes, sent_at: float) -> None:
        """Put a frame on the wire at sent_at: it arrives after the one-way delay."""
        delay = self.shape.delay_ms
        if self.shape.jitter_ms:
            delay += self._rng.uniform(-self.shape.jitter_ms, self.shape.jitter_ms)
        arrive = max(sent_at + delay / 1000.0, self._last_release)
        self._last_release = arrive
        self._in_flight.append((arrive, frame))
