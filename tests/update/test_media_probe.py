"""The health check's loopback call: two real aiortc peers through a private probe room on
this loop; audio and video must both come through (a release whose SFU forwards no video
fails it: tests/update/test_ab_switch.py)."""

from __future__ import annotations

import asyncio

from appliance.update.media_probe import loopback_call


def test_loopback_call_forwards_audio_and_video() -> None:
    result = asyncio.run(loopback_call(timeout_s=30))
    assert result["ok"], result
    assert result["audio_frames"] >= 10 and result["video_frames"] >= 10
