"""Power cuts during an update: kill -9 the updater and the service at a chosen moment, let
the supervisor start the box again, and judge what comes up. Shared by
tests/update/test_power_cut.py (a handful of points) and benchmarks/update.py (50)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.update.conftest import CLINICBOX, LAUNCHER, Box, Supervisor, wait_serving


@dataclass
class CutResult:
    at_s: float
    came_up_on: str | None
    settled: str
    records_ok: bool
    last: str = ""  # the recorded outcome of the update (and why, for a rollback)

    @property
    def bricked(self) -> bool:
        return self.came_up_on is None or not self.records_ok


def _serving_any(box: Box, versions: tuple[str, ...], timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for version in versions:
            try:
                wait_serving(box, version, timeout=1.5)
                return version
            except AssertionError:
                continue
    return None


def cut_once(
    box: Box, supervisor: Supervisor, bundle: Path, at_s: float, versions: tuple[str, str]
) -> CutResult:
    """Start an update, cut power after `at_s` seconds, and see what the box does."""
    updater = subprocess.Popen(
        [CLINICBOX, "update", "import", str(bundle)],
        env=box.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(at_s)
    # A power cut stops the updater and everything it started (pip, venv) at once.
    try:
        os.killpg(updater.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    updater.wait()
    try:
        pid = int((box.root / "state" / "service.pid").read_text())
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass
    came_up = _serving_any(box, versions, timeout=120)
    # The confirm timer's next run settles a trial the cut updater left behind.
    settled = "unknown"
    for _ in range(3):
        done = subprocess.run(
            [CLINICBOX, "update", "confirm"],
            env=box.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        try:
            settled = json.loads(done.stdout)["outcome"]
        except (ValueError, KeyError):
            settled = done.stderr.strip()[-200:]
        if settled in ("committed", "nothing on trial", "not switched yet", "superseded"):
            break
        came_up = _serving_any(box, versions, timeout=120)
    verified = subprocess.run(
        ["python3", str(LAUNCHER), "run", "audit", "verify"],
        env=box.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    state = json.loads(
        subprocess.run(
            [CLINICBOX, "update", "status", "--json"],
            env=box.env,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    last = state.get("last") or {}
    summary = f"{last.get('version')} {last.get('outcome')} {last.get('reason', '')}".strip()
    return CutResult(at_s, came_up, settled, verified.returncode == 0, summary)


def reset_root(box: Box, supervisor: Supervisor, pristine: Path) -> Supervisor:
    """Stop the service, put the release root back as it was before the update, start it."""
    supervisor.stop()
    shutil.rmtree(box.root)
    subprocess.run(["cp", "-a", str(pristine), str(box.root)], check=True)
    return Supervisor(box, supervisor.log).start()
