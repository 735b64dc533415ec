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


def test_calls_judged_on_timing_stay_out_of_the_parallel_part() -> None:
    parallel = _collected("not realtime")
    folders = {node.split("/")[1] for node in parallel if node.count("/") > 1}
    assert not folders & set(REALTIME_FOLDERS), sorted(folders & set(REALTIME_FOLDERS))
    # Marked tests in other folders: a sync lab flapping the link, an update over the lab.
    assert not [n for n in parallel if n.startswith("tests/sync/test_lab_flaps.py")]
    assert not [n for n in parallel if n.startswith("tests/update/test_download_lab.py")]
    # ...while the rest of those folders does run in it.
    assert [n for n in parallel if n.startswith("tests/sync/test_faults.py")]
    assert [n for n in parallel if n.startswith("tests/update/test_ab_switch.py")]
