"""Cutting a release: the app's wheel, every dependency wheel for the target, the system files
the release owns (units, firewall), a signed manifest, written as one bundle (full, or a delta
against an earlier release: wheels the box has are left out, changed ones sent as patches)."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from dataclasses import replace
from pathlib import Path

from appliance.errors import OperatorError
from appliance.update.bundle import MANIFEST, PATCH_SUFFIX, PATCHES, SYSTEM, WHEELS, write_bundle
from appliance.update.manifest import (
    Manifest,
    SystemFileEntry,
    WheelEntry,
    WheelPatch,
    load_release_key,
    sha256_file,
    sign,
)
from appliance.update.system_files import SOURCE_PATHS

# Raspberry Pi OS bookworm has glibc 2.36: any manylinux tag up to that runs there.
_GLIBC_TAGS = ("manylinux2014", "manylinux_2_28", "manylinux_2_34", "manylinux_2_36")
PLATFORMS = ("x86_64", "aarch64")
# pip download names each wheel it resolved on one of these lines.
_RESOLVED = re.compile(r"^\s*(?:Saved|File was already downloaded) (\S+\.whl)\s*$", re.M)
# What install.sh puts in /opt/clinicbox/lib and the units run.
_LIB_SCRIPTS = ("lib/first-boot.sh", "lib/firewall.sh", "lib/factory-reset.sh")


def _dependencies(source: Path) -> list[str]:
    doc = tomllib.loads((source / "pyproject.toml").read_text())
    return list(doc["project"]["dependencies"])


def _migrations(source: Path) -> list[int]:
    path = source / "appliance" / "store" / "migrations.py"
    if not path.exists():
        return []
    return sorted({int(v) for v in re.findall(r"^\s*(\d+)\s*:", path.read_text(), re.M)})


def build_app_wheel(source: Path, version: str, out_dir: Path) -> Path:
    """The app's wheel, built from a copy of `source` stamped with `version`."""
    with tempfile.TemporaryDirectory(prefix="clinicbox-src-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(
            source,
            copy,
            ignore=shutil.ignore_patterns(
                ".venv", ".git", "var", "__pycache__", "*.egg-info", "build", "tests", "benchmarks"
            ),
        )
        pyproject = copy / "pyproject.toml"
        text = re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject.read_text())
        pyproject.write_text(text)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "-w",
                str(out_dir),
                str(copy),
            ],
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        raise OperatorError(f"app wheel did not build: {done.stderr.strip()[-3000:]}")
    wheels = sorted(out_dir.glob(f"clinicbox-{version}-*.whl"))
    if not wheels:
        raise OperatorError("app wheel did not build")
    return wheels[0]


def download_dependencies(source: Path, platform: str, cache: Path) -> list[Path]:
    """Every dependency wheel for the target into `cache` (binary wheels only); returns the
    wheels pip resolved this time, never older versions the cache still holds."""
    if platform not in PLATFORMS:
        raise OperatorError(f"platform must be one of {', '.join(PLATFORMS)}")
    tags = [arg for tag in _GLIBC_TAGS for arg in ("--platform", f"{tag}_{platform}")]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            *tags,
            "-d",
            str(cache),
            *_dependencies(source),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise OperatorError(
            f"dependency wheels for {platform} not found: "
            f"{(done.stderr.strip().splitlines() or ['pip failed'])[-1]}"
        )
    resolved = [Path(m) for m in _RESOLVED.findall(done.stdout)]
    if not resolved or not all(p.is_file() for p in resolved):
        raise OperatorError(f"could not tell which wheels pip resolved for {platform}")
    return sorted(set(resolved))


