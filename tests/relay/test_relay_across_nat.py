"""Remote patients meet a box behind carrier-grade NAT through the centre's coturn.

The NAT lab (harness.relay_lab): coturn on an "internet" namespace with the config
`clinicbox-central turn-config` writes, the box and a LAN nurse behind a clinic router doing
endpoint-dependent NAT, a patient behind its own NAT on an emulated 3G link. Real processes:
coturn, the box's SFU (harness.callbox), aiortc callers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import LabUnavailable, profiles
from harness.caller import Clip
from harness.nat import configure_router
from harness.relay_lab import RelayLab

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

SECONDS = 14.0


@pytest.fixture(scope="module")
def relay_lab() -> Iterator[RelayLab]:
    if shutil.which("turnserver") is None:
        pytest.skip("coturn is not installed (firmware_scripts/dev/install-test-deps.sh)")
    try:
        with RelayLab(patient_link=profiles.THREE_G) as made:
            yield made
    except LabUnavailable as exc:
        pytest.skip(f"weak-link lab unavailable: {exc}")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.json"
    Clip.encode().save(path)
    return path


def _after_connect(report: dict[str, object]) -> tuple[float, float]:
    connected = report["connected_s"]
    assert isinstance(connected, float), "the patient never connected"
    return connected + 1.0, SECONDS


def test_the_lab_nat_maps_each_destination_to_its_own_port(relay_lab: RelayLab) -> None:
    """Endpoint-dependent mapping: what a STUN server sees is useless to any other peer."""
    lab, inet = relay_lab.lab, relay_lab.inet
    listen = lab.python(
        inet,
        (
            "import socket\n"
            "socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]\n"
            "for s, port in zip(socks, (9101, 9102)): s.bind(('0.0.0.0', port))\n"
            "print('ready', flush=True)\n"
            "for s in socks: s.settimeout(10); print(s.recvfrom(16)[1][1], flush=True)\n"
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert listen.stdout is not None and listen.stdout.readline().strip() == "ready"
    sent = lab.run(
        relay_lab.patient,
        [
            sys.executable,
            "-c",
            (
                "import socket, sys\n"
                "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                "for port in (9101, 9102): s.sendto(b'x', (sys.argv[1], port))\n"
            ),
            inet.ip,
        ],
    )
    assert sent.returncode == 0, sent.stderr
    out, _ = listen.communicate(timeout=15)
    ports = out.split()
    assert len(ports) == 2 and ports[0] != ports[1], out


def test_patient_and_box_behind_nats_meet_through_the_relay(
    relay_lab: RelayLab, clip: Path
) -> None:
    run = relay_lab.call(SECONDS, clip)
    assert run.errors == {}
    patient, nurse = run.reports["patient"], run.reports["nurse"]
    # Both ends behind NAT: only a relay pair can work, and one was selected.
    assert patient["ice_pair"] == ["relay", "relay"], patient
    assert "relay" in patient["answer_candidates"], "the box gathered no relay candidate"
    assert patient["turn_url"].endswith("?transport=udp")
    # The nurse on the clinic LAN: host candidates only, both ways, a host pair.
    assert nurse["offer_candidates"] == ["host"] and nurse["answer_candidates"] == ["host"]
    assert nurse["ice_pair"] == ["host", "host"]
    window = _after_connect(patient)
    for name in ("patient", "nurse"):
        audio = run.audio(name, window)
        assert audio.streams == 1 and audio.delivered_pct >= 80, (name, audio)
    # coturn refused the private host candidates instead of sending to them (it would drop
    # the whole allocation on ENETUNREACH): denied-peer-ip at work.
    log = relay_lab.coturn_log()
    assert "denied in the range: 192.168.0.0-192.168.255.255" in log
    assert "denied in the range: 10.0.0.0-10.255.255.255" in log


def test_with_udp_blocked_the_call_goes_over_turn_tcp(relay_lab: RelayLab, clip: Path) -> None:
    lab = relay_lab.lab
    configure_router(lab, relay_lab.crouter, drop_udp=True, forward_tcp_to=relay_lab.box.ip)
    configure_router(lab, relay_lab.prouter, drop_udp=True)
    try:
        run = relay_lab.call(SECONDS, clip)
    finally:
        configure_router(lab, relay_lab.crouter, forward_tcp_to=relay_lab.box.ip)
        configure_router(lab, relay_lab.prouter)
    assert run.errors == {}
    patient = run.reports["patient"]
    assert patient["turn_url"].startswith(("turn:", "turns:"))
    assert patient["turn_url"].endswith("?transport=tcp"), patient["turn_url"]
    assert patient["ice_pair"] == ["relay", "relay"], patient
    window = _after_connect(patient)
    for name in ("patient", "nurse"):
        audio = run.audio(name, window)
        assert audio.streams == 1 and audio.delivered_pct >= 80, (name, audio)


def test_coturn_refuses_expired_and_forged_credentials(relay_lab: RelayLab) -> None:
    probe = (
        "import asyncio, json, sys, time\n"
        "from pathlib import Path\n"
        "from appliance.media.turn import TurnGrant, TurnService, allocates, load_service\n"
        "service = load_service(Path(sys.argv[1]))\n"
        "forged = TurnService(service.urls, 'not-the-centres-secret-at-all')\n"
        "grants = {'fresh': TurnGrant(service, 'seat', time.time() + 60),\n"
        "          'expired': TurnGrant(service, 'seat', time.time() - 1),\n"
        "          'forged': TurnGrant(forged, 'seat', time.time() + 60)}\n"
        "async def main():\n"
        "    out = {}\n"
        "    for name, grant in grants.items():\n"
        "        for url in service.urls:\n"
        "            s = grant.ice_server(url)\n"
        "            out[name + ' ' + url] = await allocates(url, s.username, s.credential)\n"
        "    print(json.dumps(out))\n"
        "asyncio.run(main())\n"
    )
    done = relay_lab.lab.run(
        relay_lab.box,
        [sys.executable, "-c", probe, str(relay_lab.box_data_dir)],
        env=relay_lab.env(),
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert len(results) == 9
    for key, allocated in results.items():
        # UDP, TCP and TLS (the lab CA trusted through SSL_CERT_FILE) all allocate when fresh.
        assert allocated == key.startswith("fresh "), key
