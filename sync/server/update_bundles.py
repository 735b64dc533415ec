"""Update bundles at the centre: publishing them, offering the newest to each box, and
keeping what each box reports of its software (release, slot, trial, last update).

The centre never installs or trusts a bundle itself: boxes check the release key's
signature and every wheel's sha256 before installing. The centre reads the manifest only to
know which platform and version a bundle is and which wheels it leaves out (a delta), and
serves the file by its sha256 with byte ranges so a box resumes where a cut left it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

from appliance.update.manifest import BundleRefused, Manifest, version_key
from sync.server.centre import Centre, Refused
from sync.server.models import DeviceRelease, UpdateBundle

BUNDLE_DIR = "update-bundles"
_SHA256_HEX = frozenset("0123456789abcdef")


def bundle_path(centre: Centre, sha256: str) -> Path:
    return centre.data_dir / BUNDLE_DIR / f"{sha256}.cbup"


def _read_manifest(path: Path) -> tuple[Manifest, set[str]]:
    """The bundle's manifest and the names of the wheels it carries."""
    try:
        with tarfile.open(path, "r:") as tar:
            member = tar.getmember("manifest.json")
            handle = tar.extractfile(member)
            if handle is None or member.size > 4 * 2**20:
                raise KeyError
            manifest = Manifest.from_bytes(handle.read())
            tar.getmember("manifest.sig")
            carried = {
                m.name.removeprefix("wheels/")
                for m in tar.getmembers()
                if m.name.startswith("wheels/")
            }
    except FileNotFoundError:
        raise Refused(400, f"no bundle at {path}") from None
    except (tarfile.TarError, OSError, KeyError, BundleRefused):
        raise Refused(400, f"{path} is not a signed update bundle") from None
    return manifest, carried


def publish_bundle(centre: Centre, path: Path) -> dict[str, Any]:
    """Copy a bundle into the centre's store and offer it to boxes of its platform."""
    manifest, carried = _read_manifest(path)
    if len(manifest.version) > 32 or len(manifest.platform) > 16 or len(manifest.python) > 8:
        raise Refused(400, f"{path}: version, platform or python name too long to serve")
    digest = hashlib.sha256()
    store = centre.data_dir / BUNDLE_DIR
    store.mkdir(mode=0o700, exist_ok=True)
    tmp = store / f".publish-{os.getpid()}.tmp"
    with path.open("rb") as src, tmp.open("wb") as out:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    sha256 = digest.hexdigest()
    os.replace(tmp, bundle_path(centre, sha256))
    needs = manifest.needs(carried)
    size = bundle_path(centre, sha256).stat().st_size
    row = {
        UpdateBundle.version: manifest.version,
        UpdateBundle.platform: manifest.platform,
        UpdateBundle.python: manifest.python,
        UpdateBundle.size: size,
        UpdateBundle.needs: json.dumps(needs),
        UpdateBundle.rollback: int(manifest.rollback),
        UpdateBundle.published_at: time.time(),
    }
    with centre.db.atomic():
        UpdateBundle.insert({UpdateBundle.sha256: sha256, **row}).on_conflict(
            conflict_target=[UpdateBundle.sha256], update=row
        ).execute()
    return {
        "sha256": sha256,
        "version": manifest.version,
        "platform": manifest.platform,
        "size": size,
        "delta": bool(needs),
    }


def published(centre: Centre) -> list[dict[str, Any]]:
    return [
        {
            "sha256": b.sha256,
            "version": b.version,
            "platform": b.platform,
            "python": b.python,
            "size": b.size,
            "delta": b.needs != "[]",
            "rollback": bool(b.rollback),
        }
        for b in UpdateBundle.select().order_by(UpdateBundle.published_at)
    ]


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _version(value: Any) -> str | None:
    """A release name as the box reports it: dotted numbers (as long as the column holds) or
    `factory`, else nothing."""
    if value == "factory":
        return value
    try:
        version_key(value)
    except (BundleRefused, TypeError):
        return None
    return value if len(value) <= 32 else None


