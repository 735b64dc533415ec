"""The ladder of what a subscriber can receive from each publisher, what each rung costs,
who comes first, and the plain-language reasons shown to the user when a rung changes."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Tier(enum.IntEnum):
    """What a subscriber receives of one publisher's video (higher is better)."""

    AUDIO_ONLY = 0
    PRESENCE = 1  # a thumbnail at a very low frame rate
    LOW = 2  # the shared low tier: ~320x180 VP8, ~100-150 kbps, made once per publisher
    FORWARD = 3  # the publisher's own stream


class AudioMode(enum.Enum):
    """How a subscriber receives the others' voices."""

    FORWARDED = "forwarded"  # each publisher's Opus packets as sent
    MIXED = "mixed"  # one server-mixed Opus stream of everyone else (FEC, longer ptime)


class Reason(enum.Enum):
    """Why something changed, in words the client can show as they are."""

    VOICES_MIXED = "Voices combined into one stream to keep them clear on your connection"
    VOICES_SEPARATE = "Separate voices restored: your connection improved"
    VIDEO_LOWERED = "Video quality lowered to fit your connection"
    VIDEO_PRESENCE = "Video slowed to occasional pictures to protect your audio"
    VIDEO_PAUSED = "Video paused to protect your audio"
    VIDEO_PAUSED_LAST_N = "Video paused: showing only the most active people on your connection"
    VIDEO_PAUSED_CLINIC = "Video paused: the clinic's internet connection is busy"
    VIDEO_RESTORED = "Video restored: your connection improved"
    VIDEO_FULL = "Full video quality restored"
    CONNECTION_LOST = "Connection interrupted: waiting for it to come back"
    CONNECTION_BACK = "Connection restored"

    @property
    def text(self) -> str:
        """The sentence for the user."""
        return self.value


@dataclass(frozen=True)
class Costs:
    """Nominal downlink cost of each rung in bits per second, packet headers included.

    RTP/UDP/IP/SRTP headers and link framing are ~70 bytes a packet: 28 kbps at Opus's 20 ms
    ptime. Measured rates in the roster override the nominal ones.
    """

    audio_bps: int = 48_000  # Opus 16-24 kbps + 28 kbps of headers, per forwarded voice
    mixed_audio_bps: int = 48_000  # one mixed Opus stream: 20 kbps + headers at 20 ms ptime
    presence_bps: int = 40_000  # a 160x90 keyframe every second: ~20 kbps, planned as a burst
    low_bps: int = 85_000  # 320x180 VP8 at 72 kbps, 15 fps, + headers
    forward_bps: int = 550_000  # a browser capped near 640x360, 15 fps, ~500 kbps
    #: Share of an allowance the plan may fill; the rest absorbs RTCP, retransmits, bursts.
    fill: float = 0.9
    #: Most publishers whose video one subscriber gets (above presence).
    max_video: int = 6
    #: Below this allowance, no video at all, not even presence: every bit goes to voice.
    video_floor_bps: int = 120_000


@dataclass(frozen=True)
class Publisher:
    """One participant as far as what others receive of them is concerned.

    speaking_rank: 0 for the active speaker, 1 for the one before, ...; None if never spoke.
    audio_bps / video_bps: measured rates of their forwarded streams, when the SFU knows them.
    """

    id: str
    has_video: bool = True
    facilitator: bool = False
    speaking_rank: int | None = None
    audio_bps: int | None = None
    video_bps: int | None = None


def priority(publishers: list[Publisher]) -> list[Publisher]:
    """Who is served first: the facilitator, the active speaker, then by how recently they
    spoke, then the rest in a stable order."""
    return sorted(
        publishers,
        key=lambda p: (
            not p.facilitator,
            p.speaking_rank is None,
            p.speaking_rank if p.speaking_rank is not None else 0,
            p.id,
        ),
    )


def audio_cost(publishers: list[Publisher], costs: Costs) -> int:
    """Downlink cost of forwarding every one of these publishers' voices."""
    return sum(p.audio_bps if p.audio_bps is not None else costs.audio_bps for p in publishers)


def video_cost(publisher: Publisher, tier: Tier, costs: Costs) -> int:
    """Downlink cost of one publisher's video at a tier."""
    if tier is Tier.FORWARD:
        return publisher.video_bps if publisher.video_bps is not None else costs.forward_bps
    if tier is Tier.LOW:
        return costs.low_bps
    if tier is Tier.PRESENCE:
        return costs.presence_bps
    return 0
