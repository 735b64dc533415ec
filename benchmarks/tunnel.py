"""What the box's tunnel to the centre costs, and how fast a patient's pages come through it.

In the weak-link lab (root): a centre host, a box host behind an emulated clinic uplink
(3G by default) and a patient host behind its own 3G link. A real `clinicbox-central serve`
and a real claimed `clinicbox serve` (named for the relay); the tunnel runs with its real
keep-alive (60 s).

- `tunnel_idle_bytes_per_hour`: bytes on the box's interface, both ways, while the tunnel
  is up and nobody uses it (Ethernet frames: TCP, TLS and frame headers included), over a
  window of `--idle-s` seconds, scaled to an hour.
- `join_s_relay`, `join_s_direct`: a patient's join flow over HTTPS (join page, code, consent,
  waiting room: four requests, cookies kept) through `https://<centre>/c/<slug>/` and
  directly to the box (as if the patient could route to it), median of `--rounds` runs;
  `first_page_s_*` is the first of those pages alone (TLS handshake included).

    python benchmarks/tunnel.py [--quick]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.relay.conftest import FAST_TUNNEL, SLUG, live_session  # noqa: E402
from tests.sync.conftest import Box, clean_env  # noqa: E402

BIN = Path(sys.executable).parent

FLOW = r"""
import http.cookiejar, json, re, ssl, sys, time, urllib.parse, urllib.request
base, code = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx),
                                     urllib.request.HTTPCookieProcessor(jar))
def go(path, data=None):
    body = urllib.parse.urlencode(data).encode() if data else None
    with opener.open(base + path, data=body, timeout=60) as r:
        return r.status, r.read()
started = time.monotonic()
status, page = go("/join")
first = time.monotonic() - started
token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
go("/join", {"code": code, "name": "Sam", "csrf_token": token})
go("/join/consent", {"code": code, "name": "Sam", "agree": "yes", "csrf_token": token})
status, page = go("/join/wait")
assert b"will let you in soon" in page, page[:200]
print(json.dumps({"first_page_s": first, "join_s": time.monotonic() - started}))
"""


def interface_bytes(lab, host) -> int:
    out = lab.run(
        host,
        [
            "cat",
            "/sys/class/net/eth0/statistics/rx_bytes",
            "/sys/class/net/eth0/statistics/tx_bytes",
        ],
    ).stdout.split()
    return int(out[0]) + int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--idle-s", type=float, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    idle_s = args.idle_s or (130.0 if args.quick else 600.0)
    rounds = args.rounds or (3 if args.quick else 9)

    from harness import Lab, LabUnavailable, profiles

    work = Path(tempfile.mkdtemp(prefix="cbtunnel-bench-"))
    try:
        lab = Lab()
        lab.__enter__()
    except LabUnavailable as exc:
        print(f"weak-link lab unavailable ({exc}); this benchmark needs it", file=sys.stderr)
        print(json.dumps({"error": str(exc)}))
        sys.exit(2)
    try:
        centre_host = lab.host("centre")
        box_host = lab.host("box", link=profiles.THREE_G)
        patient_host = lab.host("patient", link=profiles.THREE_G)
        cli = [str(BIN / "clinicbox-central"), "--data-dir", str(work / "central")]
        centre = lab.popen(
            centre_host,
            [*cli, "serve", "--host", centre_host.ip, "--port", "8600", "--workers", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=clean_env(),
        )
        url = centre.stdout.readline().split("serving on ")[1].split()[0].rstrip("/")
        token = subprocess.run(
            [*cli, "claim-token"], capture_output=True, text=True, env=clean_env(), check=True
        ).stdout.strip()
        box = Box(work / "box")
        claimed = lab.run(
            box_host,
            [
                sys.executable,
                "-c",
                (
                    "from pathlib import Path;from appliance.identity import DeviceIdentity;"
                    "from sync.agent.claim import claim_box, save_link;"
                    f"i=DeviceIdentity.load_or_create(Path({str(box.data_dir / 'secrets')!r}));"
                    f"r=claim_box({url!r},{token!r},i);"
                    f"save_link(Path({str(box.data_dir)!r}),r.link({url!r}));print(r['device_id'])"
                ),
            ],
            env=clean_env(PYTHONPATH=str(REPO)),
        )
        device_id = claimed.stdout.strip()
        subprocess.run(
            [*cli, "relay", "add", device_id, SLUG],
            check=True,
            env=clean_env(),
            capture_output=True,
        )
        code = live_session(box.data_dir, capacity=50)  # every round is a new patient
        env = clean_env(
            CLINICBOX_DATA_DIR=str(box.data_dir),
            CLINICBOX_PORT="8443",
            CLINICBOX_HOST=box_host.ip,
            CLINICBOX_DISCOVERY_ENABLED="false",
            # Only the reconnect backoff is shortened; the keep-alive is the real one.
            CLINICBOX_TUNNEL_BACKOFF_MAX_S=FAST_TUNNEL["CLINICBOX_TUNNEL_BACKOFF_MAX_S"],
            # Sync idles at the centre too; keep it quiet so only the tunnel counts.
            CLINICBOX_SYNC_PULL_INTERVAL_S="100000",
            CLINICBOX_SYNC_IDLE_S="100000",
        )
        lab.popen(
            box_host,
            [str(BIN / "clinicbox"), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )

        def flow(base: str) -> dict:
            done = lab.run(
                patient_host, [sys.executable, "-c", FLOW, base, code], timeout=120, env=clean_env()
            )
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-500:])
            return json.loads(done.stdout)

        relay = f"{url}/c/{SLUG}"
        deadline = time.monotonic() + 90
        while True:
            try:
                flow(relay)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        direct = f"https://{box_host.ip}:8443"
        relayed_runs = [flow(relay) for _ in range(rounds)]
        direct_runs = [flow(direct) for _ in range(rounds)]
        print(f"relay: {relayed_runs}", flush=True)
        print(f"direct: {direct_runs}", flush=True)

        time.sleep(5)  # let the last answers and ACKs pass
        before, started = interface_bytes(lab, box_host), time.monotonic()
        time.sleep(idle_s)
        idle = interface_bytes(lab, box_host) - before
        elapsed = time.monotonic() - started
        result = {
            "box_link": "3g",
            "patient_link": "3g",
            "rounds": rounds,
            "join_s_relay": round(statistics.median(r["join_s"] for r in relayed_runs), 2),
            "join_s_direct": round(statistics.median(r["join_s"] for r in direct_runs), 2),
            "first_page_s_relay": round(
                statistics.median(r["first_page_s"] for r in relayed_runs), 2
            ),
            "first_page_s_direct": round(
                statistics.median(r["first_page_s"] for r in direct_runs), 2
            ),
            "idle_window_s": round(elapsed, 1),
            "idle_bytes": idle,
            "tunnel_idle_bytes_per_hour": round(idle * 3600 / elapsed),
        }
    finally:
        lab.__exit__(None, None, None)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(json.dumps(result))


if __name__ == "__main__":
    os.umask(0o077)
    main()
