"""`clinicbox-central turn-config`: coturn's config from the centre's state, and the relay's
URLs and secret sent to every box as a signed down-sync change."""

from __future__ import annotations

import ipaddress
import stat
import subprocess
import sys
from pathlib import Path

from appliance.media.turn import TurnService
from sync.agent.downsync import verify_changes
from sync.server.centre import Centre
from sync.server.certificate import ensure_centre_certificate

CENTRAL = Path(sys.executable).with_name("clinicbox-central")


def _turn_config(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CENTRAL), "--data-dir", str(data_dir), "turn-config", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _options(conf: str) -> list[tuple[str, str]]:
    rows = [line.split("=", 1) for line in conf.splitlines() if line and line[0] != "#"]
    return [(row[0], row[1] if len(row) > 1 else "") for row in rows]


def test_config_and_what_boxes_are_told(tmp_path: Path) -> None:
    data_dir = tmp_path / "centre"
    cert = ensure_centre_certificate(tmp_path / "tls")
    conf = tmp_path / "turnserver.conf"
    args = [
        "--public-host",
        "relay.example.org",
        "--cert",
        str(cert.cert),
        "--pkey",
        str(cert.key),
        "-o",
        str(conf),
    ]
    done = _turn_config(data_dir, *args)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600  # it holds the secret
    options = _options(conf.read_text())
    values = dict(options)
    secret = (data_dir / "turn-secret").read_text().strip()
    assert stat.S_IMODE((data_dir / "turn-secret").stat().st_mode) == 0o600
    assert values["static-auth-secret"] == secret and "use-auth-secret" in values
    assert values["listening-port"] == "3478" and values["tls-listening-port"] == "443"
    assert values["realm"] == "relay.example.org" and values["cert"] == str(cert.cert)
    denied = [v for k, v in options if k == "denied-peer-ip"]
    for private in (
        "10.1.2.3",
        "192.168.1.1",
        "172.16.0.1",
        "100.64.0.1",
        "127.0.0.1",
        "169.254.1.1",
    ):
        assert any(_in_range(private, r) for r in denied), private
    # coturn 4.6 counts a range starting at :: as open below, and IPv4 peers as below every
    # IPv6 address: such a range would deny every public IPv4 peer (tests/relay/test_turn_ipv6.py).
    assert not any(_in_range("198.51.100.7", r) for r in denied)
    assert not any(
        ipaddress.ip_address(r.split("-")[0]) == ipaddress.ip_address("::") for r in denied
    )

    centre = Centre.open(data_dir)
    changes = verify_changes(centre.keys.signing.public_key(), centre.changes("a-box", 0), "a-box")
    centre.db.close()
    assert [c["type"] for c in changes] == ["turn"]
    service = TurnService.from_body(changes[0]["body"])
    assert service.secret == secret
    assert service.urls == (
        "turn:relay.example.org:3478?transport=udp",
        "turn:relay.example.org:3478?transport=tcp",
        "turns:relay.example.org:443?transport=tcp",
    )
    # The secret is kept: running the command again changes nothing boxes hold.
    assert _turn_config(data_dir, *args).returncode == 0
    assert dict(_options(conf.read_text()))["static-auth-secret"] == secret


def test_bad_flags_are_one_line_exit_2(tmp_path: Path) -> None:
    cert = ensure_centre_certificate(tmp_path / "tls")
    common = ["--cert", str(cert.cert), "--pkey", str(cert.key), "-o", str(tmp_path / "c")]
    for bad in (
        ["--public-host", "not a host!"],
        ["--public-host", "relay.example.org", "--port", "443"],
    ):
        done = _turn_config(tmp_path / "centre", *bad, *common)
        assert done.returncode == 2, done
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "c").exists()


def _in_range(address: str, text: str) -> bool:
    low, high = (ipaddress.ip_address(part) for part in text.split("-"))
    ip = ipaddress.ip_address(address)
    return low.version == ip.version and low <= ip <= high  # type: ignore[operator]
