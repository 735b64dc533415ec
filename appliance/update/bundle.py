"""The bundle file: one uncompressed tar (wheels are compressed already) holding
`manifest.json`, `manifest.sig`, `wheels/<file>.whl`, and where the release has them
`system/<name>` (its systemd units and firewall script, appliance.update.system_files) and
`patches/<file>.whl.zst` (changed wheels as binary patches, appliance.update.wheel_patch).

A delta bundle is the same format with only the wheels the box lacks: its manifest still
names every wheel of the release, and the rest come from the box's content-addressed store
(whole, or made from a wheel there with a patch).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import sys
import tarfile
from functools import partial
from pathlib import Path
from typing import Any

from appliance.update.manifest import (
    BundleRefused,
    Manifest,
    WheelEntry,
    WheelPatch,
    verify_signature,
    version_key,
)
from appliance.update.releases import FACTORY, ReleaseRoot

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
WHEELS = "wheels/"
SYSTEM = "system/"
PATCHES = "patches/"
PATCH_SUFFIX = ".zst"
# System files are a few KB each; anything bigger is not one.
MAX_SYSTEM_FILE = 2**20
# A release venv takes about 3.3x its wheels once unpacked (measured: 45 MB of x86_64 wheels
# made a 148 MB venv); the margin keeps the data dir from filling during the install.
UNPACK_FACTOR = 3.5
MARGIN_BYTES = 64 * 2**20


def write_bundle(
    out: Path,
    manifest: Manifest,
    signature: dict[str, str],
    wheels: dict[str, Path],
    extra: dict[str, bytes] | None = None,
) -> int:
    """Write the bundle; `wheels` maps file name to path for the wheels it carries, `extra`
    member name to content for its system files and patches."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    small = [(MANIFEST, manifest.to_bytes()), (SIGNATURE, json.dumps(signature).encode())]
    small += sorted((extra or {}).items())
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in small:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for name in sorted(wheels):
            info = tar.gettarinfo(str(wheels[name]), arcname=f"{WHEELS}{name}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with wheels[name].open("rb") as fh:
                tar.addfile(info, fh)
    os.replace(tmp, out)
    return out.stat().st_size


class OpenedBundle:
    """A bundle whose signature and manifest have been checked (wheels not yet)."""

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        tar: tarfile.TarFile,
        members: dict[str, tarfile.TarInfo],
    ) -> None:
        self.path = path
        self.manifest = manifest
        self._tar = tar
        # By tar member name: wheels/..., system/..., patches/...
        self._members = members

    @property
    def carried(self) -> list[str]:
        return sorted(n.removeprefix(WHEELS) for n in self._members if n.startswith(WHEELS))

    def close(self) -> None:
        self._tar.close()

    def system_files(self) -> dict[str, bytes]:
        """The release's system files by name, each checked against the signed manifest."""
        found = {}
        for entry in self.manifest.system_files:
            data = self._read_checked(
                SYSTEM + entry.name, entry.sha256, entry.size, MAX_SYSTEM_FILE
            )
            found[entry.name] = data
        return found

    def _read_checked(self, member_name: str, sha256: str, size: int, limit: int) -> bytes:
        member = self._members.get(member_name)
        shown = member_name.split("/", 1)[1]
        if member is None:
            raise BundleRefused(f"bundle lacks {shown}, which its manifest names")
        source = self._tar.extractfile(member)
        if source is None or member.size != size or size > limit:
            raise BundleRefused(f"bundle file {shown} was tampered with (size)")
        data = source.read(size)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BundleRefused(
                f"bundle file {shown} was tampered with (sha256 does not match the signed manifest)"
            )
        return data

    def store_wheels(self, root: ReleaseRoot) -> int:
        """Check every wheel's sha256 and put it in the content-addressed store.

        Returns the bytes taken from the bundle; the rest were already on the box."""
        taken = 0
        patches = {p.name: p for p in self.manifest.patches}
        for entry in self.manifest.wheels:
            target = root.wheels / entry.sha256 / entry.name
            member = self._members.get(WHEELS + entry.name)
            if target.is_file():
                continue
            if member is None and entry.name in patches:
                taken += self._patch_wheel(root, entry, patches[entry.name])
                continue
            if member is None:
                raise BundleRefused(
                    f"delta bundle lacks {entry.name}, which this box "
                    "does not have: import the full bundle"
                )
            source = self._tar.extractfile(member)
            if source is None or member.size != entry.size:
                raise BundleRefused(f"bundle file {entry.name} was tampered with (size)")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{entry.name}.tmp-{os.getpid()}")
            digest = hashlib.sha256()
            with tmp.open("wb") as out:
                for block in iter(partial(source.read, 1 << 20), b""):
                    digest.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != entry.sha256:
                tmp.unlink()
                raise BundleRefused(
                    f"bundle file {entry.name} was tampered with "
                    "(sha256 does not match the signed manifest)"
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
            taken += entry.size
        return taken

    def _patch_wheel(self, root: ReleaseRoot, entry: WheelEntry, patch: WheelPatch) -> int:
        """Make `entry` from the stored wheel its patch is against; the result must have the
        signed sha256 before it is stored. Returns the patch's size."""
        from appliance.update.wheel_patch import apply_patch

        bases = sorted((root.wheels / patch.base_sha256).glob("*.whl"))
        if not bases:
            raise BundleRefused(
                f"delta bundle patches {entry.name} from a wheel this box does not have: "
                "import the full bundle"
            )
        data = self._read_checked(
            PATCHES + entry.name + PATCH_SUFFIX, patch.sha256, patch.size, entry.size
        )
        try:
            made = apply_patch(bases[0].read_bytes(), data, entry.size)
        except ValueError:
            made = b""
        if len(made) != entry.size or hashlib.sha256(made).hexdigest() != entry.sha256:
            raise BundleRefused(
                f"bundle patch for {entry.name} does not make the wheel the signed manifest names"
            )
        target = root.wheels / entry.sha256 / entry.name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{entry.name}.tmp-{os.getpid()}")
        with tmp.open("wb") as out:
            out.write(made)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        return patch.size


def open_bundle(path: Path, keys_dir: Path) -> OpenedBundle:
    """Open a bundle and check its signature; BundleRefused with one line otherwise."""
    try:
        tar = tarfile.open(path, "r:")
    except FileNotFoundError:
        raise BundleRefused(f"no bundle at {path}") from None
    except (tarfile.TarError, OSError):
        raise BundleRefused(f"{path} is not an update bundle") from None
    try:
        raw_manifest = _read_member(tar, MANIFEST)
        signature: Any = json.loads(_read_member(tar, SIGNATURE))
        if not isinstance(signature, dict):
            raise ValueError
    except (KeyError, ValueError):
        tar.close()
        raise BundleRefused(f"{path} is not an update bundle (no signed manifest)") from None
    try:
        verify_signature(raw_manifest, signature, keys_dir)
        manifest = Manifest.from_bytes(raw_manifest)
        named = {WHEELS + w.name for w in manifest.wheels}
        named |= {SYSTEM + f.name for f in manifest.system_files}
        named |= {PATCHES + p.name + PATCH_SUFFIX for p in manifest.patches}
        members: dict[str, tarfile.TarInfo] = {}
        for member in tar.getmembers():
            if member.name in (MANIFEST, SIGNATURE):
                continue
            if not member.isfile() or member.name not in named:
                shown = member.name if len(member.name) <= 80 else member.name[:77] + "..."
                raise BundleRefused(f"bundle holds {shown!r}, which its manifest does not name")
            members[member.name] = member
    except BaseException:
        tar.close()
        raise
    return OpenedBundle(path, manifest, tar, members)


def _read_member(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.getmember(name)
    handle = tar.extractfile(member)
    if handle is None or member.size > 4 * 2**20:
        raise ValueError(name)
    return handle.read()


def check_order(manifest: Manifest, running: str | None) -> None:
    """No downgrade unless signed as a rollback release; respect the minimum version."""
    if running is None or running == FACTORY:
        return  # install.sh's venv: its version is not recorded, and it is what we leave
    if version_key(manifest.version) == version_key(running):
        raise BundleRefused(f"release {manifest.version} is already installed")
    if version_key(manifest.version) < version_key(running) and not manifest.rollback:
        raise BundleRefused(
            f"release {manifest.version} is older than the running "
            f"{running}: a downgrade needs a bundle signed as a rollback"
        )
    if version_key(running) < version_key(manifest.min_from_version) and not manifest.rollback:
        raise BundleRefused(
            f"release {manifest.version} updates only from "
            f"{manifest.min_from_version} or later; this box runs {running}"
        )


def check_platform(manifest: Manifest) -> None:
    """The bundle's wheels must run here: same CPU architecture and Python minor version."""
    machine = platform.machine()
    if manifest.platform != machine:
        raise BundleRefused(f"bundle is for {manifest.platform}; this box is {machine}")
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if manifest.python != here:
        raise BundleRefused(f"bundle is for Python {manifest.python}; this box has {here}")


def check_space(manifest: Manifest, root: ReleaseRoot, database: Path | None) -> None:
    """Enough room for the wheels, the unpacked venv and the database snapshot."""
    root.path.mkdir(parents=True, exist_ok=True)
    need = int(manifest.full_bytes * (1 + UNPACK_FACTOR)) + MARGIN_BYTES
    if database is not None and database.exists():
        need += database.stat().st_size
    free = shutil.disk_usage(root.path).free
    if free < need:
        raise BundleRefused(
            f"not enough disk space for release {manifest.version}: "
            f"{need // 2**20} MiB needed, {free // 2**20} MiB free "
            f"under {root.path}"
        )