def record_report(centre: Centre, device_id: str, report: dict[str, Any]) -> None:
    """Keep what the box says of its software (bounded, versions checked; no clinical data
    exists in it: release names, outcomes and the updater's reasons)."""
    last, trial, downloading = (
        part if isinstance(part := report.get(key), dict) else {}
        for key in ("last", "trial", "download")
    )
    progress = None
    if _version(downloading.get("version")):
        have, size = downloading.get("have"), downloading.get("size")
        if isinstance(have, int) and isinstance(size, int) and size > 0:
            progress = f"{downloading['version']} {min(100, 100 * have // size)}%"
    last_at = last.get("at")
    row = {
        DeviceRelease.current: _version(report.get("current")),
        DeviceRelease.previous: _version(report.get("previous")),
        DeviceRelease.trial: _version(trial.get("version")),
        DeviceRelease.last_version: _version(last.get("version")),
        DeviceRelease.last_outcome: _text(last.get("outcome"), 32),
        DeviceRelease.last_reason: _text(last.get("reason"), 200),
        DeviceRelease.last_at: float(last_at) if isinstance(last_at, int | float) else None,
        DeviceRelease.downloading: progress,
        DeviceRelease.reported_at: time.time(),
    }
    with centre.db.atomic():
        DeviceRelease.insert({DeviceRelease.device_id: device_id, **row}).on_conflict(
            conflict_target=[DeviceRelease.device_id], update=row
        ).execute()


def offer(centre: Centre, device_id: str, report: Any) -> dict[str, Any]:
    """Record the box's report; answer the newest release newer than the one it runs, with
    every bundle of that release (full and deltas) for the box to choose from."""
    if not isinstance(report, dict):
        raise Refused(400, "an update check is a JSON object")
    platform, python = report.get("platform"), report.get("python")
    if not isinstance(platform, str) or not isinstance(python, str):
        raise Refused(400, "an update check names the box's platform and python")
    record_report(centre, device_id, report)
    current = _version(report.get("current"))
    running = version_key(current) if current and current != "factory" else (-1,)
    skip = (
        {v for v in report.get("skip", []) if isinstance(v, str)}
        if isinstance(report.get("skip"), list)
        else set()
    )
    candidates = [
        b
        for b in UpdateBundle.select().where(
            (UpdateBundle.platform == platform)
            & (UpdateBundle.python == python)
            & (UpdateBundle.rollback == 0)
        )
        if version_key(b.version) > running and b.version not in skip
    ]
    if not candidates:
        return {"version": None, "bundles": []}
    newest = max(version_key(b.version) for b in candidates)
    chosen = [b for b in candidates if version_key(b.version) == newest]
    return {
        "version": chosen[0].version,
        "bundles": [
            {"sha256": b.sha256, "size": b.size, "needs": json.loads(b.needs)}
            for b in sorted(chosen, key=lambda b: b.size)
        ],
    }


def served_file(centre: Centre, sha256: str) -> Path:
    """The published bundle with this sha256; Refused(404) for anything else."""
    if len(sha256) != 64 or not set(sha256) <= _SHA256_HEX:
        raise Refused(404, "no such update bundle")
    if UpdateBundle.get_or_none(UpdateBundle.sha256 == sha256) is None:
        raise Refused(404, "no such update bundle")
    path = bundle_path(centre, sha256)
    if not path.is_file():
        raise Refused(404, "no such update bundle")
    return path


def releases_by_device(centre: Centre) -> dict[str, dict[str, Any]]:
    """What each box last reported of its software, for the operator page and CLI."""
    return {
        r.device_id: {
            "current": r.current,
            "previous": r.previous,
            "trial": r.trial,
            "last": None
            if r.last_outcome is None
            else {
                "version": r.last_version,
                "outcome": r.last_outcome,
                "reason": r.last_reason or "",
                "at": r.last_at,
            },
            "downloading": r.downloading,
            "reported_at": r.reported_at,
        }
        for r in DeviceRelease.select()
    }
