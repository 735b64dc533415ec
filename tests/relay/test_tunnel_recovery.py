"""The tunnel comes back by itself: after the centre restarts, and after the clinic's uplink
is cut (weak-link lab, real namespaces)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CLINICBOX, box_env
from tests.relay.conftest import FAST_TUNNEL, SLUG, RelayedBox, live_session, wait_relayed
from tests.sync.conftest import VENV_BIN, Box, Central, clean_env

pytestmark = pytest.mark.timeout(180)


def test_the_tunnel_returns_after_the_centre_restarts(relayed: RelayedBox) -> None:
    central = relayed.central
    central.stop()
    again = Central(central.data_dir, None, workers=2, port=central.port)
    try:
        wait_relayed(relayed.relay, timeout=30)
        assert relayed.patient().request("/join/ping")[0] == 204
    finally:
        again.stop()


FETCH = """
import json, ssl, sys, time, urllib.request, urllib.error
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
started = time.monotonic()
try:
    with urllib.request.urlopen(sys.argv[1], context=ctx, timeout=60) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
print(json.dumps({"status": status, "s": time.monotonic() - started,
                  "offline": b"cannot be reached" in body}))
"""


@pytest.mark.netns
def test_the_tunnel_survives_a_cut_of_the_clinic_uplink(tmp_path: Path) -> None:
    lab_module = pytest.importorskip("harness")
    try:
        lab = lab_module.Lab()
        lab.__enter__()
    except lab_module.LabUnavailable as exc:
        pytest.skip(f"weak-link lab unavailable: {exc}")
    try:
        centre_host = lab.host("centre")
        patient_host = lab.host("patient")
        box_host = lab.host("box", link=lab_module.profiles.THREE_G)
        central_dir = tmp_path / "central"
        centre = lab.popen(
            centre_host,
            [
                str(VENV_BIN / "clinicbox-central"),
                "--data-dir",
                str(central_dir),
                "serve",
                "--host",
                centre_host.ip,
                "--port",
                "8600",
                "--workers",
                "2",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        url = centre.stdout.readline().split("serving on ")[1].split()[0].rstrip("/")
        cli = [str(VENV_BIN / "clinicbox-central"), "--data-dir", str(central_dir)]
        token = subprocess.run(
            [*cli, "claim-token"], capture_output=True, text=True, env=clean_env(), check=True
        ).stdout.strip()
        box = Box(tmp_path / "box")
        claimed = lab.run(
            box_host,
            [
                sys.executable,
                "-c",
                (
                    "import json;from pathlib import Path;"
                    "from appliance.identity import DeviceIdentity;"
                    "from sync.agent.claim import claim_box, save_link;"
                    f"i=DeviceIdentity.load_or_create(Path({str(box.data_dir / 'secrets')!r}));"
                    f"r=claim_box({url!r},{token!r},i);"
                    f"save_link(Path({str(box.data_dir)!r}),r.link({url!r}));print(r['device_id'])"
                ),
            ],
            env=clean_env(),
        )
        assert claimed.returncode == 0, claimed.stderr
        device_id = claimed.stdout.strip()
        subprocess.run(
            [*cli, "relay", "add", device_id, SLUG],
            check=True,
            env=clean_env(),
            capture_output=True,
        )
        live_session(box.data_dir)
        with (tmp_path / "box.log").open("w") as log:
            lab.popen(
                box_host,
                [CLINICBOX, "serve"],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=box_env(box.data_dir, 8443, **FAST_TUNNEL) | {"CLINICBOX_HOST": box_host.ip},
            )

        def fetch() -> dict:
            done = lab.run(
                patient_host,
                [sys.executable, "-c", FETCH, f"{url}/c/{SLUG}/join"],
                timeout=90,
                env=clean_env(),
            )
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

        deadline = time.monotonic() + 60
        while fetch()["status"] != 200:
            assert time.monotonic() < deadline, (tmp_path / "box.log").read_text()[-2000:]
            time.sleep(0.5)
        lab.cut(box_host, seconds=20)
        during = fetch()
        # The patient is told plainly, within the centre's probe time, not left waiting.
        assert during["status"] == 503 and during["offline"], during
        assert during["s"] < 25
        time.sleep(max(0.0, 21 - during["s"]))
        deadline = time.monotonic() + 30
        while (after := fetch())["status"] != 200:
            assert time.monotonic() < deadline, after
            time.sleep(0.5)
    finally:
        lab.__exit__(None, None, None)
