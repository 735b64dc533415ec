"""An update downloaded over the weak-link lab: the centre behind an emulated link (EDGE by
default), the box's agent in its own namespace holding the base release's wheels, the link
cut in the middle of the download and the agent killed (-9) and started again.

Shared by tests/update/test_download_lab.py and benchmarks/update_link.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.update.bundle import open_bundle
from appliance.update.downloaded import ready_bundles
from appliance.update.releases import ReleaseRoot
from tests.sync.conftest import VENV_BIN, Box, clean_env


@dataclass
class LinkDownload:
    """What one download over the lab cost."""

    bundle_bytes: int
    link_bytes: int  # what the agent counted against its daily budget (TLS and headers too)
    download_s: float
    cuts: int
    restarts: int
    complete: bool
    sha256_ok: bool


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def download_over_lab(
    work: Path,
    base: Path,
    update: Path,
    keys_dir: Path,
    profile: str = "edge",
    cut_s: float = 5.0,
    timeout_s: float = 240.0,
) -> LinkDownload:
    """Publish `base` and `update` at a centre behind `profile`, let a box holding `base`'s
    wheels download `update`: cut the link for `cut_s` once a third has arrived, kill -9
    and restart the agent at two thirds. Raises LabUnavailable without namespaces."""
    import harness as lab_module

    central_dir = work / "central"
    central_cli = [str(VENV_BIN / "clinicbox-central"), "--data-dir", str(central_dir)]
    with lab_module.Lab() as lab:
        box_host = lab.host("box")
        centre_host = lab.host("centre", link=lab_module.profiles.NAMED[profile])
        central = lab.popen(
            centre_host,
            [*central_cli, "serve", "--host", centre_host.ip, "--port", "0", "--workers", "2"],
            stdout=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        line = central.stdout.readline()
        url = line.split("serving on ")[1].split()[0].rstrip("/")
        published = {}
        for path in (base, update):
            done = subprocess.run(
                [*central_cli, "bundle", "publish", str(path)],
                capture_output=True,
                text=True,
                env=clean_env(),
                check=True,
            )
            published[path] = json.loads(done.stdout)["sha256"]
        token = subprocess.run(
            [*central_cli, "claim-token"],
            capture_output=True,
            text=True,
            env=clean_env(),
            check=True,
        ).stdout.strip()
        box = Box(work / "box")
        claimed = lab.run(
            box_host,
            [
                sys.executable,
                "-c",
                "from pathlib import Path;"
                "from appliance.identity import DeviceIdentity;"
                "from sync.agent.claim import claim_box, save_link;"
                f"i=DeviceIdentity.load_or_create(Path({str(box.data_dir / 'secrets')!r}));"
                f"save_link(Path({str(box.data_dir)!r}),"
                f"claim_box({url!r},{token!r},i).link({url!r}))",
            ],
            env=clean_env(),
        )
        if claimed.returncode != 0:
            raise RuntimeError(f"claim over the lab failed: {claimed.stderr}")
        root = ReleaseRoot(work / "opt")
        opened = open_bundle(base, keys_dir)
        try:
            opened.store_wheels(root)
        finally:
            opened.close()
        env = box.env(
            CLINICBOX_RELEASE_ROOT=str(root.path),
            CLINICBOX_RELEASE_KEYS=str(keys_dir),
            CLINICBOX_SYNC_READ_TIMEOUT_S="10",
            CLINICBOX_SYNC_CONNECT_TIMEOUT_S="5",
            CLINICBOX_SYNC_PULL_INTERVAL_S="3600",
            CLINICBOX_SYNC_BACKOFF_MAX_S="2",
        )
        part = box.data_dir / "updates" / f"{published[update]}.part"
        size = update.stat().st_size

        def have() -> int:
            return part.stat().st_size if part.exists() else 0

        started = time.monotonic()
        argv = [str(VENV_BIN / "clinicbox"), "sync", "run"]
        agent = lab.popen(box_host, argv, env=env, stderr=subprocess.DEVNULL)
        cuts = restarts = 0
        deadline = started + timeout_s
        while time.monotonic() < deadline and not ready_bundles(box.data_dir):
            if cuts == 0 and have() > size / 3:
                lab.cut(centre_host, seconds=cut_s)
                cuts += 1
            elif restarts == 0 and have() > 2 * size / 3:
                os.kill(agent.pid, signal.SIGKILL)
                agent.wait(10)
                agent = lab.popen(box_host, argv, env=env, stderr=subprocess.DEVNULL)
                restarts += 1
            time.sleep(0.1)
        download_s = time.monotonic() - started
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
        ready = ready_bundles(box.data_dir)
        status: dict[str, Any] = json.loads(
            (box.data_dir / "state" / "sync-status.json").read_text()
        )
        return LinkDownload(
            bundle_bytes=size,
            link_bytes=int(status["bytes_today"]),
            download_s=round(download_s, 1),
            cuts=cuts,
            restarts=restarts,
            complete=bool(ready),
            sha256_ok=bool(ready) and _sha256(ready[0]) == published[update],
        )
