"""The bundle file: one uncompressed tar (wheels are compressed already) holding
`manifest.json`, `manifest.sig` and `wheels/<file>.whl`.

A delta bundle is the same format with only the wheels the box lacks: its manifest still
names every wheel of the release, and the rest come from the box's content-addressed store.
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
    verify_signature,
    version_key,
)
from appliance.update.releases import FACTORY, ReleaseRoot

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
# A release venv takes about 3.3x its wheels once unpacked (measured: 45 MB of x86_64 wheels
# made a 148 MB venv); the margin keeps the data dir from filling during the install.
UNPACK_FACTOR = 3.5
MARGIN_BYTES = 64 * 2**20


def write_bundle(
    out: Path, manifest: Manifest, signature: dict[str, str], wheels: dict[str, Path]
) -> int:
    """Write the bundle; `wheels` maps file name to path for the wheels it carries."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (
            (MANIFEST, manifest.to_bytes()),
            (SIGNATURE, json.dumps(signature).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for name in sorted(wheels):
            info = tar.gettarinfo(str(wheels[name]), arcname=f"wheels/{name}")
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
        self._members = members

    @property
    def carried(self) -> list[str]:
        return sorted(self._members)

    def close(self) -> None:
        self._tar.close()

    def store_wheels(self, root: ReleaseRoot) -> int:
        """Check every wheel's sha256 and put it in the content-addressed store.

        Returns the bytes taken from the bundle; the rest were already on the box."""
        taken = 0
        for entry in self.manifest.wheels:
            target = root.wheels / entry.sha256 / entry.name
            member = self._members.get(entry.name)
            if member is None:
                if not target.is_file():
                    raise BundleRefused(
                        f"delta bundle lacks {entry.name}, which this box "
                        "does not have: import the full bundle"
                    )
                continue
            if target.is_file():
                continue
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
        names = {w.name for w in manifest.wheels}
        members: dict[str, tarfile.TarInfo] = {}
        for member in tar.getmembers():
            if member.name in (MANIFEST, SIGNATURE):
                continue
            name = member.name.removeprefix("wheels/")
            if not member.isfile() or "/" in name or name not in names:
                raise BundleRefused(f"bundle holds {member.name}, which its manifest does not name")
            members[name] = member
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
