"""The NAT lab: the centre's coturn on an "internet", the box behind carrier-grade NAT, a
patient behind a home NAT on an emulated mobile link. Built on harness.Lab:

    <prefix>-inet 198.51.100.1 (coturn) --+
    <prefix>-crouter 198.51.100.2 --------+-- br0 ("internet")
       | NAT (masquerade random)          |
       +- lan0 10.0.0.254                 +-- emulator (patient_link) -- <prefix>-prouter
          +- <prefix>-box   10.0.0.1                                      198.51.100.3
          +- <prefix>-nurse 10.0.0.2 (clinic LAN)                          | NAT
                                                                           +- lan0 192.168.1.254
                                                                              +- <prefix>-patient
                                                                                 192.168.1.1

coturn's config comes from `clinicbox-central turn-config` (the real command), its secret
reaches the box as the centre's signed down-sync change, applied by the box's down-sync
code; its TLS certificate is signed by a lab CA that the lab's processes trust through
`SSL_CERT_FILE` (aioice verifies TURN/TLS against Python's default trust store). With
`nat=False` the routers only route (the internet knows the private networks): the direct
path a call takes when no NAT is in the way, for comparison.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from appliance.media.turn import TurnGrant, TurnService, load_service
from appliance.tls import _make_ca, _make_server_cert
from harness.callrun import CallRun, Seat, run_call
from harness.lab import Host, Lab
from harness.nat import add_route, configure_router
from harness.profiles import UNSHAPED, Profile

INTERNET = "198.51.100.0/24"  # TEST-NET-2: public-looking, outside coturn's denied ranges
CLINIC_LAN = "10.0.0.0/24"
PATIENT_LAN = "192.168.1.0/24"
RELAY_PORTS = (49152, 49999)


class _LabCaKeys:
    """Where `_make_ca` puts the lab centre's CA key: memory (a box wraps its own)."""

    def set_box_secret(self, name: str, value: bytes) -> None:
        self.secret = (name, value)


