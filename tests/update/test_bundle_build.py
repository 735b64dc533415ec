"""A bundle carries the dependency wheels pip resolves for the release, not every wheel the
build's cache has gathered: an older version left in the cache (av 18.1.0 beside 18.1.1
once made the x86_64 bundle 36 MB bigger) stays out. build_bundle takes exactly the wheels
download_dependencies returns."""

from __future__ import annotations

import shutil
from pathlib import Path

from appliance.update.build import download_dependencies
from tests.conftest import REPO
from tests.update.conftest import WHEEL_CACHE


def test_stale_wheels_in_the_cache_are_not_resolved(tmp_path: Path) -> None:
    cache = tmp_path / "x86_64"
    if (WHEEL_CACHE / "x86_64").is_dir():
        shutil.copytree(WHEEL_CACHE / "x86_64", cache)
    cache.mkdir(exist_ok=True)
    stale = cache / "segno-1.0.0-py3-none-any.whl"
    stale.write_bytes(b"an older release's wheel")
    names = [p.name for p in download_dependencies(REPO, "x86_64", cache)]
    assert stale.name not in names
    assert any(n.startswith("segno-1.6.6-") for n in names)
    assert any(n.startswith("zstandard-") for n in names)
    # One wheel per distribution.
    dists = [n.split("-")[0].lower() for n in names]
    assert len(dists) == len(set(dists)), names
