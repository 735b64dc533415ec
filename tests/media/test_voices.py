"""The K loudest voices, with hysteresis, plus the facilitator while speaking."""

from __future__ import annotations

from appliance.media.voices import HOLD_S, Voice, VoiceChoice


def test_the_k_loudest_are_chosen_loudest_first() -> None:
    choice = VoiceChoice(k=3)
    voices = [Voice(f"p{i}", energy) for i, energy in enumerate([0.3, 0.9, 0.05, 0.6, 0.4, 0.5])]
    assert choice.update(voices, now=0.0) == ["p1", "p3", "p5"]


def test_a_chosen_voice_is_not_cut_mid_word_by_a_louder_one() -> None:
    choice = VoiceChoice(k=2)
    choice.update([Voice("a", 0.5), Voice("b", 0.4), Voice("c", 0.0)], now=0.0)
    # c starts louder than both while a and b are still within their hold: both keep talking.
    assert set(choice.update([Voice("a", 0.3), Voice("b", 0.3), Voice("c", 0.9)], now=0.5)) == {
        "a",
        "b",
    }
    # b pauses (quiet) but within the hold: still kept.
    assert "b" in choice.update([Voice("a", 0.3), Voice("b", 0.0), Voice("c", 0.9)], now=1.0)
    # b quiet for longer than the hold: c takes its place.
    later = 1.0 + HOLD_S + 0.1
    assert set(choice.update([Voice("a", 0.3), Voice("b", 0.0), Voice("c", 0.9)], now=later)) == {
        "a",
        "c",
    }


def test_the_facilitator_is_heard_beyond_k_while_speaking_only() -> None:
    choice = VoiceChoice(k=2)
    voices = [Voice("a", 0.9), Voice("b", 0.8), Voice("lead", 0.3, facilitator=True)]
    assert choice.update(voices, now=0.0) == ["a", "b", "lead"]
    quiet = [Voice("a", 0.9), Voice("b", 0.8), Voice("lead", 0.0, facilitator=True)]
    assert choice.update(quiet, now=HOLD_S + 1) == ["a", "b"]


def test_free_places_go_to_recent_speakers_then_to_anyone_present() -> None:
    choice = VoiceChoice(k=2)
    silent = [Voice(pid, 0.0) for pid in "bcde"]
    # Only a speaks: the second place goes to someone silent (a small group hears everyone).
    assert choice.update([Voice("a", 0.5), *silent], now=0.0) == ["a", "b"]
    # Later e speaks once and everyone falls quiet: the two last speakers keep the places.
    choice.update([Voice("a", 0.0), *silent[:3], Voice("e", 0.6)], now=5.0)
    assert set(choice.update([Voice("a", 0.0), *silent], now=20.0)) == {"a", "e"}
    # Someone who left is forgotten.
    assert choice.update([Voice("b", 0.0)], now=21.0) == ["b"]
