"""Bundles that must not be installed are refused before anything changes: one line on
stderr, exit code 2."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from appliance.update.releases import ReleaseRoot
from tests.update.conftest import Bundles, make_box


def _refused(box, bundle: Path) -> str:
    done = box.update("import", str(bundle))
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert not (box.root / "current").exists() or os.readlink(box.root / "current")
    return lines[0]


def _rewrite(src: Path, dest: Path, change) -> Path:
    with tarfile.open(src) as tin, tarfile.open(dest, "w") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read()
            name, data = change(member.name, data)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
    return dest


def test_untrusted_key_is_refused(tmp_path: Path, bundles: Bundles) -> None:
    box = make_box(tmp_path, bundles)
    other = tmp_path / "keys"
    other.mkdir()
    (other / "someone-else.pub").write_text("11" * 32 + "\n")
    box.env["CLINICBOX_RELEASE_KEYS"] = str(other)
    assert "does not trust" in _refused(box, bundles.v101)


def test_altered_manifest_is_refused(tmp_path: Path, bundles: Bundles) -> None:
    box = make_box(tmp_path, bundles)

    def bump(name: str, data: bytes) -> tuple[str, bytes]:
        if name == "manifest.json":
            doc = json.loads(data)
            doc["min_from_version"] = "0.0.1"
            data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return name, data

    bad = _rewrite(bundles.v100, tmp_path / "altered.cbup", bump)
    assert "signature is not valid" in _refused(box, bad)


def test_tampered_wheel_is_refused(tmp_path: Path, bundles: Bundles) -> None:
    box = make_box(tmp_path, bundles)

    def flip(name: str, data: bytes) -> tuple[str, bytes]:
        if name.startswith("wheels/clinicbox-"):
            data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
        return name, data

    bad = _rewrite(bundles.v100, tmp_path / "tampered.cbup", flip)
    line = _refused(box, bad)
    assert "tampered" in line and "clinicbox-1.0.0" in line
    assert not (box.root / "releases" / "1.0.0").exists()


def test_delta_without_its_base_is_refused(tmp_path: Path, bundles: Bundles) -> None:
    box = make_box(tmp_path, bundles)
    assert "import the full bundle" in _refused(box, bundles.v101)


def _pretend_running(box, version: str) -> None:
    """A release root whose current release is `version` (its directory complete)."""
    root = ReleaseRoot(box.root)
    (root.release_dir(version)).mkdir(parents=True)
    (root.release_dir(version) / ".complete").write_bytes(b"")
    root.switch(version)


def test_downgrade_is_refused(tmp_path: Path, bundles: Bundles) -> None:
    box = make_box(tmp_path, bundles)
    _pretend_running(box, "1.0.1")
    line = _refused(box, bundles.v100)
    assert "older than the running 1.0.1" in line and "rollback" in line


def test_too_little_disk_space_is_refused(tmp_path: Path, bundles: Bundles) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(small)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.strip()}")
    try:
        box = make_box(small, bundles)
        line = _refused(box, bundles.v100)
        assert "not enough disk space" in line and "MiB free" in line
        assert not (small / "opt" / "releases").exists()
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_second_updater_is_refused_while_one_runs(tmp_path: Path, bundles: Bundles) -> None:
    from appliance.update.apply import update_lock

    box = make_box(tmp_path, bundles)
    with update_lock(ReleaseRoot(box.root)) as held:
        assert held
        assert "another update is running" in _refused(box, bundles.v100)
    assert not (box.root / "releases").exists()


def test_bundle_for_another_platform_is_refused(tmp_path: Path, bundles: Bundles) -> None:
    from dataclasses import replace

    from appliance.update.manifest import Manifest, load_release_key, sign

    box = make_box(tmp_path, bundles)
    key = load_release_key(bundles.key)
    holder: dict[str, Manifest] = {}

    def for_arm(name: str, data: bytes) -> tuple[str, bytes]:
        if name == "manifest.json":
            holder["m"] = replace(Manifest.from_bytes(data), platform="aarch64")
            data = holder["m"].to_bytes()
        elif name == "manifest.sig":
            data = json.dumps(sign(holder["m"], key)).encode()
        return name, data

    arm = _rewrite(bundles.v100, tmp_path / "arm.cbup", for_arm)
    assert "bundle is for aarch64; this box is x86_64" in _refused(box, arm)
