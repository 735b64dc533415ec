"""A changed wheel travels as a binary patch against the wheel the box already has: the result
is checked against the signed manifest's sha256 before it is stored, and a box without the
base is told to import the full bundle (over the sync link it is offered the full one)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.update.bundle import open_bundle
from appliance.update.manifest import BundleRefused, Manifest, load_release_key, sign
from appliance.update.releases import ReleaseRoot
from tests.update.conftest import Bundles


def _store(bundle: Path, bundles: Bundles, root: ReleaseRoot) -> int:
    opened = open_bundle(bundle, bundles.keys_dir)
    try:
        return opened.store_wheels(root)
    finally:
        opened.close()


def test_one_line_change_travels_as_a_small_patch(tmp_path: Path, bundles: Bundles) -> None:
    opened = open_bundle(bundles.v101, bundles.keys_dir)
    opened.close()
    manifest = opened.manifest
    assert [p.name for p in manifest.patches] == [
        w.name for w in manifest.wheels if w.name.startswith("clinicbox-")
    ]
    app = next(w for w in manifest.wheels if w.name.startswith("clinicbox-"))
    patch = manifest.patches[0]
    assert patch.size < 0.1 * app.size
    assert opened.carried == []  # nothing else changed, and the app wheel is patched
    # Over the sync link, a box must hold the patch's base to be offered this bundle.
    base = open_bundle(bundles.v100, bundles.keys_dir)
    base.close()
    old_app = next(w for w in base.manifest.wheels if w.name.startswith("clinicbox-"))
    assert patch.base_sha256 == old_app.sha256
    assert old_app.sha256 in manifest.needs(set(opened.carried))

    root = ReleaseRoot(tmp_path / "opt")
    _store(bundles.v100, bundles, root)
    assert _store(bundles.v101, bundles, root) == patch.size
    made = root.wheels / app.sha256 / app.name
    assert hashlib.sha256(made.read_bytes()).hexdigest() == app.sha256


def test_patch_without_its_base_asks_for_the_full_bundle(tmp_path: Path, bundles: Bundles) -> None:
    root = ReleaseRoot(tmp_path / "opt")
    _store(bundles.v100, bundles, root)
    opened = open_bundle(bundles.v101, bundles.keys_dir)
    opened.close()
    base = opened.manifest.patches[0].base_sha256
    for path in (root.wheels / base).iterdir():
        path.unlink()
    with pytest.raises(BundleRefused, match="does not have: import the full bundle"):
        _store(bundles.v101, bundles, root)


def test_patch_making_another_wheel_is_refused(tmp_path: Path, bundles: Bundles) -> None:
    """A patch signed by a trusted key whose output is not the wheel the manifest names (its
    own sha256 matches, so only the check of the result can catch it)."""
    key = load_release_key(bundles.key)
    bad = tmp_path / "bad-patch.cbup"
    with tarfile.open(bundles.v101) as tin:
        members = {m.name: tin.extractfile(m).read() for m in tin.getmembers()}  # type: ignore[union-attr]
    manifest = Manifest.from_bytes(members["manifest.json"])
    patch = manifest.patches[0]
    name = f"patches/{patch.name}.zst"
    # Patch the base into something else: the old wheel with one byte changed.
    from appliance.update.wheel_patch import make_patch

    with tarfile.open(bundles.v100) as tin:
        base_name = next(n for n in tin.getnames() if n.startswith("wheels/clinicbox-"))
        base_bytes = tin.extractfile(base_name).read()  # type: ignore[union-attr]
    other = bytearray(base_bytes)
    other[200] ^= 1
    members[name] = make_patch(base_bytes, bytes(other))
    forged = replace(
        patch, sha256=hashlib.sha256(members[name]).hexdigest(), size=len(members[name])
    )
    manifest = replace(manifest, patches=[forged])
    members["manifest.json"] = manifest.to_bytes()
    members["manifest.sig"] = json.dumps(sign(manifest, key)).encode()
    with tarfile.open(bad, "w") as tout:
        for member_name, data in members.items():
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))

    root = ReleaseRoot(tmp_path / "opt")
    _store(bundles.v100, bundles, root)
    with pytest.raises(BundleRefused, match="does not make the wheel the signed manifest names"):
        _store(bad, bundles, root)
    app = next(w for w in manifest.wheels if w.name == patch.name)
    assert not (root.wheels / app.sha256).exists()
