"""One subscriber's plan over time: downgrades at once, upgrades only once they have been
wanted for a while, and every change announced with a plain reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.media.adaptation.allocation import Limit, Plan
from appliance.media.adaptation.ladder import AudioMode, Reason, Tier


@dataclass(frozen=True)
class Notice:
    """A change to announce to one subscriber's client.

    publisher is None for changes to audio as a whole or to the connection.
    """

    subscriber: str
    publisher: str | None
    old: str
    new: str
    reason: Reason

    def event(self) -> dict[str, Any]:
        """The event sent to the client (ids only: the client knows the names)."""
        return {
            "type": "quality",
            "publisher": self.publisher,
            "from": self.old,
            "to": self.new,
            "code": self.reason.name.lower(),
            "reason": self.reason.text,
        }


class SubscriberPolicy:
    """Applies target plans to one subscriber with time hysteresis, and says why.

    A target that lowers anything applies at once (protecting audio cannot wait). A target
    that raises something applies once targets have asked for it for upgrade_hold_s without
    interruption (judged per publisher, and for audio); video also at once during a probe,
    since the probe itself is the test (voices are never unmixed on a probe's word). Notices
    compare what the client was last told with the plan now, and are held back during a probe
    (a failed probe then says nothing) and while the connection is interrupted.
    """

    def __init__(self, subscriber: str, upgrade_hold_s: float = 3.0) -> None:
        self.subscriber = subscriber
        self.upgrade_hold_s = upgrade_hold_s
        self.plan = Plan()
        self._told = Plan()
        self._wanted_since: dict[str | None, float] = {}
        self._connection_lost = False

    def apply(self, now: float, target: Plan, *, probing: bool = False,
              announce: bool = True) -> list[Notice]:
        """Move towards target; returns the notices for what changed since the last ones."""
        audio = self.plan.audio
        if probing:
            pass  # never on a probe's word, and a probe neither starts nor ends the wish
        elif target.audio is audio:
            self._wanted_since.pop(None, None)
        elif target.audio is AudioMode.MIXED or self._held(None, now):
            audio = target.audio
            self._wanted_since.pop(None, None)
        tiers: dict[str, Tier] = {}
        for pub, want in target.tiers.items():
            have = self.plan.tiers.get(pub)
            if have is None or want <= have or probing or self._held(pub, now):
                tiers[pub] = want
                self._wanted_since.pop(pub, None)
            else:
                tiers[pub] = have
        for key in [k for k in self._wanted_since if k is not None and k not in target.tiers]:
            del self._wanted_since[key]
        self.plan = Plan(audio, tiers, dict(target.limits), target.used_bps)
        if not announce or probing:
            return []
        notices = []
        if self._connection_lost:
            # Clears the "interrupted" notice on the client: nothing else might replace it
            # (a plan that is what it was says nothing), and it stayed up for a whole call.
            notices.append(self._notice(None, "interrupted", "connected", Reason.CONNECTION_BACK))
        self._connection_lost = False
        notices += self._changes()
        self._told = Plan(audio, dict(tiers), dict(target.limits), target.used_bps)
        return notices

    def connection_lost(self) -> list[Notice]:
        """The link went silent: say so once (the plan itself is handled by the caller)."""
        if self._connection_lost:
            return []
        self._connection_lost = True
        return [self._notice(None, "connected", "interrupted", Reason.CONNECTION_LOST)]

    def _changes(self) -> list[Notice]:
        told, plan = self._told, self.plan
        notices = []
        if plan.audio is not told.audio:
            reason = (Reason.VOICES_MIXED if plan.audio is AudioMode.MIXED
                      else Reason.VOICES_SEPARATE)
            notices.append(self._notice(None, told.audio.value, plan.audio.value, reason))
        for pub, tier in plan.tiers.items():
            before = told.tiers.get(pub)
            limit = plan.limits.get(pub)
            if before is None:
                # Someone new: only worth a word if they arrive below full quality.
                if tier < Tier.FORWARD and limit is not None:
                    notices.append(self._notice(pub, "none", tier.name.lower(),
                                                _video_reason(Tier.FORWARD, tier, limit)))
            elif tier != before:
                notices.append(self._notice(pub, before.name.lower(), tier.name.lower(),
                                            _video_reason(before, tier, limit)))
        return notices

    def _held(self, key: str | None, now: float) -> bool:
        since = self._wanted_since.setdefault(key, now)
        return now - since >= self.upgrade_hold_s

    def _notice(self, pub: str | None, old: str, new: str, reason: Reason) -> Notice:
        return Notice(self.subscriber, pub, old, new, reason)


def _video_reason(old: Tier, new: Tier, limit: Limit | None) -> Reason:
    if new > old:
        return Reason.VIDEO_FULL if new is Tier.FORWARD else Reason.VIDEO_RESTORED
    if new is Tier.LOW:
        return Reason.VIDEO_LOWERED
    if new is Tier.PRESENCE:
        return Reason.VIDEO_PRESENCE
    if limit is Limit.LAST_N:
        return Reason.VIDEO_PAUSED_LAST_N
    if limit is Limit.CLINIC:
        return Reason.VIDEO_PAUSED_CLINIC
    return Reason.VIDEO_PAUSED
