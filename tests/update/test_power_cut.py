"""kill -9 of the updater and the service at a few random moments of an update never leaves
a box that does not start: it serves on the old or the new release, records intact
(benchmarks/update.py runs 50 such cuts)."""

from __future__ import annotations

import random
import subprocess

import pytest

from tests.update.conftest import Bundles, wait_serving
from tests.update.power_cut import cut_once, reset_root


# Three release installs and several service starts: minutes on a loaded 2-core host.
@pytest.mark.timeout(1200)
def test_power_cuts_during_an_update(supervised, bundles: Bundles, tmp_path) -> None:
    box, supervisor = supervised
    wait_serving(box, "1.0.0")
    pristine = tmp_path / "pristine-root"
    subprocess.run(["cp", "-a", str(box.root), str(pristine)], check=True)
    rng = random.Random(23)
    # Early (verify, wheels), in the venv install, and around the switch and restart.
    moments = [rng.uniform(0.1, 1.5), rng.uniform(2.0, 12.0), rng.uniform(12.0, 30.0)]
    for at_s in moments:
        result = cut_once(box, supervisor, bundles.v101, at_s, ("1.0.0", "1.0.1"))
        assert not result.bricked, result
        supervisor = reset_root(box, supervisor, pristine)
        wait_serving(box, "1.0.0")
    supervisor.stop()
