"""What each subscriber receives: its receive slots, filled from the room's publications.

Per subscriber, the others in its breakout room are ranked (pinned first, then facilitators,
the active speaker, who spoke last, who joined first). Video: per publisher, what its plan's
tier says (the publication itself, the publication's shared low tier or presence, nothing),
up to last-N and its video slots. Audio: the voices chosen for its breakout room (the K
loudest others, plus facilitators while speaking), or the room's mixed voices in one slot.
A slot keeps showing what it showed where it can; each change reaches the client as a
`slots` event.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from appliance.media.adaptation import AudioMode, Tier
from appliance.media.low_tier import LowTier
from appliance.media.mixer import RoomMixer
from appliance.media.participant import Participant
from appliance.media.publication import Publication
from appliance.media.slot import SlotTrack, Source
from appliance.media.voices import Voice, VoiceChoice


class Audience(Protocol):
    """What slot assignment reads of its room (`appliance.media.room.Room`)."""

    participants: dict[str, Participant]
    pinned: str | None
    speakers: dict[int, str]


class Subscriptions:
    """A room's receive slots: what each subscriber is shown and hears, and the shared low
    tiers and mixed voices made only while someone receives them."""

    def __init__(self, room: Audience, voices: int) -> None:
        self.room = room
        # Each subscriber hears the `voices` loudest others, plus the facilitator while
        # speaking (0: everyone it has slots for); chosen per breakout room on speaker ticks.
        self.voices = voices
        self._voice_choices: dict[int, VoiceChoice] = {}
        # Shared low tier and presence of each video publication someone needs them of.
        self.low_tiers: dict[Publication, LowTier] = {}
        self.mixer = RoomMixer()

    def choose_voices_afresh(self, now: float) -> None:
        """Breakout rooms changed: choose each room's voices again at once, so nobody waits a
        tick to be heard."""
        if self.voices > 0:
            self._voice_choices.clear()
            self.update_voices(now)

    async def close(self) -> None:
        """Stop the mixer and every low tier."""
        await self.mixer.close()
        for tier in self.low_tiers.values():
            await tier.stop()
        self.low_tiers.clear()

    def _video_rank(self, viewer: Participant) -> list[Participant]:
        others = [
            p
            for p in self.room.participants.values()
            if p is not viewer and p.breakout == viewer.breakout
        ]
        return sorted(
            others,
            key=lambda p: (
                p.id != self.room.pinned,
                not p.is_facilitator,
                p.id != self.room.speakers.get(viewer.breakout),
                -p.last_spoke,
                p.joined_at,
            ),
        )

    def assign_slots(self) -> None:
        """Fill each subscriber's slots: its plan's tier per publisher, most relevant first."""
        for viewer in list(self.room.participants.values()):
            before = viewer.slot_map()
            ranked = self._video_rank(viewer)
            video: list[Source] = []
            for p in ranked:
                source = self._video_source(viewer, p)
                if source is not None:
                    video.append(source)
            video = video[: min(viewer.last_n, len(viewer.video_slots))]
            audio_sources = [p for p in ranked if "audio" in p.publications]
            audio_sources.sort(key=lambda p: -p.publications["audio"].energy)
            if self.voices > 0:
                audio_sources = self._heard_by(viewer, audio_sources)
            audio: list[Source] = [
                p.publications["audio"] for p in audio_sources[: len(viewer.audio_slots)]
            ]
            if viewer.plan is not None and viewer.plan.audio is AudioMode.MIXED:
                audio = self._mixed_audio(viewer, audio)
            _fill(viewer.video_slots, video)
            _fill(viewer.audio_slots, audio)
            after = viewer.slot_map()
            if after != before:
                viewer.send({"type": "slots", **after})
        self._update_low_tiers()
        self._update_mixer()

    def _heard_by(self, viewer: Participant, candidates: list[Participant]) -> list[Participant]:
        """The voices `viewer` hears: the room's chosen, less its own, K plus facilitators."""
        choice = self._voice_choices.get(viewer.breakout)
        if choice is None:
            return []
        by_id = {p.id: p for p in candidates}
        others = [by_id[pid] for pid in choice.chosen if pid in by_id]
        leads = [p for p in others if p.is_facilitator]
        rest = [p for p in others if not p.is_facilitator][: self.voices]
        return sorted(rest + leads, key=lambda p: -p.publications["audio"].energy)

    def update_voices(self, now: float) -> bool:
        """Choose each breakout room's forwarded voices; True when a choice changed."""
        by_room: dict[int, list[Voice]] = {}
        for p in self.room.participants.values():
            audio = p.publications.get("audio")
            if audio is not None and not audio.muted:
                by_room.setdefault(p.breakout, []).append(
                    Voice(p.id, audio.energy, p.is_facilitator)
                )
        changed = False
        for room in set(by_room) | set(self._voice_choices):
            # One place more than K: a subscriber among the loudest hears the K others.
            choice = self._voice_choices.setdefault(room, VoiceChoice(self.voices + 1))
            before = list(choice.chosen)
            if choice.update(by_room.get(room, []), now) != before:
                changed = True
        return changed

    def _update_low_tiers(self) -> None:
        """Run each low tier only while a slot shows it; drop those of gone publications."""
        current = {pub for p in self.room.participants.values() for pub in p.publications.values()}
        for publication, tier in list(self.low_tiers.items()):
            if publication in current and any(o.slots for o in tier.outputs):
                tier.update()
                continue
            del self.low_tiers[publication]
            asyncio.get_running_loop().create_task(tier.stop())

    def _video_source(self, viewer: Participant, publisher: Participant) -> Source | None:
        """What `viewer` gets of `publisher`'s video under its plan (None: no video)."""
        publication = publisher.publications.get("video")
        if publication is None:
            return None
        if viewer.plan is None:
            # Not connected yet: video queued now would reach a weak link as one burst.
            return None
        tier = viewer.plan.tiers.get(publisher.id, Tier.AUDIO_ONLY)
        if tier is Tier.FORWARD:
            return publication
        if tier is Tier.AUDIO_ONLY:
            return None
        derived = self.low_tiers.get(publication)
        if derived is None:
            derived = self.low_tiers[publication] = LowTier(publication)
        return derived.low if tier is Tier.LOW else derived.presence

    def _mixed_audio(self, viewer: Participant, forwarded: list[Source]) -> list[Source]:
        """The mixed stream in the first audio slot, nothing in the others."""
        return [self.mixer.feed_for(viewer.id)] if viewer.audio_slots else []

    def _update_mixer(self) -> None:
        """Feeds only for subscribers mixed now; voices decoded only while a feed is shown."""
        for sub in list(self.mixer.feeds):
            viewer = self.room.participants.get(sub)
            if viewer is None or viewer.plan is None or viewer.plan.audio is not AudioMode.MIXED:
                self.mixer.release(sub)
        self.mixer.set_sources(
            [
                p.publications["audio"]
                for p in self.room.participants.values()
                if "audio" in p.publications
            ],
            {p.id: p.breakout for p in self.room.participants.values()},
        )


def _fill(slots: list[SlotTrack], wanted: list[Source]) -> None:
    """Show `wanted` in `slots`, keeping publications already shown where they are."""
    keep = {s.source for s in slots if s.source in wanted}
    pending = [p for p in wanted if p not in keep]
    for slot in slots:
        if slot.source in keep:
            continue
        slot.attach(pending.pop(0) if pending else None)
