"""Two network namespaces joined by a veth pair: a private LAN for mDNS tests."""

from __future__ import annotations

import os
import select
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CLINICBOX


@dataclass(frozen=True)
class Lan:
    """Namespaces `box_ns` (10.77.0.1) and `tech_ns` (10.77.0.2) on one veth link."""

    box_ns: str
    tech_ns: str
    tech_if: str
    box_if: str

    def run(self, ns: str, *argv: str, env: dict[str, str] | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True,
                              text=True, env=env, timeout=timeout)


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=10)


def netns_available() -> bool:
    if os.geteuid() != 0:
        return False
    probe = f"cbprobe{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except (OSError, subprocess.CalledProcessError):
        return False
    _ip("netns", "del", probe)
    return True


@contextmanager
def private_lan() -> Iterator[Lan]:
    """Make the two namespaces and the veth link; remove them afterwards."""
    tag = uuid.uuid4().hex[:6]
    box_ns, tech_ns = f"cbbox{tag}", f"cbtech{tag}"
    _ip("netns", "add", box_ns)
    _ip("netns", "add", tech_ns)
    try:
        _ip("link", "add", f"vb{tag}", "netns", box_ns, "type", "veth",
            "peer", "name", f"vt{tag}", "netns", tech_ns)
        for ns, dev, addr in ((box_ns, f"vb{tag}", "10.77.0.1/24"),
                              (tech_ns, f"vt{tag}", "10.77.0.2/24")):
            _ip("-n", ns, "addr", "add", addr, "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up", "multicast", "on")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield Lan(box_ns, tech_ns, f"vt{tag}", f"vb{tag}")
    finally:
        _ip("netns", "del", box_ns)
        _ip("netns", "del", tech_ns)


@pytest.fixture
def lan() -> Iterator[Lan]:
    if not netns_available():
        pytest.skip("network namespaces need root and iproute2")
    with private_lan() as made:
        yield made


def serve_in(lan: Lan, data_dir: Path, port: int = 8443, **extra: str) -> subprocess.Popen[str]:
    """Start `clinicbox serve` in the box namespace with discovery on; wait until it is up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICBOX_")}
    env.update(CLINICBOX_DATA_DIR=str(data_dir), CLINICBOX_PORT=str(port),
               CLINICBOX_HOST="0.0.0.0", CLINICBOX_HOSTNAME="clinicbox-test",
               CLINICBOX_DISCOVERY_ENABLED="true")
    env.update(extra)
    proc = subprocess.Popen(["ip", "netns", "exec", lan.box_ns, CLINICBOX, "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    seen = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited early: {proc.stderr.read()}")
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            seen += proc.stdout.readline()
            if "ClinicBox portal:" in seen:
                return proc
    proc.kill()
    raise RuntimeError("serve did not start within 60 s")


def discover_json(lan: Lan, timeout_s: float = 3.0) -> list[dict]:
    """Run `clinicbox discover --json` in the technician namespace."""
    import json

    result = lan.run(lan.tech_ns, CLINICBOX, "discover", "--json", "--timeout", str(timeout_s))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
