"""Real aiortc peers across an emulated EDGE link: ICE connects between lab namespaces, voice
flows, a cut stops it and it resumes; receiver reports from the far end feed the adaptation
estimator the way docs/weak-links.md tells the SFU to (a check of that recipe, not the SFU)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from harness import Lab, profiles

pytestmark = [pytest.mark.netns, pytest.mark.timeout(90)]

# Both peers in one script: "offer" sends silence (Opus) and feeds RTCP to an estimator;
# "answer" counts the audio frames it receives. SDP goes through files in a shared directory.
PEER = r'''
import asyncio, json, sys, time
from pathlib import Path
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from aiortc.rtp import RtcpRrPacket, RtcpSrPacket
from appliance.media.adaptation import DownlinkEstimator

role, workdir, seconds = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])

async def wait_file(path):
    for _ in range(400):
        if path.exists():
            return json.loads(path.read_text())
        await asyncio.sleep(0.05)
    raise SystemExit(f"no {path.name}")

async def main():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if role == "offer":
        sender = pc.addTrack(AudioStreamTrack())
        loop = asyncio.get_running_loop()
        estimator = DownlinkEstimator(loop.time())
        reports = []
        original = sender._handle_rtcp_packet

        async def handle(packet):
            await original(packet)
            if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                for block in packet.reports:
                    if block.ssrc == sender._ssrc:
                        estimator.on_receiver_report(loop.time(), block.fraction_lost / 256)
                        reports.append((loop.time(), block.fraction_lost / 256))

        sender._handle_rtcp_packet = handle
        await pc.setLocalDescription(await pc.createOffer())
        (workdir / "offer.json").write_text(json.dumps(
            {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}))
        answer = await wait_file(workdir / "answer.json")
        await pc.setRemoteDescription(RTCSessionDescription(**answer))
        await asyncio.sleep(seconds)
        estimate = estimator.tick(loop.time())
        print(json.dumps({"reports": reports, "state": estimate.state.value}), flush=True)
    else:
        arrivals = []
        done = asyncio.Event()

        @pc.on("track")
        def on_track(track):
            async def pull():
                while not done.is_set():
                    try:
                        await track.recv()
                    except MediaStreamError:
                        return
                    arrivals.append(time.monotonic())
            asyncio.ensure_future(pull())

        offer = await wait_file(workdir / "offer.json")
        await pc.setRemoteDescription(RTCSessionDescription(**offer))
        await pc.setLocalDescription(await pc.createAnswer())
        (workdir / "answer.json").write_text(json.dumps(
            {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}))
        await asyncio.sleep(seconds)
        done.set()
        await asyncio.sleep(0.1)
        print(json.dumps({"arrivals": arrivals}), flush=True)
    await pc.close()

asyncio.run(main())
'''


def test_voice_crosses_an_edge_link_and_survives_a_cut(lab: Lab, tmp_path: Path):
    box = lab.host("box")
    patient = lab.host("p1", link=profiles.EDGE)
    seconds = 12.0
    offer = lab.python(box, PEER, "offer", str(tmp_path), str(seconds),
                       stdout=subprocess.PIPE, text=True)
    answer = lab.python(patient, PEER, "answer", str(tmp_path), str(seconds + 1),
                        stdout=subprocess.PIPE, text=True)
    time.sleep(6.0)  # connected and flowing by now (ICE over a 325 ms link takes a few RTTs)
    cut_at = time.monotonic()
    lab.cut(patient, seconds=2.0)
    sent, _ = offer.communicate(timeout=60)
    received, _ = answer.communicate(timeout=60)
    arrivals = json.loads(received.strip().splitlines()[-1])["arrivals"]
    sender = json.loads(sent.strip().splitlines()[-1])

    before = [t for t in arrivals if cut_at - 2.0 <= t < cut_at]
    after = [t for t in arrivals if cut_at + 2.5 <= t < cut_at + 4.5]
    # 20 ms frames: 50 a second cross the EDGE link (this shared machine's stalls bunch some).
    assert len(before) >= 0.75 * 100
    assert len(after) >= 0.75 * 100  # and again after the cut
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert max(gaps) >= 1.5  # the cut was real
    # The sender heard receiver reports over the shaped link (loop.time() is this monotonic
    # clock): about the link's 1% loss before the cut, the cut itself as heavy loss after it.
    reports = sender["reports"]
    # About one a second from each side of the cut; a busy machine has delivered as few as 5.
    assert len(reports) >= 4
    assert all(loss < 0.1 for t, loss in reports if t < cut_at)
    assert max(loss for t, loss in reports if t >= cut_at) > 0.2
    assert sender["state"] != "silent"  # the estimator heard them all
