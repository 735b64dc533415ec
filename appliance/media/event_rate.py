"""How fast one participant may send in-call events: token buckets per seat.

A participant's data channel reaches everyone in their room (and chat reaches the store), so
one page can otherwise relay hundreds of messages a second. Each seat gets a bucket for all
its events and a smaller one for chat; what overflows is dropped, and the sender is told
(once per `NOTICE_EVERY_S`) that some of their messages were not delivered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Any event: hand, self-mute, data saver, the facilitator's controls.
EVENTS_BURST = 20
EVENTS_PER_S = 5.0
# Chat: a handful at once, then one every two seconds (a person types slower than that).
CHAT_BURST = 5
CHAT_PER_S = 0.5
# Chat characters on top: five full messages at once, then a line a second or so.
CHAT_CHARS_BURST = 5000
CHAT_CHARS_PER_S = 60.0
NOTICE_EVERY_S = 10.0


@dataclass
class TokenBucket:
    """`burst` tokens, refilled at `per_s`; `take(n)` spends n when there are that many."""

    burst: float
    per_s: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    at: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.at = self.clock()

    def take(self, n: float = 1.0) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_s)
        self.at = now
        if self.tokens < n:
            return False
        self.tokens -= n
        return True


@dataclass
class EventRate:
    """One seat's limits; `allow(kind, size)` says whether an event may go through."""

    clock: Callable[[], float] = time.monotonic
    events: TokenBucket = field(init=False)
    chats: TokenBucket = field(init=False)
    chat_chars: TokenBucket = field(init=False)
    dropped: int = 0
    noticed_at: float = -NOTICE_EVERY_S

    def __post_init__(self) -> None:
        self.events = TokenBucket(EVENTS_BURST, EVENTS_PER_S, self.clock)
        self.chats = TokenBucket(CHAT_BURST, CHAT_PER_S, self.clock)
        self.chat_chars = TokenBucket(CHAT_CHARS_BURST, CHAT_CHARS_PER_S, self.clock)

    def allow(self, kind: object, size: int = 0) -> bool:
        ok = self.events.take()
        if ok and kind == "chat":
            ok = self.chats.take() and self.chat_chars.take(size)
        if not ok:
            self.dropped += 1
        return ok

    def should_notice(self) -> bool:
        """True at most once per `NOTICE_EVERY_S`: time to tell the sender of drops."""
        now = self.clock()
        if now - self.noticed_at < NOTICE_EVERY_S:
            return False
        self.noticed_at = now
        return True
