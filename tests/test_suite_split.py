"""`make test` runs real-time tests alone in one process and the rest on two workers: the split
(the `realtime` mark, tests/conftest.py) must keep every call judged on timing, and the
relay's tunnel, out of the parallel part."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REALTIME_FOLDERS, REPO


def _collected(mark: str) -> list[str]:
    """Test ids pytest selects with this mark expression."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--collect-only",
            "-m",
            mark,
            "tests",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return [line for line in done.stdout.splitlines() if "::" in line]


#: What a file whose tests walk pages only must not use: a call, a namespace, the lab.
CALL_MACHINERY = (
    "loopback_namespace",
    "scheduled_call",
    "start_box_in",
    "chromium_in",
    "Join the call",
    "#join-btn",
    "RTCPeerConnection",
    "aiortc",
    "harness",
    "netns",
    "lab_call",
)


def test_calls_judged_on_timing_stay_out_of_the_parallel_part() -> None:
    parallel = _collected("not realtime")
    pages = set(_collected("pages and not realtime"))
    folders = {node.split("/")[1] for node in parallel if node.count("/") > 1 and node not in pages}
    assert not folders & set(REALTIME_FOLDERS), sorted(folders & set(REALTIME_FOLDERS))
    # Browser tests marked `pages` run in the parallel part: they only walk the portal's pages.
    # None of their files may start a call or reach the lab, and none lives outside tests/e2e.
    page_files = {node.split("::")[0] for node in pages}
    assert page_files, "no browser test walks pages in the parallel part"
    assert {f.split("/")[1] for f in page_files} == {"e2e"}, sorted(page_files)
    for name in sorted(page_files):
        source = (REPO / name).read_text()
        used = [word for word in CALL_MACHINERY if word in source]
        assert not used, f"{name} is marked `pages` but uses {used}: it makes a call"
    # ...and a browser call stays in the real-time part.
    assert not [n for n in parallel if n.startswith("tests/e2e/test_call_sfu.py")]
    # Marked tests in other folders: a sync lab flapping the link, an update over the lab.
    assert not [n for n in parallel if n.startswith("tests/sync/test_lab_flaps.py")]
    assert not [n for n in parallel if n.startswith("tests/update/test_download_lab.py")]
    # ...while the rest of those folders does run in it.
    assert [n for n in parallel if n.startswith("tests/sync/test_faults.py")]
    assert [n for n in parallel if n.startswith("tests/update/test_ab_switch.py")]
