"""Link flaps through the weak-link lab: the centre behind an emulated EDGE link that is cut."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.sync.conftest import VENV_BIN, Box, clean_env

pytestmark = [pytest.mark.timeout(120), pytest.mark.netns]


def test_link_flaps_through_lab(tmp_path):
    lab_module = pytest.importorskip("harness")
    try:
        lab = lab_module.Lab()
        lab.__enter__()
    except lab_module.LabUnavailable as exc:
        pytest.skip(f"weak-link lab unavailable: {exc}")
    try:
        box_host = lab.host("box")
        centre_host = lab.host("centre", link=lab_module.profiles.EDGE)
        central = lab.popen(centre_host, [
            str(VENV_BIN / "clinicbox-central"), "--data-dir", str(tmp_path / "central"),
            "serve", "--host", centre_host.ip, "--port", "0", "--workers", "2",
        ], stdout=subprocess.PIPE, text=True, env=clean_env())
        line = central.stdout.readline()
        url = line.split("serving on ")[1].split()[0].rstrip("/")
        token = subprocess.run(
            [str(VENV_BIN / "clinicbox-central"), "--data-dir", str(tmp_path / "central"),
             "claim-token"], capture_output=True, text=True, env=clean_env(), check=True,
        ).stdout.strip()
        box = Box(tmp_path / "box")
        claimed = lab.run(box_host, [sys.executable, "-c", (
            "import json,sys;from pathlib import Path;"
            "from appliance.identity import DeviceIdentity;"
            "from sync.agent.claim import claim_box, save_link;"
            f"i=DeviceIdentity.load_or_create(Path({str(box.data_dir / 'secrets')!r}));"
            f"r=claim_box({url!r},{token!r},i);"
            f"save_link(Path({str(box.data_dir)!r}),r.link({url!r}));print(json.dumps(r))")],
            env=clean_env())
        assert claimed.returncode == 0, claimed.stderr
        box.add_records(60)
        expected = box.expected()
        agent = lab.popen(box_host, [str(VENV_BIN / "clinicbox"), "sync", "run"],
                          env=box.env(CLINICBOX_SYNC_READ_TIMEOUT_S="5",
                                      CLINICBOX_SYNC_CONNECT_TIMEOUT_S="3",
                                      CLINICBOX_SYNC_LEASE_S="10"))
        held: set = set()
        deadline = time.monotonic() + 80
        cuts = 0
        while time.monotonic() < deadline and not expected <= held:
            time.sleep(1.0)
            if cuts < 3:
                lab.cut(centre_host, seconds=2)
                cuts += 1
            with sqlite3.connect(tmp_path / "central" / "central.db", timeout=10) as c:
                rows = c.execute("SELECT record_id, version, COUNT(*) FROM record "
                                 "GROUP BY record_id, version").fetchall()
            held = {(r, v) for r, v, _n in rows}
        time.sleep(2)
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
        assert expected <= held and all(n == 1 for _r, _v, n in rows)
        status = json.loads(box.cli("sync", "status", "--json").stdout)
        assert sum(status["queued"].values()) == 0
    finally:
        lab.__exit__(None, None, None)
