"""Who gets a tunnel: only a claimed box the centre's operator named for the relay, with a
fresh device-signed request; a removed name closes an open tunnel."""

from __future__ import annotations

import http.client
import os
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from appliance.identity import DeviceIdentity
from sync.protocol.signing import sign_request
from sync.protocol.tunnel_frames import TUNNEL_PATH, UPGRADE_TOKEN
from sync.server.clinic_relays import tunnel_socket
from tests.conftest import start_box
from tests.relay.conftest import FAST_TUNNEL, SLUG, Patient, RelayedBox, wait_relayed
from tests.sync.conftest import Box, Central

pytestmark = pytest.mark.timeout(120)


def open_tunnel(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    parts = urlsplit(url)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=10)
    try:
        conn.request(
            "GET",
            TUNNEL_PATH,
            headers={"Upgrade": UPGRADE_TOKEN, "Connection": "Upgrade", **headers},
        )
        answer = conn.getresponse()
        return answer.status, answer.read() if answer.status != 101 else b""
    finally:
        conn.close()


def signed(identity: DeviceIdentity, device_id: str) -> dict[str, str]:
    return sign_request(identity.sign, device_id, "GET", TUNNEL_PATH, b"")


def test_only_a_named_claimed_box_gets_a_tunnel(
    claimed: tuple[Central, Box, str], tmp_path: Path
) -> None:
    central, box, device_id = claimed
    # Claimed but not named for the relay: refused, and the box says why.
    status, body = open_tunnel(central.url, signed(box.identity, device_id))
    assert status == 403 and b"not enabled for the relay" in body
    # An unclaimed box (a key the centre never saw): refused.
    stranger = DeviceIdentity.load_or_create(tmp_path / "stranger")
    status, body = open_tunnel(central.url, signed(stranger, stranger.fingerprint))
    assert status == 403 and b"unknown device" in body
    # Unsigned, or signed by another key: refused.
    assert open_tunnel(central.url, {"X-CB-Device": device_id})[0] == 401
    assert open_tunnel(central.url, signed(stranger, device_id))[0] == 401
    central.cli("relay", "add", device_id, SLUG)
    headers = signed(box.identity, device_id)
    assert open_tunnel(central.url, headers)[0] == 101
    # The same signed request again is a replay.
    assert open_tunnel(central.url, headers)[0] == 409


def test_an_unnamed_box_serves_the_lan_and_no_patient_through_the_centre(
    claimed: tuple[Central, Box, str],
) -> None:
    central, box, _device_id = claimed
    running = start_box(box.data_dir, **FAST_TUNNEL)
    try:
        time.sleep(2)
        assert Patient(f"{central.url}/c/{SLUG}").request("/join")[0] == 404
        assert running.get("/join")[0] == 200
    finally:
        running.stop()
    assert "tunnel refused by the centre: 403" in running.log_text()


def test_removing_the_name_closes_the_open_tunnel(relayed: RelayedBox) -> None:
    central = relayed.central
    path = tunnel_socket(central.data_dir, relayed.device_id)
    assert path.exists()
    central.cli("relay", "remove", relayed.device_id)
    deadline = time.monotonic() + 10
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not path.exists()
    assert relayed.patient().request("/join")[0] == 404
    # Named again, the box's next attempt gets its tunnel back.
    central.cli("relay", "add", relayed.device_id, SLUG)
    wait_relayed(relayed.relay)


def test_relay_names_are_checked(claimed: tuple[Central, Box, str]) -> None:
    central, _box, device_id = claimed
    bad = central.cli("relay", "add", device_id, "Hill Clinic", check=False)
    assert bad.returncode == 2 and "lower-case letters" in bad.stderr
    unknown = central.cli("relay", "add", "0" * 32, "hill", check=False)
    assert unknown.returncode == 2 and "no claimed box" in unknown.stderr
    assert central.cli("relay", "remove", "0" * 32, check=False).returncode == 2
    central.cli("relay", "add", device_id, "hill")
    assert '"slug": "hill"' in central.cli("relay", "list").stdout
    assert os.stat(central.data_dir).st_mode & 0o077 == 0
