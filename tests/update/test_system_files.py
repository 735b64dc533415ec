"""A release owns its systemd units and firewall script: they travel in its bundle (checked with
systemd-analyze verify at build time), are put in place with the release and put back on
rollback; a bundle naming any other file, by `../` or an absolute path, is refused whole."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.errors import OperatorError
from appliance.update.build import read_system_files
from appliance.update.bundle import open_bundle
from appliance.update.manifest import Manifest, SystemFileEntry, load_release_key, sign
from appliance.update.releases import ReleaseRoot
from appliance.update.system_files import SYSTEM_FILES
from tests.conftest import REPO
from tests.update.conftest import LAUNCHER, Bundles, make_box


def test_bundle_carries_the_units_and_firewall_of_its_source(bundles: Bundles) -> None:
    opened = open_bundle(bundles.v100, bundles.keys_dir)
    try:
        carried = opened.system_files()
    finally:
        opened.close()
    assert set(carried) == set(SYSTEM_FILES)
    for name, data in carried.items():
        assert data == (REPO / "firmware_scripts" / name).read_bytes(), name


def test_build_refuses_units_systemd_analyze_rejects(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(REPO / "firmware_scripts", source / "firmware_scripts")
    assert set(read_system_files(source)) == set(SYSTEM_FILES)
    unit = source / "firmware_scripts" / "systemd" / "clinicbox.service"
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    with pytest.raises(OperatorError, match="systemd-analyze verify refused the units"):
        read_system_files(source)


def _signed_with_system_file(bundles: Bundles, dest: Path, name: str) -> Path:
    """v100 re-signed by the trusted key with one more system file, named `name`."""
    key = load_release_key(bundles.key)
    payload = b"[Service]\nExecStart=/bin/sh -c 'echo owned'\n"
    with tarfile.open(bundles.v100) as tin, tarfile.open(dest, "w") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "manifest.json":
                manifest = Manifest.from_bytes(data)
                entry = SystemFileEntry(name, hashlib.sha256(payload).hexdigest(), len(payload))
                manifest = replace(manifest, system_files=[*manifest.system_files, entry])
                data = manifest.to_bytes()
                signature = json.dumps(sign(manifest, key)).encode()
            elif member.name == "manifest.sig":
                continue
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
        for member_name, data in (("manifest.sig", signature), (f"system/{name}", payload)):
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
    return dest


@pytest.mark.parametrize("kind", ["dot-dot", "absolute", "other unit"])
def test_hostile_manifest_naming_another_file_is_refused(
    tmp_path: Path, bundles: Bundles, kind: str
) -> None:
    box = make_box(tmp_path, bundles)
    planted = tmp_path / "planted.service"
    name = {
        "dot-dot": "systemd/../../../../planted.service",
        "absolute": str(planted),
        "other unit": "systemd/ssh.service",
    }[kind]
    hostile = _signed_with_system_file(bundles, tmp_path / "hostile.cbup", name)
    done = box.update("import", str(hostile))
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "which a release may not replace" in lines[0]
    assert not planted.exists()
    assert not (box.root / "releases").exists()
    assert not list(tmp_path.rglob("planted.service"))


def _release_with_set(root: ReleaseRoot, version: str, marker: str | None) -> None:
    release = root.release_dir(version)
    release.mkdir(parents=True)
    if marker is not None:
        for name in SYSTEM_FILES:
            (release / "system" / name).parent.mkdir(parents=True, exist_ok=True)
            (release / "system" / name).write_text(f"# {marker} {name}\n")
    (release / ".complete").write_bytes(b"")


def _launch_prepare(root: ReleaseRoot, system: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "CLINICBOX_SYSTEM_ROOT": str(system)}
    done = subprocess.run(
        [sys.executable, str(LAUNCHER), "--root", str(root.path), "prepare"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def _live(system: Path) -> dict[str, str]:
    return {
        name: (system / path).read_text()
        for name, path in SYSTEM_FILES.items()
        if (system / path).exists()
    }


def test_units_follow_the_release_and_come_back_on_rollback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = tmp_path / "system"
    monkeypatch.setenv("CLINICBOX_SYSTEM_ROOT", str(system))
    for name, path in SYSTEM_FILES.items():  # what install.sh put there
        (system / path).parent.mkdir(parents=True, exist_ok=True)
        (system / path).write_text(f"# installed {name}\n")
    before = _live(system)
    root = ReleaseRoot(tmp_path / "opt")
    _release_with_set(root, "1.0", None)  # a release from before bundles owned units
    _release_with_set(root, "2.0", "release 2.0")
    root.switch("1.0")
    root.keep_system_set("1.0")
    # The updater switched to 2.0 and was cut before placing its units: the launcher, which
    # runs before every start, finishes that.
    root.write_state(
        {
            "current": "1.0",
            "trial": {
                "version": "2.0",
                "previous": "1.0",
                "started_at": time.time(),
                "deadline": time.time() + 300,
                "boots": 0,
                "failed": None,
                "restore_snapshot": False,
            },
        }
    )
    root.switch("2.0")
    _launch_prepare(root, system)
    live = _live(system)
    assert live == {n: f"# release 2.0 {n}\n" for n in SYSTEM_FILES}
    assert (system / SYSTEM_FILES["firewall.sh"]).stat().st_mode & 0o777 == 0o755
    assert (system / SYSTEM_FILES["systemd/clinicbox.service"]).stat().st_mode & 0o777 == 0o644

    # Its health check failed: the next start goes back to 1.0, and so do the units.
    state = root.read_state()
    state["trial"]["failed"] = "loopback call forwarded 0 video frames"
    root.write_state(state)
    _launch_prepare(root, system)
    assert root.current_version() == "1.0"
    assert _live(system) == before
