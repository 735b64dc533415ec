"""SubscriberPolicy: down at once, up once held, and a plain reason for every change."""

from __future__ import annotations

from appliance.media.adaptation import (
    AudioMode,
    Limit,
    Plan,
    Reason,
    SubscriberPolicy,
    Tier,
)


def plan(audio: AudioMode = AudioMode.FORWARDED, limits: dict | None = None, **tiers) -> Plan:
    return Plan(audio, {k: Tier[v] for k, v in tiers.items()}, limits or {})


def test_downgrades_apply_at_once_with_reasons():
    policy = SubscriberPolicy("me")
    assert policy.apply(0.0, plan(a="FORWARD", b="FORWARD")) == []
    notices = policy.apply(1.0, plan(AudioMode.MIXED, {"b": Limit.LINK}, a="LOW",
                                     b="AUDIO_ONLY"))
    by_pub = {n.publisher: n for n in notices}
    assert by_pub[None].reason is Reason.VOICES_MIXED
    assert by_pub["a"].reason is Reason.VIDEO_LOWERED
    assert by_pub["b"].reason is Reason.VIDEO_PAUSED
    assert by_pub["b"].reason.text == "Video paused to protect your audio"
    assert policy.plan.tiers == {"a": Tier.LOW, "b": Tier.AUDIO_ONLY}


def test_upgrades_wait_until_wanted_for_the_hold_time():
    policy = SubscriberPolicy("me", upgrade_hold_s=3.0)
    policy.apply(0.0, plan(AudioMode.MIXED, a="AUDIO_ONLY"))
    assert policy.apply(1.0, plan(a="LOW")) == []
    assert policy.apply(3.0, plan(a="LOW")) == []
    notices = policy.apply(4.0, plan(a="LOW"))
    assert {n.reason for n in notices} == {Reason.VOICES_SEPARATE, Reason.VIDEO_RESTORED}
    assert policy.plan.tiers["a"] is Tier.LOW and policy.plan.audio is AudioMode.FORWARDED


def test_an_interrupted_wish_restarts_the_hold():
    policy = SubscriberPolicy("me", upgrade_hold_s=3.0)
    policy.apply(0.0, plan(a="LOW"))
    policy.apply(1.0, plan(a="FORWARD"))
    policy.apply(2.0, plan(a="LOW"))  # the estimate dipped: the wish ends
    policy.apply(3.0, plan(a="FORWARD"))
    assert policy.apply(5.0, plan(a="FORWARD")) == []
    assert [n.reason for n in policy.apply(6.0, plan(a="FORWARD"))] == [Reason.VIDEO_FULL]


def test_probes_apply_at_once_and_say_nothing_unless_they_stick():
    policy = SubscriberPolicy("me")
    policy.apply(0.0, plan(a="LOW"))
    assert policy.apply(1.0, plan(a="FORWARD"), probing=True) == []
    assert policy.plan.tiers["a"] is Tier.FORWARD
    assert policy.apply(2.0, plan(a="LOW")) == []  # failed probe: back where the user was told
    policy.apply(3.0, plan(a="FORWARD"), probing=True)
    notices = policy.apply(4.0, plan(a="FORWARD"))  # succeeded: now it is news
    assert [n.reason for n in notices] == [Reason.VIDEO_FULL]


def test_reasons_name_the_cause():
    policy = SubscriberPolicy("me")
    policy.apply(0.0, plan(a="LOW", b="LOW", c="LOW"))
    notices = policy.apply(1.0, plan(limits={"a": Limit.CLINIC, "b": Limit.LAST_N},
                                     a="AUDIO_ONLY", b="AUDIO_ONLY", c="PRESENCE"))
    reasons = {n.publisher: n.reason for n in notices}
    assert reasons == {"a": Reason.VIDEO_PAUSED_CLINIC, "b": Reason.VIDEO_PAUSED_LAST_N,
                       "c": Reason.VIDEO_PRESENCE}


def test_newcomers_below_full_quality_are_explained():
    policy = SubscriberPolicy("me")
    notices = policy.apply(0.0, plan(limits={"b": Limit.LINK}, a="FORWARD", b="AUDIO_ONLY"))
    assert [(n.publisher, n.reason) for n in notices] == [("b", Reason.VIDEO_PAUSED)]


def test_connection_lost_is_said_once_and_nothing_else_meanwhile():
    policy = SubscriberPolicy("me")
    policy.apply(0.0, plan(a="FORWARD"))
    assert [n.reason for n in policy.connection_lost()] == [Reason.CONNECTION_LOST]
    assert policy.connection_lost() == []
    assert policy.apply(1.0, plan(a="AUDIO_ONLY"), announce=False) == []
    assert policy.plan.tiers["a"] is Tier.AUDIO_ONLY  # nothing wasted on a dead link
    notices = policy.apply(2.0, plan(a="AUDIO_ONLY"))  # back: said, and what changed meanwhile
    assert [n.reason for n in notices] == [Reason.CONNECTION_BACK, Reason.VIDEO_PAUSED]
    assert notices[0].event()["to"] == "connected"
    # Back with nothing changed: the interruption notice is still replaced.
    policy.connection_lost()
    policy.apply(3.0, plan(a="AUDIO_ONLY"), announce=False)
    assert [n.reason for n in policy.apply(4.0, plan(a="AUDIO_ONLY"))] == [
        Reason.CONNECTION_BACK
    ]
    assert policy.apply(5.0, plan(a="AUDIO_ONLY")) == []


def test_events_carry_ids_and_the_sentence_only():
    policy = SubscriberPolicy("me")
    policy.apply(0.0, plan(a="FORWARD"))
    (notice,) = policy.apply(1.0, plan(limits={"a": Limit.LINK}, a="AUDIO_ONLY"))
    assert notice.event() == {
        "type": "quality", "publisher": "a", "from": "forward", "to": "audio_only",
        "code": "video_paused", "reason": "Video paused to protect your audio",
    }
