"""Cutting a release: the app's wheel, every dependency wheel for the target, a signed
manifest, written as one bundle (full, or a delta against an earlier release's manifest)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from appliance.errors import OperatorError
from appliance.update.bundle import MANIFEST, write_bundle
from appliance.update.manifest import Manifest, WheelEntry, load_release_key, sha256_file, sign

# Raspberry Pi OS bookworm has glibc 2.36: any manylinux tag up to that runs there.
_GLIBC_TAGS = ("manylinux2014", "manylinux_2_28", "manylinux_2_34", "manylinux_2_36")
PLATFORMS = ("x86_64", "aarch64")


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


def download_dependencies(source: Path, platform: str, cache: Path) -> None:
    """Every dependency wheel for the target into `cache` (binary wheels only)."""
    if platform not in PLATFORMS:
        raise OperatorError(f"platform must be one of {', '.join(PLATFORMS)}")
    tags = [arg for tag in _GLIBC_TAGS for arg in ("--platform", f"{tag}_{platform}")]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
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
) -> dict[str, int]:
    """Write a signed bundle; returns its size and the full release size in bytes."""
    key = load_release_key(key_path)
    wheel_cache.mkdir(parents=True, exist_ok=True)
    download_dependencies(source, platform, wheel_cache / platform)
    with tempfile.TemporaryDirectory(prefix="clinicbox-app-") as app_dir:
        app = build_app_wheel(source, version, Path(app_dir))
        files = {p.name: p for p in sorted((wheel_cache / platform).glob("*.whl"))}
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
        )
        carried = dict(files)
        if delta_from is not None:
            known = {w.sha256 for w in _manifest_of(delta_from).wheels}
            carried = {w.name: files[w.name] for w in wheels if w.sha256 not in known}
        size = write_bundle(out, manifest, sign(manifest, key), carried)
    return {
        "bundle_bytes": size,
        "full_bytes": manifest.full_bytes,
        "wheels": len(wheels),
        "carried": len(carried),
    }


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
