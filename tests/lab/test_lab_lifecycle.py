"""The lab always cleans up: on exit, on failure, on SIGTERM/SIGINT, after SIGKILL; and it
says why when it cannot run at all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import Lab, LabUnavailable, profiles
from harness.lab import sweep_stale
from harness.probe import ProbeRun

pytestmark = [pytest.mark.netns, pytest.mark.timeout(60)]

# A lab owner that reports what it made, then waits to be signalled.
OWNER = """
import json, signal, subprocess, sys, time
from harness import Lab, profiles
# A shell that starts a job in the background ignores SIGINT for it, and children inherit
# that; Ctrl-C at a terminal is what this stands for.
signal.signal(signal.SIGINT, signal.default_int_handler)
with Lab() as lab:
    box = lab.host("box")
    patient = lab.host("p1", link=profiles.EDGE)
    sleeper = lab.popen(box, ["sleep", "300"])
    print(json.dumps({"netns": lab.namespaces, "pids": [lab.emulator_pid, sleeper.pid]}),
          flush=True)
    time.sleep(120)
"""


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose (its parent just has not reaped it yet).
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def require_lab() -> None:
    try:
        with Lab():
            pass
    except LabUnavailable as exc:
        pytest.skip(f"weak-link lab unavailable: {exc}")


def test_exit_and_failure_leave_nothing_behind():
    require_lab()
    with pytest.raises(ZeroDivisionError):
        with Lab() as lab:
            box = lab.host("box")
            lab.host("p1", link=profiles.GPRS)
            sleeper = lab.popen(box, ["sleep", "300"])
            made = set(lab.namespaces)
            pids = [lab.emulator_pid, sleeper.pid]
            assert made <= namespaces()
            1 / 0  # noqa: B018 - the failure under test
    assert not made & namespaces()
    assert wait_gone(pids)  # type: ignore[arg-type]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_clean_up(sig):
    require_lab()
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    try:
        made = json.loads(owner.stdout.readline())
        assert set(made["netns"]) <= namespaces()
        owner.send_signal(sig)
        # Generous: this checks that cleanup happens, not how fast on a loaded machine.
        owner.wait(timeout=60)
    finally:
        owner.kill()
    assert not set(made["netns"]) & namespaces()
    assert wait_gone(made["pids"])


def test_sigkilled_owner_emulator_exits_and_next_lab_sweeps():
    require_lab()
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    made = json.loads(owner.stdout.readline())
    owner.kill()
    owner.wait(timeout=10)
    assert wait_gone(made["pids"][:1])  # the forwarder notices its parent is gone
    assert alive(made["pids"][1])  # nobody stopped the owner's own process...
    assert set(made["netns"]) <= set(sweep_stale())  # ...until the next lab sweeps
    assert not set(made["netns"]) & namespaces()
    assert wait_gone(made["pids"][1:])


def test_parallel_labs_do_not_collide():
    require_lab()
    with Lab() as one, Lab() as two:
        assert one.prefix != two.prefix
        flows = []
        for lab in (one, two):
            box = lab.host("box")
            patient = lab.host("p1", link=profiles.custom(delay_ms=10))
            assert box.ip == one.hosts["box"].ip  # same addresses, separate namespaces
            flows.append(ProbeRun(lab, patient, box, rate_kbps=40, size=100, seconds=0.6))
        assert all(len(flow.result()) > 10 for flow in flows)


def test_bad_names_and_unknown_links_are_refused(lab: Lab):
    lab.host("box")
    with pytest.raises(ValueError, match="host names"):
        lab.host("Bad Name")
    with pytest.raises(ValueError, match="exists"):
        lab.host("box")
    with pytest.raises(ValueError, match="not a host with an emulated link"):
        lab.cut("box")


def test_without_the_rights_it_says_why():
    code = (
        "from harness import Lab, LabUnavailable\n"
        "try:\n    Lab().start()\n"
        "except LabUnavailable as exc:\n    print('unavailable:', exc)\n"
    )
    if os.geteuid() != 0:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert "unavailable: creating network namespaces needs root" in done.stdout, done.stderr
        return
    # Root without capabilities (a locked-down container): `ip netns add` itself fails.
    done = subprocess.run(
        ["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-c", code],
        capture_output=True, text=True, timeout=30,
    )
    assert "unavailable: cannot create network namespaces: " in done.stdout, done.stderr
    assert "not permitted" in done.stdout


def test_the_namespace_prefix_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CLINICBOX_LAB_PREFIX", "zq")
    assert Lab().prefix.startswith(f"zq{os.getpid()}x")
    monkeypatch.setenv("CLINICBOX_LAB_PREFIX", "Bad-1")
    with pytest.raises(LabUnavailable, match="CLINICBOX_LAB_PREFIX must be 1-8 lowercase"):
        Lab()
