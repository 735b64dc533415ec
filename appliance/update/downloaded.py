"""Bundles the sync agent downloaded (`<data dir>/updates/ready/`), and installing them:
`clinicbox update import-downloaded`, run as root by a timer after clinic hours."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appliance.update.manifest import BundleRefused, version_key

DOWNLOAD_DIR = "updates"
READY_DIR = "ready"
# Written by the sync agent (sync.agent.update_download): the offered bundle and progress.
STATE_FILE = "download.json"


def download_summary(data_dir: Path) -> dict[str, Any] | None:
    """The download under way or done, for `clinicbox update status`; None when none."""
    folder = data_dir / DOWNLOAD_DIR
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict):
        return None
    refused = state.get("refused") if isinstance(state.get("refused"), dict) else {}
    if not state.get("sha256"):
        return {"refused": refused} if refused else None
    part = folder / f"{state['sha256']}.part"
    return {
        "version": state.get("version"),
        "size": state.get("size"),
        "have": state.get("size")
        if state.get("ready")
        else (part.stat().st_size if part.exists() else 0),
        "ready": bool(state.get("ready")) and Path(str(state["ready"])).exists(),
        "refused": refused,
    }


def ready_bundles(data_dir: Path) -> list[Path]:
    """Downloaded, checked bundles waiting to be installed, newest release first
    (named `clinicbox-<version>-<sha256 prefix>.cbup` by the agent)."""
    ready = data_dir / DOWNLOAD_DIR / READY_DIR
    if not ready.is_dir():
        return []
    found = []
    for path in ready.glob("clinicbox-*.cbup"):
        try:
            found.append((version_key(path.name.split("-")[1]), path))
        except (BundleRefused, IndexError):
            continue
    return [p for _, p in sorted(found, reverse=True)]


DEFERRED = "deferred: call live"


def _deferred(target: Any, bundle: Path, reason: str) -> dict[str, Any]:
    """Record in the update state (shown by `update status` and the technician page) that
    the install waits for a call to end."""
    from appliance.update.apply import update_lock
    from appliance.update.releases import record_outcome

    version = bundle.name.split("-")[1]
    with update_lock(target.root) as held:
        if held:  # else another updater is writing the state: it has news of its own
            state = target.root.read_state()
            last = state.get("last") or {}
            if last.get("version") == version and last.get("outcome") == DEFERRED:
                state["history"] = list(state.get("history", []))[1:]  # one entry per wait
            record_outcome(state, version, DEFERRED, reason)
            target.root.write_state(state)
    return {"outcome": DEFERRED, "reason": reason, "version": version, "bundle": bundle.name}


def import_downloaded(target: Any, confirm: bool = True) -> dict[str, Any]:
    """Install the newest downloaded bundle (older ones are dropped: the newest supersedes
    them). A bundle is removed once it was installed, rolled back or refused, so a refused
    one is not tried every night; the agent does not fetch a rolled-back release again."""
    from appliance.update.apply import CallLive, UpdateBusy, import_bundle

    bundles = ready_bundles(target.data_dir)
    if not bundles:
        return {"outcome": "nothing downloaded"}
    newest, older = bundles[0], bundles[1:]
    for path in older:
        path.unlink(missing_ok=True)
    try:
        result = import_bundle(newest, target, confirm=confirm)
    except CallLive as exc:
        # Kept for the timer's next run: a call is no reason to give the release up.
        return _deferred(target, newest, str(exc))
    except UpdateBusy:
        raise
    except BundleRefused:
        newest.unlink(missing_ok=True)
        raise
    newest.unlink(missing_ok=True)
    return {**result, "bundle": newest.name}
