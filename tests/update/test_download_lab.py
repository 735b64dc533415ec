"""An update over the lab's EDGE link (200 kbit/s down, 325 ms, 1% loss) with a cut in the
middle and the agent killed and restarted: the download resumes and completes, whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.update.conftest import Bundles, with_whole_wheels
from tests.update.link_lab import download_over_lab

pytestmark = [pytest.mark.timeout(400), pytest.mark.netns]


def test_delta_over_edge_survives_a_cut_and_a_restart(tmp_path: Path, bundles: Bundles) -> None:
    from harness import LabUnavailable

    try:
        # The one-line delta with its app wheel whole (~580 KB): with the wheel as a patch it
        # is ~40 KB, one range, with no middle to cut or restart in.
        (tmp_path / "whole").mkdir()
        update = with_whole_wheels(
            bundles, bundles.v101, bundles.v100, tmp_path / "whole" / "clinicbox-1.0.1.cbup"
        )
        result = download_over_lab(tmp_path, bundles.v100, update, bundles.keys_dir)
    except LabUnavailable as exc:
        pytest.skip(f"weak-link lab unavailable: {exc}")
    assert result.cuts == 1 and result.restarts == 1
    assert result.complete and result.sha256_ok
    # Everything the agent counted, handshakes and the range cut short included, is within
    # a few per cent of the bundle: nothing of it travelled twice. (The kill may take up to
    # 64 KiB of counting with it: the count is saved every 64 KiB of a range.)
    assert result.bundle_bytes - 64 * 1024 <= result.link_bytes < 1.1 * result.bundle_bytes
