"""How fast the LAN sees a box, its claim and its departure (two network namespaces).

A `clinicbox serve` in one namespace, a python-zeroconf watcher in another, on one veth:
- first_seen_s: from spawning the service until the watcher resolves its advert
  (includes the service's start-up: store, TLS, media loop);
- claim_to_advert_s: from writing the claim until the watcher sees state=claimed, against
  the advertiser's state poll interval as the baseline (ratio);
- goodbye_s: from SIGTERM until the watcher sees the advert removed;
- install_s: `install.sh` into a temporary root (no wheelhouse).

    python benchmarks/discovery.py [--quick]      (root: it makes network namespaces)

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.config import Settings  # noqa: E402
from appliance.discovery.advert import STATE_POLL_S  # noqa: E402
from appliance.provisioning import accept_voucher  # noqa: E402
from tests.discovery.conftest import Lan, private_lan, serve_in  # noqa: E402
from tests.provisioning.conftest import central_voucher  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# Prints "<event> <time.time()>" for found, claimed and removed; exits after removed.
WATCHER = """
import sys, time
from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf
kind = "_clinicbox._tcp.local."
zc = Zeroconf()
seen = set()
def report(event):
    if event not in seen:
        seen.add(event)
        print(event, time.time(), flush=True)
def changed(zeroconf, service_type, name, state_change):
    if state_change is ServiceStateChange.Removed:
        report("removed")
        return
    info = zc.get_service_info(kind, name, 2000)
    if info is not None:
        report("found")
        if info.properties.get(b"state") == b"claimed":
            report("claimed")
browser = ServiceBrowser(zc, kind, handlers=[changed])
deadline = time.monotonic() + 90
while "removed" not in seen and time.monotonic() < deadline:
    time.sleep(0.05)
zc.close()
"""


def _wait_event(proc: subprocess.Popen[str], event: str, timeout_s: float = 60.0) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        name, _, stamp = line.strip().partition(" ")
        if name == event:
            return float(stamp)
    raise RuntimeError(f"watcher did not report {event!r}")


def one_round(lan: Lan, data: Path) -> dict[str, float]:
    voucher = central_voucher(data.with_name(data.name + "-centre"))
    watcher = subprocess.Popen(["ip", "netns", "exec", lan.tech_ns, sys.executable, "-c",
                                WATCHER], stdout=subprocess.PIPE, text=True)
    try:
        spawned = time.time()
        box = serve_in(lan, data)
        found = _wait_event(watcher, "found")
        time.sleep(STATE_POLL_S)  # settle: the first announcements are done
        claimed_at = time.time()
        accept_voucher(Settings(data_dir=data), "https://centre.example", voucher)
        seen_claimed = _wait_event(watcher, "claimed")
        stopping = time.time()
        box.send_signal(signal.SIGTERM)
        removed = _wait_event(watcher, "removed")
        box.wait(20)
    finally:
        watcher.kill()
        watcher.wait(5)
    return {"first_seen_s": found - spawned, "claim_to_advert_s": seen_claimed - claimed_at,
            "goodbye_s": removed - stopping}


def install_time() -> float:
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        subprocess.run([str(REPO / "firmware_scripts/install.sh")], check=True,
                       capture_output=True, env=dict(os.environ, DESTDIR=root), timeout=120)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round instead of three")
    args = parser.parse_args()
    rounds = 1 if args.quick else 3
    results: list[dict[str, float]] = []
    with private_lan() as lan, tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            results.append(one_round(lan, Path(tmp) / f"data{i}"))
    summary: dict[str, float | int] = {"rounds": rounds}
    for key in ("first_seen_s", "claim_to_advert_s", "goodbye_s"):
        values = [r[key] for r in results]
        summary[key] = round(statistics.median(values), 3)
        print(f"{key:<20} median {summary[key]:.3f} s  (all: "
              f"{', '.join(f'{v:.3f}' for v in values)})")
    summary["state_poll_s"] = STATE_POLL_S
    summary["claim_vs_poll_ratio"] = round(summary["claim_to_advert_s"] / STATE_POLL_S, 2)
    summary["install_s"] = round(install_time(), 2)
    print(f"claim latency / state poll interval: {summary['claim_vs_poll_ratio']}")
    print(f"install.sh into a temp root: {summary['install_s']} s")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
