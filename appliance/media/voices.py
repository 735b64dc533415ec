"""Which voices a subscriber hears: the K loudest, and the facilitator while speaking.

In a 12-person room everyone hearing everyone is 132 forwarded audio streams, most of them
silence. Forwarding each subscriber the K loudest voices (K=3, as conferencing servers do)
plus the facilitator while they speak cuts that to about 36. Loudness is the publication's
smoothed speech energy (the audio-level header extension where the publisher sends it, the
Opus packet size otherwise). Hysteresis keeps a voice from being cut mid-word: once chosen,
a voice stays until it has been quiet for `HOLD_S`, and a newcomer takes a full place only
from a voice that has gone quiet.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_VOICES = 3
# A voice counts as speaking at this smoothed energy (0 silent .. 1 loud).
SPEAKING_ENERGY = 0.2
# How long a chosen voice stays after it was last speaking: longer than a pause between words.
HOLD_S = 1.5


@dataclass(frozen=True)
class Voice:
    """One audio publication as the choice sees it."""

    participant_id: str
    energy: float
    facilitator: bool = False


class VoiceChoice:
    """The voices forwarded in one room (or breakout room), kept between ticks."""

    def __init__(self, k: int = DEFAULT_VOICES, hold_s: float = HOLD_S) -> None:
        self.k = max(1, k)
        self.hold_s = hold_s
        self.chosen: list[str] = []
        self._spoke_at: dict[str, float] = {}

    def update(self, voices: list[Voice], now: float) -> list[str]:
        """The participant ids to forward now, loudest first (facilitator beyond K)."""
        present = {v.participant_id: v for v in voices}
        for voice in voices:
            if voice.energy >= SPEAKING_ENERGY:
                self._spoke_at[voice.participant_id] = now
        for pid in list(self._spoke_at):
            if pid not in present:
                del self._spoke_at[pid]

        def recent(pid: str) -> bool:
            return now - self._spoke_at.get(pid, float("-inf")) <= self.hold_s

        # Chosen voices still within their hold keep their places; the loudest of the rest
        # fill what is free; then, while places remain, those heard most recently, so a room
        # where nobody talks now still carries its last speakers.
        kept = [pid for pid in self.chosen if pid in present and recent(pid)]
        by_energy = sorted(present.values(), key=lambda v: -v.energy)
        for voice in by_energy:
            if len(kept) >= self.k:
                break
            if voice.participant_id not in kept and recent(voice.participant_id):
                kept.append(voice.participant_id)
        by_recency = sorted(
            (pid for pid in present if pid not in kept and pid in self._spoke_at),
            key=lambda pid: -self._spoke_at[pid],
        )
        kept += by_recency[: max(0, self.k - len(kept))]
        # Places still free go to the others present (silent, so nearly free with DTX): a
        # small group hears everyone, and nobody's first word waits for a tick.
        kept += [v.participant_id for v in by_energy if v.participant_id not in kept][
            : max(0, self.k - len(kept))
        ]
        kept.sort(key=lambda pid: -present[pid].energy)
        for voice in voices:
            if (
                voice.facilitator
                and recent(voice.participant_id)
                and (voice.participant_id not in kept)
            ):
                kept.append(voice.participant_id)  # beyond K: the group hears who leads it
        self.chosen = kept
        return list(kept)
