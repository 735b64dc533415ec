"""The asyncio loop thread that owns aiortc, zeroconf and the sync agent.

Flask views run on the WSGI server's threads; they hand coroutines to this loop with
`MediaLoop.call` (run_coroutine_threadsafe) and never block it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
ShutdownHook = Callable[[], Awaitable[None]]

_LAG_PROBE_INTERVAL_S = 0.25


class MediaLoop:
    """One asyncio event loop on its own thread, with a lag probe and ordered shutdown hooks."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="media-loop", daemon=True)
        self._hooks: list[ShutdownHook] = []
        self._lag_ms = 0.0
        self._last_probe = 0.0
        self._probe_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._thread.start()
        self.call(self._start_probe(), timeout=5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _start_probe(self) -> None:
        self._last_probe = time.monotonic()
        self._probe_task = asyncio.get_running_loop().create_task(self._probe_lag())

    async def _probe_lag(self) -> None:
        # The loop's lag is how late a short sleep wakes up: a blocked loop shows up here.
        while True:
            started = time.monotonic()
            await asyncio.sleep(_LAG_PROBE_INTERVAL_S)
            now = time.monotonic()
            self._lag_ms = max(0.0, (now - started - _LAG_PROBE_INTERVAL_S) * 1000.0)
            self._last_probe = now

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run `coro` on the loop from another thread and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"media loop did not answer within {timeout:.1f}s") from None

    def on_shutdown(self, hook: ShutdownHook) -> None:
        """Register a coroutine function run (in reverse order) when the loop stops."""
        self._hooks.append(hook)

    @property
    def alive(self) -> bool:
        # Alive means the thread runs and the lag probe ticked recently.
        stale = time.monotonic() - self._last_probe > 5 * _LAG_PROBE_INTERVAL_S + 2.0
        return self._thread.is_alive() and self.loop.is_running() and not stale

    @property
    def lag_ms(self) -> float:
        if not self._thread.is_alive():
            return float("nan")
        pending = (time.monotonic() - self._last_probe - _LAG_PROBE_INTERVAL_S) * 1000.0
        return round(max(self._lag_ms, pending, 0.0), 2)

    async def _shutdown(self) -> None:
        for hook in reversed(self._hooks):
            try:
                await hook()
            except Exception as exc:  # one failing hook must not keep the others from running
                log.warning("shutdown hook %s failed: %s", getattr(hook, "__qualname__", hook), exc)
        if self._probe_task is not None:
            self._probe_task.cancel()
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def stop(self, timeout: float = 3.0) -> None:
        """Run shutdown hooks, cancel remaining tasks and stop the thread, within `timeout`."""
        if not self._thread.is_alive():
            return
        try:
            self.call(self._shutdown(), timeout=timeout)
        except TimeoutError:
            log.warning("media loop shutdown took longer than %.1fs; stopping anyway", timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=1.0)
        if not self._thread.is_alive():
            self.loop.close()
