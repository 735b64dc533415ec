"""A serving box in one namespace, the technician's tools in another: adverts, TXT, state."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.config import Settings
from appliance.discovery.advert import advert_txt
from appliance.identity import DeviceIdentity
from appliance.provisioning import accept_voucher
from tests.conftest import CLINICBOX
from tests.discovery.conftest import Lan, discover_json, serve_in
from tests.provisioning.conftest import central_voucher

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

# Reads both services' raw TXT records with python-zeroconf, independent of `discover`.
RAW_TXT = """
import json, sys
from zeroconf import Zeroconf, ServiceBrowser, ServiceInfo
import time
zc = Zeroconf()
out = {}
for kind in ("_clinicbox._tcp.local.", "_https._tcp.local."):
    names = []
    b = ServiceBrowser(zc, kind, handlers=[lambda zeroconf, service_type, name, state_change:
                                           names.append(name)])
    deadline = time.monotonic() + 5
    while not names and time.monotonic() < deadline:
        time.sleep(0.1)
    info = zc.get_service_info(kind, names[0], 3000) if names else None
    props = info.properties if info else {}
    out[kind] = {k.decode(): (v or b"").decode() for k, v in props.items()} if info else None
    b.cancel()
zc.close()
print(json.dumps(out))
"""


def _wait_for(lan: Lan, predicate: object, attempts: int = 6) -> list[dict]:
    boxes: list[dict] = []
    for _ in range(attempts):
        boxes = discover_json(lan, timeout_s=2.0)
        if predicate(boxes):  # type: ignore[operator]
            return boxes
    return boxes


def test_advert_txt_state_change_and_withdrawal(lan: Lan, tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = serve_in(lan, data)
    try:
        fingerprint = DeviceIdentity.load_or_create(data / "secrets").fingerprint

        boxes = _wait_for(lan, lambda b: len(b) == 1)
        assert len(boxes) == 1, boxes
        box = boxes[0]
        assert box["addresses"] == ["10.77.0.1"]
        assert box["port"] == 8443
        assert box["state"] == "unclaimed"
        assert box["fingerprint"] == fingerprint
        assert box["version"]

        table = lan.run(lan.tech_ns, CLINICBOX, "discover", "--timeout", "2")
        assert table.returncode == 0, table.stderr
        row = table.stdout.splitlines()[1].split()
        assert row[:4] == ["10.77.0.1:8443", "unclaimed", box["version"], fingerprint]

        # The same advert through avahi, outside Python.
        avahi = lan.run(lan.tech_ns, "unshare", "-m", "--propagation", "private", "bash",
                        str(Path(__file__).with_name("avahi_browse.sh")), lan.tech_if)
        resolved = [line for line in avahi.stdout.splitlines() if line.startswith("=;")]
        assert resolved, avahi.stdout + avahi.stderr
        fields = resolved[0].split(";")
        assert fields[7:9] == ["10.77.0.1", "8443"], fields
        assert f'"id={fingerprint}"' in fields[9] and '"state=unclaimed"' in fields[9]

        raw = lan.run(lan.tech_ns, sys.executable, "-c", RAW_TXT)
        assert raw.returncode == 0, raw.stderr
        txt = json.loads(raw.stdout)
        expected = advert_txt(fingerprint, "unclaimed")
        assert txt["_clinicbox._tcp.local."] == expected
        assert txt["_https._tcp.local."] == expected

        # Claiming (here by an offline voucher, as the CLI would) shows up in the advert.
        voucher = central_voucher(tmp_path / "centre")
        accept_voucher(Settings(data_dir=data), "https://centre.example", voucher)
        boxes = _wait_for(lan, lambda b: b and b[0]["state"] == "claimed")
        assert [b["state"] for b in boxes] == ["claimed"]

        # A new address (a DHCP renewal): the advert moves to it.
        for verb, addr in (("del", "10.77.0.1/24"), ("add", "10.77.0.9/24")):
            subprocess.run(["ip", "-n", lan.box_ns, "addr", verb, addr, "dev", lan.box_if],
                           check=True, timeout=10)
        boxes = _wait_for(lan, lambda b: b and b[0]["addresses"] == ["10.77.0.9"])
        assert [(b["addresses"], b["state"]) for b in boxes] == [(["10.77.0.9"], "claimed")]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    # Withdrawn on shutdown: a fresh browse finds nothing.
    time.sleep(0.5)
    assert discover_json(lan, timeout_s=2.0) == []


def test_discovery_disabled_advertises_nothing(lan: Lan, tmp_path: Path) -> None:
    proc = serve_in(lan, tmp_path / "data", CLINICBOX_DISCOVERY_ENABLED="false")
    try:
        assert discover_json(lan, timeout_s=2.0) == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