def build_bundle(
    source: Path,
    version: str,
    key_path: Path,
    out: Path,
    platform: str,
    wheel_cache: Path,
    min_from: str = "0.0",
    rollback: bool = False,
    delta_from: Path | None = None,
    binary_deltas: bool = True,
    with_system_files: bool = True,
) -> dict[str, int]:
    """Write a signed bundle; returns its size and the full release size in bytes."""
    key = load_release_key(key_path)
    system = read_system_files(source) if with_system_files else {}
    wheel_cache.mkdir(parents=True, exist_ok=True)
    dependencies = download_dependencies(source, platform, wheel_cache / platform)
    with tempfile.TemporaryDirectory(prefix="clinicbox-app-") as app_dir:
        app = build_app_wheel(source, version, Path(app_dir))
        files = {p.name: p for p in dependencies}
        files[app.name] = app
        wheels = [WheelEntry(name, sha256_file(p), p.stat().st_size) for name, p in files.items()]
        manifest = Manifest(
            version=version,
            min_from_version=min_from,
            platform=platform,
            python="3.11",
            requirements=[f"clinicbox=={version}"],
            wheels=wheels,
            migrations=_migrations(source),
            rollback=rollback,
            system_files=[
                SystemFileEntry(name, hashlib.sha256(data).hexdigest(), len(data))
                for name, data in sorted(system.items())
            ],
        )
        carried = dict(files)
        extra = {SYSTEM + name: data for name, data in system.items()}
        if delta_from is not None:
            known = {w.sha256 for w in _manifest_of(delta_from).wheels}
            carried = {w.name: files[w.name] for w in wheels if w.sha256 not in known}
            if binary_deltas:
                patches = _patches(delta_from, {n: files[n] for n in carried})
                for patch, data in patches:
                    del carried[patch.name]
                    extra[PATCHES + patch.name + PATCH_SUFFIX] = data
                manifest = replace(manifest, patches=[p for p, _ in patches])
        size = write_bundle(out, manifest, sign(manifest, key), carried, extra)
    return {
        "bundle_bytes": size,
        "full_bytes": manifest.full_bytes,
        "wheels": len(wheels),
        "carried": len(carried),
        "patched": len(manifest.patches),
    }


def read_system_files(source: Path) -> dict[str, bytes]:
    """The release's systemd units and firewall script from `source`, the units checked with
    `systemd-analyze verify` (none when the source has no firmware_scripts/)."""
    if not (source / "firmware_scripts").is_dir():
        return {}
    found: dict[str, bytes] = {}
    for name, relative in SOURCE_PATHS.items():
        path = source / relative
        if not path.is_file():
            raise OperatorError(f"{relative} is missing from the source: a release owns it")
        found[name] = path.read_bytes()
    _verify_units({n: d for n, d in found.items() if n.startswith("systemd/")})
    return found


def _verify_units(units: dict[str, bytes]) -> None:
    """`systemd-analyze verify` of the units, pointed at a stand-in /opt/clinicbox (verify
    checks that every ExecStart names an executable)."""
    if shutil.which("systemd-analyze") is None:
        raise OperatorError("systemd-analyze is needed to check the units (Debian: systemd)")
    with tempfile.TemporaryDirectory(prefix="clinicbox-units-") as tmp:
        prefix = Path(tmp) / "opt"
        for program in ("bin/clinicbox", "lib/releases.py", *_LIB_SCRIPTS):
            stand_in = prefix / program
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.write_text("#!/bin/sh\n")
            stand_in.chmod(0o755)
        paths = []
        for name, data in units.items():
            unit = Path(tmp) / Path(name).name
            unit.write_bytes(data.replace(b"/opt/clinicbox", str(prefix).encode()))
            paths.append(str(unit))
        done = subprocess.run(
            ["systemd-analyze", "verify", *paths], capture_output=True, text=True, timeout=120
        )
    if done.returncode != 0 or done.stderr.strip():
        first = (done.stderr.strip().splitlines() or ["failed"])[0].replace(tmp, "")
        raise OperatorError(f"systemd-analyze verify refused the units: {first}")


def _patches(delta_from: Path, changed: dict[str, Path]) -> list[tuple[WheelPatch, bytes]]:
    """Binary patches for changed wheels whose earlier version the base bundle carries (same
    distribution name), where the patch is smaller than the wheel."""
    from appliance.update.wheel_patch import make_patch

    base = _manifest_of(delta_from)
    by_dist = {w.name.split("-")[0]: w for w in base.wheels}
    found = []
    with tarfile.open(delta_from, "r:") as tar:
        for name, path in sorted(changed.items()):
            old = by_dist.get(name.split("-")[0])
            if old is None:
                continue
            try:
                handle = tar.extractfile(WHEELS + old.name)
            except KeyError:
                continue  # the base bundle was itself a delta without it: send it whole
            if handle is None:
                continue
            old_bytes, new_bytes = handle.read(), path.read_bytes()
            data = make_patch(old_bytes, new_bytes)
            if len(data) >= len(new_bytes):
                continue
            digest = hashlib.sha256(data).hexdigest()
            found.append((WheelPatch(name, old.sha256, digest, len(data)), data))
    return found


def _manifest_of(path: Path) -> Manifest:
    """The manifest of an earlier bundle (or a bare manifest.json) a delta is made against."""
    import tarfile

    if tarfile.is_tarfile(path):
        with tarfile.open(path, "r:") as tar:
            handle = tar.extractfile(MANIFEST)
            if handle is None:
                raise OperatorError(f"{path} has no manifest")
            return Manifest.from_bytes(handle.read())
    return Manifest.from_bytes(path.read_bytes())