class RelayLab:
    """The whole scenario; use as a context manager (everything goes when it closes)."""

    def __init__(
        self,
        patient_link: Profile | None = None,
        clinic_link: Profile | None = None,
        nat: bool = True,
        clinic_drops_udp: bool = False,
        patient_drops_udp: bool = False,
    ) -> None:
        self.lab = Lab(subnet=INTERNET)
        self.patient_link = patient_link
        self.clinic_link = clinic_link
        self.nat = nat
        self.clinic_drops_udp = clinic_drops_udp
        self.patient_drops_udp = patient_drops_udp
        self.coturn: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RelayLab:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.lab.close()

    @property
    def workdir(self) -> Path:
        assert self.lab._workdir is not None
        return self.lab._workdir

    def start(self) -> None:
        lab = self.lab
        lab.start()
        self.inet = lab.host("inet")
        self.crouter = lab.host("crouter", link=self.clinic_link)
        self.prouter = lab.host("prouter", link=self.patient_link)
        self.box, self.nurse = lab.lan_behind(self.crouter, ["box", "nurse"], CLINIC_LAN)
        (self.patient,) = lab.lan_behind(self.prouter, ["patient"], PATIENT_LAN)
        configure_router(lab, self.crouter, self.nat, self.clinic_drops_udp, self.box.ip)
        configure_router(lab, self.prouter, self.nat, self.patient_drops_udp)
        if not self.nat:
            add_route(lab, self.crouter, PATIENT_LAN, self.prouter.ip)
            add_route(lab, self.prouter, CLINIC_LAN, self.crouter.ip)
            add_route(lab, self.inet, PATIENT_LAN, self.prouter.ip)
            add_route(lab, self.inet, CLINIC_LAN, self.crouter.ip)
        self.ca_file = self._certificates()
        self.box_data_dir = self.workdir / "box"
        self.centre_dir = self.workdir / "centre"
        self.config = self._turn_config()
        self._deliver_to_box()
        self._start_coturn()

    # -- the centre side -------------------------------------------------------------------

    def _certificates(self) -> Path:
        tls = self.workdir / "tls"
        tls.mkdir()
        ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
            ipaddress.ip_address(self.inet.ip)
        ]
        ca_cert, ca_key = _make_ca(tls, _LabCaKeys(), "centre", ips, replacing=False)
        _make_server_cert(tls, ca_cert, ca_key, "centre", ips)
        return tls / "ca.pem"

    def _turn_config(self) -> Path:
        """coturn's config, written by the centre's own command (which publishes it too)."""
        conf = self.workdir / "turnserver.conf"
        tls = self.workdir / "tls"
        done = subprocess.run(
            [
                str(Path(sys.executable).with_name("clinicbox-central")),
                "--data-dir",
                str(self.centre_dir),
                "turn-config",
                "--public-host",
                self.inet.ip,
                "--listening-ip",
                self.inet.ip,
                "--min-port",
                str(RELAY_PORTS[0]),
                "--max-port",
                str(RELAY_PORTS[1]),
                "--cert",
                str(tls / "server.pem"),
                "--pkey",
                str(tls / "server.key"),
                "-o",
                str(conf),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"turn-config failed: {done.stderr.strip()[-300:]}")
        return conf

    def _deliver_to_box(self) -> None:
        """The box pulls the centre's signed changes and applies them, as its agent does."""
        from sync.agent.downsync import apply_change, verify_changes
        from sync.server.centre import Centre

        centre = Centre.open(self.centre_dir)
        try:
            answer = json.loads(json.dumps(centre.changes("lab-box", 0)))
            for change in verify_changes(centre.keys.signing.public_key(), answer, "lab-box"):
                apply_change(self.box_data_dir, change)
        finally:
            centre.db.close()

    @property
    def service(self) -> TurnService:
        service = load_service(self.box_data_dir)
        if service is None:
            raise RuntimeError("the box holds no TURN service")
        return service

    def _start_coturn(self) -> None:
        log = self.workdir / "coturn.log"
        self.coturn = self.lab.popen(
            self.inet,
            [
                "turnserver",
                "-c",
                str(self.config),
                "--pidfile",
                str(self.workdir / "turn.pid"),
                "--db",
                str(self.workdir / "turndb"),
                "--log-file",
                str(log),
                "--no-stdout-log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            listening = self.lab.run(self.inet, ["ss", "-Htln", "sport = :443"]).stdout.strip()
            if listening:
                return
            if self.coturn.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                raise RuntimeError(f"coturn did not start: {tail}")
            time.sleep(0.1)

    def coturn_log(self) -> str:
        """What coturn logged so far (usernames are opaque seat labels, no names)."""
        paths = sorted(self.workdir.glob("coturn*.log"))
        return "".join(p.read_text(errors="replace") for p in paths)

    # -- running things --------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment for the lab's Python processes: they trust the lab CA for TURN/TLS."""
        return {**os.environ, "SSL_CERT_FILE": str(self.ca_file)}

    def python_module(self, host: Host, module: str, *args: str, **kwargs: Any) -> Any:
        kwargs.setdefault("env", self.env())
        return self.lab.python_module(host, module, *args, **kwargs)

    def call(
        self,
        seconds: float,
        clip: Path,
        relay: bool = True,
        patient_publish: tuple[str, ...] = ("audio", "video"),
    ) -> CallRun:
        """A call between the nurse (clinic LAN, facilitator) and the remote patient.

        With `relay`, the box holds the centre's TURN service and the patient gets the
        iceServers the call page gives a remote seat; without, neither has any.
        """
        seats = [
            Seat("nurse", None, role="facilitator"),
            Seat("patient", self.patient_link or UNSHAPED, publish=patient_publish),
        ]
        caller_args: dict[str, list[str]] = {}
        box_args: tuple[str, ...] = ()
        if relay:
            ice = self.workdir / "patient-ice.json"
            grant = TurnGrant(self.service, "patient", time.time() + 3600)
            ice.write_text(json.dumps(grant.browser_ice_servers()))
            caller_args["patient"] = ["--turn", str(ice)]
            box_args = ("--turn-from", str(self.box_data_dir))
        return run_call(
            self.lab,
            self.box,
            {"nurse": self.nurse, "patient": self.patient},
            seats,
            "clinicbox",
            seconds,
            clip,
            box_args=box_args,
            caller_args=caller_args,
            signal_addresses={"patient": self.crouter.ip if self.nat else self.box.ip},
            env=self.env(),
        )
