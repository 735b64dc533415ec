"""While a remote patient is in a call, the box's sync sends nothing up the clinic's link; it
resumes once they leave. End to end: a real aiortc patient on an address outside the clinic's
LAN joins through the portal, the SFU's rooms announce the remote call to the sync agent that
`start_sync_agent` wired, and the bytes on the way to a real centre are counted
(tests/sync/remote_call_scenario.py, run inside a lab host)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness import Lab

pytestmark = [pytest.mark.netns, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]


def test_sync_pauses_while_a_remote_patient_is_in_a_call_and_resumes_after(
    lab: Lab, tmp_path: Path
) -> None:
    host = lab.host("box")
    proc = lab.python_module(
        host,
        "tests.sync.remote_call_scenario",
        str(tmp_path),
        host.ip,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    seen = json.loads(out.strip().splitlines()[-1])
    # Before the call the backlog went up as usual.
    assert seen["drained_before_call"] and seen["up_before_call"] > 0, seen
    # In the call: the patient's link is up and the box counts it as remote ...
    assert seen["connected"] and seen["remote_call"] is True, seen
    # ... and the agent says why it waits, and not one byte goes up while records are due.
    assert seen["paused"] and seen["paused_reason"] == "live session with remote participants"
    assert seen["up_during_call"] == 0, seen
    assert seen["delivered_during_call"] == 0 and seen["backlog_during_call"] >= 10, seen
    # After the patient left: sync resumes and delivers what was written during the call
    # (five patients and their questionnaires).
    assert seen["remote_call_after"] is False, seen
    assert seen["drained_after_call"] and seen["up_after_call"] > 0, seen
    assert seen["delivered_after_call"] >= 10, seen
    assert seen["paused_after_call"] is None, seen
