"""Who is on the LAN, on a real dual-stack network: namespaces with IPv4 and IPv6 (ULA) on-link
prefixes, a routed "far" host, and real aiortc peers whose host candidates are hidden behind
`<uuid>.local` mDNS names the way Chromium sends them. The box decides from the address it sees
media come from, read from the kernel's own route tables in its namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
TAG = f"br{os.getpid() % 100000}"

# Box side: answers one offer the way the box does (an offer whose host candidates are mDNS
# names keeps ICE open for the browser's checks), waits for the connection, then reports the
# address of the nominated pair and whether the box's own on-link networks call it LAN.
BOX = r"""
import asyncio, json, sys
from pathlib import Path
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from appliance.media.locality import is_lan, on_link_networks, peer_address
from appliance.media.sdp import keep_ice_open_for_mdns

workdir = Path(sys.argv[1])

async def main():
    for _ in range(600):
        if (workdir / "offer.json").exists():
            break
        await asyncio.sleep(0.05)
    offer = json.loads((workdir / "offer.json").read_text())
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def changed():
        if pc.connectionState == "connected":
            connected.set()

    offer["sdp"] = keep_ice_open_for_mdns(offer["sdp"])  # as the box's Room.join does
    await pc.setRemoteDescription(RTCSessionDescription(**offer))
    await pc.setLocalDescription(await pc.createAnswer())
    answer = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
    (workdir / "answer.tmp").write_text(json.dumps(answer))
    (workdir / "answer.tmp").rename(workdir / "answer.json")
    await asyncio.wait_for(connected.wait(), 40)
    address = peer_address(pc)
    networks = on_link_networks()
    print(json.dumps({"address": address, "lan": is_lan(address, networks),
                      "networks": [str(n) for n in networks]}), flush=True)
    await asyncio.sleep(1)
    await pc.close()

asyncio.run(main())
"""

# Client side: offers a data channel with only `family` candidates, each host address
# replaced by an mDNS name nobody answers for (as Chromium does), and keeps only the box's
# candidates of that family, so the call can only run over that family.
CLIENT = r"""
import asyncio, json, re, sys, uuid
from pathlib import Path
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

workdir, family = Path(sys.argv[1]), sys.argv[2]

def of_family(line):
    address = line.split()[4]
    return (":" in address) == (family == "ipv6")

def hide(sdp):
    lines = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            if not of_family(line):
                continue
            fields = line.split()
            fields[4] = f"{uuid.uuid4()}.local"
            line = " ".join(fields)
        elif line.startswith("c=IN "):
            line = "c=IN IP4 0.0.0.0"
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"

def only_family(sdp):
    kept = [l for l in sdp.splitlines() if not l.startswith("a=candidate:") or of_family(l)]
    return "\r\n".join(kept) + "\r\n"

async def main():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="recvonly")
    pc.createDataChannel("events")
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def changed():
        if pc.connectionState == "connected":
            connected.set()

    await pc.setLocalDescription(await pc.createOffer())
    sdp = hide(pc.localDescription.sdp)
    assert ".local" in sdp and not re.search(r"candidate:\S+ \d \S+ \d+ [0-9a-f.:]+ ", sdp)
    (workdir / "offer.tmp").write_text(json.dumps({"sdp": sdp, "type": "offer"}))
    (workdir / "offer.tmp").rename(workdir / "offer.json")
    for _ in range(600):
        if (workdir / "answer.json").exists():
            break
        await asyncio.sleep(0.05)
    answer = json.loads((workdir / "answer.json").read_text())
    answer["sdp"] = only_family(answer["sdp"])
    await pc.setRemoteDescription(RTCSessionDescription(**answer))
    await asyncio.wait_for(connected.wait(), 40)
    await asyncio.sleep(1)
    await pc.close()

