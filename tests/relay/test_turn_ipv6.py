"""The relay's coturn (Debian's 4.6) with the config `clinicbox-central turn-config` writes,
on a host with IPv4 and IPv6: clients reach it over either family, IPv4 and IPv6 allocations
relay to public peers of their family, and private peers of both families (and IPv6
encodings of private IPv4 addresses) are refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.media.turn import credentials
from harness.lab import CHECKOUT, lab_prefix
from sync.server.certificate import ensure_centre_certificate
from sync.server.turn_config import TurnListen, render_config, turn_secret, write_config

pytestmark = pytest.mark.timeout(90)

RELAY_V4, RELAY_V6 = "198.51.100.1", "2001:470:1::1"
PUBLIC_V4, PUBLIC_V6 = "203.0.113.5", "2001:470:2::5"
PRIVATE_V4 = ["10.1.2.3", "192.168.1.1", "127.0.0.1"]
# Unique-local, link-local, loopback, and 10.1.2.3 as v4-mapped, NAT64 and 6to4 addresses.
PRIVATE_V6 = ["fd00::5", "fe80::5", "::1", "::ffff:10.1.2.3", "64:ff9b::a01:203", "2002:a01:203::1"]


def _in(netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


@pytest.fixture
def coturn_host(tmp_path: Path):
    if shutil.which("turnserver") is None:
        pytest.skip("coturn is not installed (firmware_scripts/dev/install-test-deps.sh)")
    netns = f"{lab_prefix()}{os.getpid()}v6"
    subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True)
    coturn = None
    try:
        for command in (
            "ip link set lo up",
            "ip link add pub0 type veth peer name pub1",
            "ip link set pub0 up",
            "ip link set pub1 up",
            f"ip addr add {RELAY_V4}/24 dev pub0",
            f"ip -6 addr add {RELAY_V6}/64 dev pub0 nodad",
        ):
            _in(netns, *command.split())
        cert = ensure_centre_certificate(tmp_path / "tls")
        secret = turn_secret(tmp_path)
        conf = tmp_path / "turnserver.conf"
        write_config(
            conf, render_config(TurnListen("relay.test"), secret, "relay.test", cert.cert, cert.key)
        )
        log = tmp_path / "coturn.log"
        coturn = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                netns,
                "turnserver",
                "-c",
                str(conf),
                "--pidfile",
                str(tmp_path / "turn.pid"),
                "--db",
                str(tmp_path / "turndb"),
                "--log-file",
                str(log),
                "--no-stdout-log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while not _in(netns, "ss", "-Hluna", "sport = :3478").stdout.count(":3478") >= 2:
            if coturn.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"coturn did not start: {log.read_text()[-500:]}")
            time.sleep(0.1)
        yield netns, secret, log
    finally:
        if coturn is not None:
            coturn.terminate()
            coturn.wait(10)
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True)


def _probe(netns: str, secret: str, server: str, family: int, peers: list[str]) -> dict:
    username, password = credentials(secret, "seat-1", time.time() + 600)
    done = _in(
        netns,
        sys.executable,
        "-m",
        "tests.relay.turn_peer_probe",
        server,
        "3478",
        username,
        password,
        str(family),
        *peers,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-800:]
    return json.loads(done.stdout)


def test_both_families_relay_to_public_peers_and_refuse_private_ones(coturn_host) -> None:
    netns, secret, log = coturn_host
    os.chdir(CHECKOUT)
    # IPv4 over IPv4: a public peer is permitted although the config lists IPv6 ranges
    # (coturn 4.6 would deny every IPv4 peer if one of them started at ::).
    v4 = _probe(netns, secret, RELAY_V4, 4, [PUBLIC_V4, *PRIVATE_V4])
    assert v4["relayed"][0] == RELAY_V4
    assert v4["peers"] == {PUBLIC_V4: "ok", **{p: 403 for p in PRIVATE_V4}}, v4
    # A patient on an IPv6-only network: the client leg is IPv6, the relay IPv4.
    over_v6 = _probe(netns, secret, RELAY_V6, 4, [PUBLIC_V4, "10.1.2.3"])
    assert over_v6["relayed"][0] == RELAY_V4
    assert over_v6["peers"] == {PUBLIC_V4: "ok", "10.1.2.3": 403}, over_v6
    # IPv6 relaying: public peers only.
    v6 = _probe(netns, secret, RELAY_V6, 6, [PUBLIC_V6, *PRIVATE_V6])
    assert v6["relayed"][0] == RELAY_V6
    assert v6["peers"] == {PUBLIC_V6: "ok", **{p: 403 for p in PRIVATE_V6}}, v6


def test_a_relay_address_boxes_cannot_reach_is_refused(tmp_path: Path) -> None:
    """Boxes behind IPv4 carrier-grade NAT would be handed a URL that never allocates."""
    cert = ensure_centre_certificate(tmp_path / "tls")
    common = ["--cert", str(cert.cert), "--pkey", str(cert.key), "-o", str(tmp_path / "c")]
    central = Path(sys.executable).with_name("clinicbox-central")
    for bad in (
        ["--public-host", "2001:470:1::1"],
        ["--public-host", "relay.example.org", "--listening-ip", "2001:470:1::1"],
        ["--public-host", "relay.example.org", "--listening-ip", "not-an-address"],
    ):
        done = subprocess.run(
            [str(central), "--data-dir", str(tmp_path / "centre"), "turn-config", *bad, *common],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "c").exists()
