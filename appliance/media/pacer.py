"""Pacing of one remote subscriber's video to what its link carries; voice never waits.

A forwarded keyframe leaves the box as one burst of packets. On EDGE (200 kbps, a 300 ms
queue) a 5 KB picture holds everything behind it for 200 ms, so a voice packet that follows
arrives too late to be played even though the link is far from full on average. The pacer
sits on the subscriber's (bundled) DTLS transport: voice and RTCP go out at once, video
packets leave no faster than the rate adaptation allows, and voice bytes count against that
rate too, so the link's own queue stays short.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import is_rtcp

from appliance.media.aiortc_glue.transport import unwrap_transport_send, wrap_transport_send

log = logging.getLogger(__name__)

# Bytes that may leave at once above the rate: a few packets, not a picture.
BURST_S = 0.03
# Video waiting longer than this is stale; the oldest is dropped (the subscriber asks for a
# keyframe when it notices the hole). Rare: the pacer runs above what the plan sends.
MAX_QUEUE_S = 2.0
MIN_RATE_BPS = 32_000
# What a packet handed to the transport gains before it reaches the link: SRTP tag 10, UDP 8,
# IPv4 20, Ethernet 14. At 50 voice packets a second that is 21 kbps the pacer must count,
# or it lets a weak link's queue grow while it believes itself under the rate.
WIRE_BYTES = 52


class Pacer:
    """Token-bucket pacing of one transport's video packets."""

    def __init__(self, transport: RTCDtlsTransport, video_ssrcs: set[int],
                 rate_bps: float) -> None:
        self.transport = transport
        self.video_ssrcs = video_ssrcs
        self.rate_bps = max(MIN_RATE_BPS, rate_bps)
        self.dropped = 0
        self.delayed = 0
        self.wire_bytes_out = 0  # what has left for the link, voice and RTCP included
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._tokens = 0.0
        self._last = asyncio.get_running_loop().time()
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._send: Callable[[bytes], Awaitable[None]] = wrap_transport_send(transport, self.send)

    def set_rate(self, rate_bps: float) -> None:
        self.rate_bps = max(MIN_RATE_BPS, rate_bps)

    async def send(self, data: bytes) -> None:
        """Where the subscriber's senders hand their packets."""
        self._refill()
        if is_rtcp(data) or len(data) < 12 or int.from_bytes(data[8:12]) not in self.video_ssrcs:
            self._tokens -= len(data) + WIRE_BYTES  # voice counts but never waits
            self.wire_bytes_out += len(data) + WIRE_BYTES
            await self._send(data)
            return
        self._queue.append(data)
        self._queued_bytes += len(data)
        limit = self.rate_bps / 8 * MAX_QUEUE_S
        while self._queued_bytes > limit and len(self._queue) > 1:
            self._queued_bytes -= len(self._queue.popleft())
            self.dropped += 1
        self._wake.set()

    def _refill(self) -> None:
        now = asyncio.get_running_loop().time()
        burst = self.rate_bps / 8 * BURST_S
        self._tokens = min(burst, self._tokens + (now - self._last) * self.rate_bps / 8)
        self._last = now

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._refill()
            if self._tokens < 0:
                # In debt (tokens may go below zero by one packet): wait until it is paid.
                self.delayed += 1
                await asyncio.sleep(-self._tokens * 8 / self.rate_bps)
                continue
            data = self._queue.popleft()
            self._queued_bytes -= len(data)
            self._tokens -= len(data) + WIRE_BYTES
            self.wire_bytes_out += len(data) + WIRE_BYTES
            try:
                await self._send(data)
            except ConnectionError:
                self._queue.clear()
                self._queued_bytes = 0

    async def stop(self) -> None:
        """Give the transport its own send back and stop (queued video is dropped)."""
        unwrap_transport_send(self.transport, self.send, self._send)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._queue.clear()