asyncio.run(main())
"""


@dataclass(frozen=True)
class Net:
    box: str
    lan: str
    far: str


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _in(ns: str, *args: str) -> None:
    _ip("-n", ns, *args)


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    """box <-> lan on 10.88.0.0/24 + fd00:88::/64; box <-> rtr <-> far (routed, not on-link)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    names = Net(box=f"{TAG}-box", lan=f"{TAG}-lan", far=f"{TAG}-far")
    router = f"{TAG}-rtr"
    made: list[str] = []
    try:
        for ns in (names.box, names.lan, names.far, router):
            _ip("netns", "add", ns)
            made.append(ns)
            _in(ns, "link", "set", "lo", "up")
        links = [  # (namespace, IPv4, IPv6) at each end
            (names.box, "10.88.0.1/24", "fd00:88::1/64", names.lan, "10.88.0.2/24", "fd00:88::2/64"),  # noqa: E501
            (names.box, "10.88.1.1/24", "fd00:89::1/64", router, "10.88.1.2/24", "fd00:89::2/64"),
            (router, "10.88.2.1/24", "fd00:8a::1/64", names.far, "10.88.2.2/24", "fd00:8a::2/64"),
        ]
        for n, (a_ns, a4, a6, b_ns, b4, b6) in enumerate(links):
            a_if, b_if = f"{TAG}a{n}", f"{TAG}b{n}"
            _ip("link", "add", a_if, "netns", a_ns, "type", "veth", "peer", b_if, "netns", b_ns)
            for ns, dev, v4, v6 in ((a_ns, a_if, a4, a6), (b_ns, b_if, b4, b6)):
                # No duplicate-address wait: the addresses must be usable at once.
                subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                                f"net.ipv6.conf.{dev}.accept_dad=0"], check=True)
                _in(ns, "addr", "add", v4, "dev", dev)
                _in(ns, "addr", "add", v6, "dev", dev, "nodad")
                _in(ns, "link", "set", dev, "up")
        subprocess.run(["ip", "netns", "exec", router, "sysctl", "-qw",
                        "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"], check=True)
        _in(names.box, "route", "add", "10.88.2.0/24", "via", "10.88.1.2")
        _in(names.box, "-6", "route", "add", "fd00:8a::/64", "via", "fd00:89::2")
        _in(names.far, "route", "add", "default", "via", "10.88.2.1")
        _in(names.far, "-6", "route", "add", "default", "via", "fd00:8a::1")
        yield names
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _call(net: Net, client_ns: str, family: str, workdir: Path) -> dict[str, object]:
    workdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    box = subprocess.Popen(
        ["ip", "netns", "exec", net.box, sys.executable, "-c", BOX, str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    client = subprocess.Popen(
        ["ip", "netns", "exec", client_ns, sys.executable, "-c", CLIENT, str(workdir), family],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        box_out, box_err = box.communicate(timeout=60)
        _, client_err = client.communicate(timeout=30)
    finally:
        for proc in (box, client):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert box.returncode == 0, box_err[-2000:]
    assert client.returncode == 0, client_err[-2000:]
    return json.loads(box_out.strip().splitlines()[-1])


def test_on_link_networks_of_a_dual_stack_box_come_from_its_kernel(net: Net) -> None:
    out = subprocess.run(
        ["ip", "netns", "exec", net.box, sys.executable, "-c",
         "from appliance.media.locality import on_link_networks; "
         "print(' '.join(str(n) for n in on_link_networks()))"],
        check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout.split()
    # Both families' on-link prefixes, link-local included; routed ones (via a gateway) not.
    assert {"10.88.0.0/24", "10.88.1.0/24", "fd00:88::/64", "fd00:89::/64", "fe80::/64"} <= set(out)
    assert "10.88.2.0/24" not in out and "fd00:8a::/64" not in out


@pytest.mark.parametrize("family", ["ipv6", "ipv4"])
def test_lan_browser_with_mdns_candidates_is_lan_in_either_family(
    net: Net, family: str, tmp_path: Path
) -> None:
    seen = _call(net, net.lan, family, tmp_path / "call")
    expected = "fd00:88::2" if family == "ipv6" else "10.88.0.2"
    assert seen["address"] == expected, seen
    assert seen["lan"] is True, seen


def test_routed_client_is_remote_over_ipv6(net: Net, tmp_path: Path) -> None:
    seen = _call(net, net.far, "ipv6", tmp_path / "call")
    assert seen["address"] == "fd00:8a::2", seen
    assert seen["lan"] is False, seen


def test_offer_with_only_mdns_candidates_keeps_ice_open() -> None:
    from appliance.media.sdp import keep_ice_open_for_mdns

    hidden = "a=candidate:1 1 udp 2130706431 0f6c2b7e-aa.local 50220 typ host\r\n"
    offer = f"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{hidden}a=end-of-candidates\r\n"
    assert keep_ice_open_for_mdns(offer) == f"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{hidden}"
    plain = offer.replace("0f6c2b7e-aa.local", "192.168.8.40")
    assert keep_ice_open_for_mdns(plain) == plain  # real addresses: aioice may end at once
