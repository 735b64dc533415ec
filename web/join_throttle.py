"""How fast session codes may be tried: per client, per group session and box-wide.

A wrong code costs its client one of `PER_CLIENT` tries per window. When the whole box has
seen `BOX_WIDE` wrong codes in a window (many addresses guessing at once), only clients with
no wrong code of their own in that window may still try, so a patient typing the code right
the first time gets in while the guessers wait. A right code counts against its group
session (`PER_SESSION` uses a window, far above any group's size), so a leaked code cannot
fill the waiting room. Memory is bounded: at most `MAX_KEYS` clients and sessions are
remembered, the least recently seen forgotten first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from flask import Flask, current_app

WINDOW_S = 600.0
PER_CLIENT = 10
BOX_WIDE = 200
PER_SESSION = 60
MAX_KEYS = 4096


class WindowCounter:
    """Events per key in fixed windows of `window_s`, for at most `max_keys` keys."""

    def __init__(
        self,
        window_s: float,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        # key -> (window start, count); ordered from least to most recently touched.
        self._counts: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def _current(self, key: str) -> tuple[float, int]:
        now = self._clock()
        start, count = self._counts.get(key, (now, 0))
        if now - start >= self.window_s:
            start, count = now, 0
        return start, count

    def count(self, key: str) -> int:
        """Events of `key` in its current window."""
        return self._current(key)[1]

    def add(self, key: str) -> int:
        """Count one event of `key`; returns the window's count so far."""
        start, count = self._current(key)
        self._counts[key] = (start, count + 1)
        self._counts.move_to_end(key)
        while len(self._counts) > self.max_keys:
            self._counts.popitem(last=False)
        return count + 1

    def wait_s(self, key: str) -> int:
        """Whole seconds until `key`'s window ends (at least 1)."""
        start, _count = self._current(key)
        return max(1, int(self.window_s - (self._clock() - start)) + 1)

    def __len__(self) -> int:
        return len(self._counts)


class JoinThrottle:
    """The portal's session-code throttle; safe to use from the WSGI threads."""

    BOX = "*"

    def __init__(
        self,
        per_client: int = PER_CLIENT,
        box_wide: int = BOX_WIDE,
        per_session: int = PER_SESSION,
        window_s: float = WINDOW_S,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_client, self.box_wide, self.per_session = per_client, box_wide, per_session
        self._failures = WindowCounter(window_s, max_keys, clock)
        self._uses = WindowCounter(window_s, max_keys, clock)
        self._lock = threading.Lock()

    def refusal(self, client: str) -> int | None:
        """Seconds `client` must wait before trying a code, or None when it may try now."""
        with self._lock:
            mine = self._failures.count(client)
            if mine >= self.per_client:
                return self._failures.wait_s(client)
            if mine and self._failures.count(self.BOX) >= self.box_wide:
                return self._failures.wait_s(self.BOX)
            return None

    def wrong_code(self, client: str) -> None:
        with self._lock:
            self._failures.add(client)
            self._failures.add(self.BOX)

    def use(self, session_id: str) -> int | None:
        """Count a right code for `session_id`; seconds to wait when it was used too often."""
        with self._lock:
            key = f"session:{session_id}"
            if self._uses.count(key) >= self.per_session:
                return self._uses.wait_s(key)
            self._uses.add(key)
            return None

    def remembered(self) -> int:
        """Keys held (for tests of the memory bound)."""
        with self._lock:
            return len(self._failures) + len(self._uses)


def init_app(app: Flask) -> None:
    app.extensions["clinicbox.join_throttle"] = JoinThrottle()


def join_throttle() -> JoinThrottle:
    """The app's `JoinThrottle`."""
    return current_app.extensions["clinicbox.join_throttle"]
