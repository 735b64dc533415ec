"""What a browser in a lab call got, read from its once-a-second `getStats()` samples.

The samples come from `harness/call_probe.js`: `{"t": epoch_s, "pc": n, "rows": [...]}`
with one row per receive slot (`mid`, `kind`, `who` the box says the slot shows, and the
inbound-rtp counters). Counters are cumulative per peer connection; a reconnect starts a new
one (`pc` grows), so differences are only taken between samples of the same connection.
All figures are over a window of epoch seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Sample = dict[str, Any]
#: What the box says an audio slot shows when it carries its mix of the others' voices.
MIX = "mix"


@dataclass(frozen=True)
class Step:
    """What one slot did between two consecutive samples of the same connection."""

    mid: str
    kind: str
    who: str | None  # whom the box said the slot showed at the end of the step
    seconds: float
    delta: dict[str, float]
    width: float


@dataclass(frozen=True)
class AudioFigures:
    concealed_pct: float  # concealedSamples / totalSamplesReceived, all slots heard
    longest_concealed_s: float
    jitter_buffer_ms: float | None  # jitterBufferDelay / jitterBufferEmittedCount
    heard_s: float  # seconds of audio received in the window
    # jitterBufferTargetDelay / jitterBufferEmittedCount: the delay the browser itself aims
    # for from the arrival jitter it sees (None where the browser does not report it). A
    # buffer near its target is inflated by packet timing; far above it, by something else.
    jitter_target_ms: float | None = None
    # The highest RFC 3550 interarrival jitter (getStats `jitter`: packet arrival against RTP
    # timestamp) a heard slot reported in the window: what the browser's target reacts to.
    arrival_jitter_ms: float | None = None


@dataclass(frozen=True)
class VideoFigures:
    fps: float  # framesDecoded per second, mean over the pictures the box showed
    min_fps: float  # the lowest of those pictures (a picture it should show and did not: 0)
    longest_freeze_s: float
    pictures: int  # slots that showed someone for at least half the window
    frame_width: int  # the widest picture decoded at the end of the window


def steps(samples: list[Sample], window: tuple[float, float]) -> list[Step]:
    """Per-slot differences between consecutive samples ending inside the window."""
    w0, w1 = window
    out: list[Step] = []
    ordered = sorted(samples, key=lambda s: s["t"])
    for before, after in zip(ordered, ordered[1:], strict=False):
        if before["pc"] != after["pc"] or not (w0 < after["t"] <= w1) or before["t"] < w0 - 2.5:
            continue
        seconds = after["t"] - max(before["t"], w0)
        share = seconds / (after["t"] - before["t"]) if after["t"] > before["t"] else 0.0
        earlier = {row["mid"]: row for row in before["rows"]}
        for row in after["rows"]:
            prior = earlier.get(row["mid"], {})
            delta = {
                key: max(0.0, float(value) - float(prior.get(key, 0))) * share
                for key, value in row.items()
                if isinstance(value, int | float) and not isinstance(value, bool)
            }
            out.append(
                Step(
                    row["mid"],
                    row["kind"],
                    row.get("who"),
                    seconds,
                    delta,
                    float(row.get("frameWidth", 0) or 0),
                )
            )
    return out


def audio(
    samples: list[Sample], window: tuple[float, float], from_whom: set[str] | None = None
) -> AudioFigures:
    """Audio played out by every slot showing someone (or one of `from_whom`, or the box's
    mix of voices, which carries them all)."""
    rows = [
        s
        for s in steps(samples, window)
        if s.kind == "audio" and s.who and (from_whom is None or s.who in from_whom | {MIX})
    ]
    total = sum(s.delta.get("totalSamplesReceived", 0.0) for s in rows)
    concealed = sum(s.delta.get("concealedSamples", 0.0) for s in rows)
    emitted = sum(s.delta.get("jitterBufferEmittedCount", 0.0) for s in rows)
    delay = sum(s.delta.get("jitterBufferDelay", 0.0) for s in rows)
    targeted = [s for s in rows if "jitterBufferTargetDelay" in s.delta]
    target = sum(s.delta["jitterBufferTargetDelay"] for s in targeted)
    target_emitted = sum(s.delta.get("jitterBufferEmittedCount", 0.0) for s in targeted)
    heard = sum(s.seconds for s in rows if s.delta.get("totalSamplesReceived", 0.0) > 0)
    heard_mids = {s.mid for s in rows if s.delta.get("totalSamplesReceived", 0.0) > 0}
    jitters = [
        float(row["jitter"])
        for sample in samples
        if window[0] < sample["t"] <= window[1]
        for row in sample["rows"]
        if row.get("kind") == "audio" and row.get("mid") in heard_mids and "jitter" in row
    ]
    # Nothing played at all: the whole window was silence where voices should have been.
    return AudioFigures(
        concealed_pct=round(100.0 * concealed / total, 2) if total else 100.0,
        longest_concealed_s=_longest_concealed(rows) if total else window[1] - window[0],
        jitter_buffer_ms=round(1000.0 * delay / emitted) if emitted else None,
        heard_s=round(heard, 1),
        jitter_target_ms=round(1000.0 * target / target_emitted) if target_emitted else None,
        arrival_jitter_ms=round(1000.0 * max(jitters), 1) if jitters else None,
    )


def _longest_concealed(rows: list[Step]) -> float:
    """The longest stretch of concealed audio in one slot, from per-second counters.

    A second with concealed samples but no new concealment event continues the stretch that
    was going on; a second with new events starts stretches of its mean length. Without
    `concealmentEvents` (not every browser has it) each second's concealed time counts alone.
    """
    longest = 0.0
    by_slot: dict[str, list[Step]] = {}
    for row in rows:
        by_slot.setdefault(row.mid, []).append(row)
    for slot_rows in by_slot.values():
        current = 0.0
        for row in slot_rows:
            got = row.delta.get("totalSamplesReceived", 0.0)
            hidden = row.delta.get("concealedSamples", 0.0)
            seconds = row.seconds * hidden / got if got else 0.0
            events = row.delta.get("concealmentEvents")
            if seconds <= 0:
                current = 0.0
            elif events is not None and events < 0.5 and current > 0:
                current += seconds
            else:
                current = seconds / events if events and events >= 1 else seconds
            longest = max(longest, current)
    return round(longest, 2)


def video(
    samples: list[Sample],
    window: tuple[float, float],
    expected: int = 0,
    from_whom: set[str] | None = None,
) -> VideoFigures:
    """Video decoded in the slots showing someone (or one of `from_whom`); `expected` is how
    many pictures the page should show (missing ones count as 0 fps and a whole-window
    freeze)."""
    w0, w1 = window
    length = w1 - w0
    rows = [
        s
        for s in steps(samples, window)
        if s.kind == "video" and s.who and (from_whom is None or s.who in from_whom)
    ]
    by_slot: dict[str, list[Step]] = {}
    for row in rows:
        by_slot.setdefault(row.mid, []).append(row)
    rates, freezes, widths = [], [], []
    for slot_rows in by_slot.values():
        shown = sum(r.seconds for r in slot_rows)
        if shown < length / 2:
            continue
        frames = sum(r.delta.get("framesDecoded", 0.0) for r in slot_rows)
        rates.append(frames / shown)
        # Freezes the browser counted (each is added when it ends), and a picture standing
        # still until the window ends (not counted by the browser yet).
        worst, still = 0.0, 0.0
        for r in slot_rows:
            count = r.delta.get("freezeCount", 0.0)
            if count >= 1:
                worst = max(worst, r.delta.get("totalFreezesDuration", 0.0) / count)
            still = still + r.seconds if r.delta.get("framesDecoded", 0.0) < 0.5 else 0.0
            worst = max(worst, still)
        freezes.append(worst)
        widths.append(slot_rows[-1].width)
    shown_rates = rates + [0.0] * max(0, expected - len(rates))
    if len(rates) < expected or not rates:
        freezes.append(length)
    return VideoFigures(
        fps=round(sum(rates) / len(rates), 1) if rates else 0.0,
        min_fps=round(min(shown_rates), 1) if shown_rates else 0.0,
        longest_freeze_s=round(max(freezes), 1),
        pictures=len(rates),
        frame_width=int(max(widths, default=0)),
    )


def notices_in(notices: list[list[Any]], window: tuple[float, float]) -> int:
    """Reconnect notices (banner or tile) the page showed between the window's times."""
    return sum(1 for t, _ in notices if window[0] <= t < window[1])
