"""Installing a bundle: verify, store wheels, build the release's venv offline, snapshot the
database, switch `current`, restart, and commit only when the new release proves healthy."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import OperatorError
from appliance.live_call import live_participants
from appliance.update.bundle import check_order, check_platform, check_space, open_bundle
from appliance.update.manifest import BundleRefused, Manifest
from appliance.update.probe_secret import PROBE_HEADER, probe_secret
from appliance.update.releases import (
    DEFAULT_TRIAL_S,
    FACTORY,
    ReleaseRoot,
    record_outcome,
    write_atomic,
)

DEFAULT_KEYS_DIR = Path("/etc/clinicbox/release-keys")


class UpdateBusy(BundleRefused):
    """Another import or confirm holds the update lock."""


class CallLive(BundleRefused):
    """A call is live on this box: installing restarts the service, which would end it."""

    def __init__(self, participants: int) -> None:
        self.participants = participants
        who = f"{participants} participant{'' if participants == 1 else 's'}"
        super().__init__(
            f"a call with {who} is live; run again after it ends, or pass --during-call"
        )


def check_no_live_call(data_dir: Path) -> None:
    """CallLive while the box's server reports participants in a call (see appliance.live_call:
    a server that crashed or hung reports none)."""
    participants = live_participants(data_dir)
    if participants:
        raise CallLive(participants)


@dataclass(frozen=True)
class Target:
    """Where the update goes: the release root, the trusted keys and the running service."""

    root: ReleaseRoot
    keys_dir: Path
    data_dir: Path
    port: int
    restart: str = "systemd"  # "systemd", "pidfile" (a supervisor restarts it) or "none"
    host: str = "127.0.0.1"  # where the portal listens, as seen from the box itself

    @property
    def database(self) -> Path:
        return self.data_dir / "clinicbox.db"

    @classmethod
    def from_env(
        cls, data_dir: Path, port: int, restart: str | None = None, host: str = "0.0.0.0"
    ) -> Target:
        root = Path(os.environ.get("CLINICBOX_RELEASE_ROOT", "/opt/clinicbox"))
        keys = Path(os.environ.get("CLINICBOX_RELEASE_KEYS", str(DEFAULT_KEYS_DIR)))
        how = restart or os.environ.get("CLINICBOX_UPDATE_RESTART", "systemd")
        # A portal on every address answers on loopback; one bound to an address, there.
        local = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
        return cls(ReleaseRoot(root), keys, data_dir, port, how, local)


def install_release(
    root: ReleaseRoot, manifest: Manifest, system: dict[str, bytes] | None = None
) -> Path:
    """The release directory with its venv, made offline from the stored wheels, and the
    system files it owns under `system/`."""
    release = root.release_dir(manifest.version)
    if root.is_complete(manifest.version):
        return release
    # Left half-made by a cut: start it again (venv scripts name their absolute path, so a
    # release is built where it will live and marked complete last).
    shutil.rmtree(release, ignore_errors=True)
    release.mkdir(parents=True)
    # With pip (from the interpreter's own ensurepip, offline): the next update runs from this
    # release and installs with this venv's pip. Debian and Raspberry Pi OS: python3-venv.
    made = subprocess.run(
        [_base_python(), "-m", "venv", str(release / "venv")], capture_output=True, text=True
    )
    if made.returncode != 0:
        last = (made.stderr.strip().splitlines() or ["venv failed"])[-1]
        raise OperatorError(f"cannot make the release's venv (install python3-venv): {last}")
    with tempfile.TemporaryDirectory(prefix="clinicbox-links-") as links:
        for wheel in manifest.wheels:
            os.symlink(root.wheels / wheel.sha256 / wheel.name, Path(links) / wheel.name)
        done = subprocess.run(
            [
                str(release / "venv" / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-index",
                "--find-links",
                links,
                "--disable-pip-version-check",
                *manifest.requirements,
            ],
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise OperatorError(f"release {manifest.version} did not install: {last}")
    write_atomic(release / "manifest.json", manifest.to_bytes())
    for name, data in sorted((system or {}).items()):
        write_atomic(release / "system" / name, data)
    os.sync()  # every file of the release on disk before it is marked complete
    write_atomic(release / ".complete", b"")
    return release


def _base_python() -> str:
    """The system interpreter under whichever venv runs this (releases share none)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def restart_service(target: Target) -> None:
    if target.restart == "systemd":
        subprocess.run(["systemctl", "restart", "clinicbox.service"], check=False)
    elif target.restart == "pidfile":
        try:
            pid = int((target.root.state_dir / "service.pid").read_text())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass  # not running: the supervisor starts it on the current release


def import_bundle(
    path: Path,
    target: Target,
    trial_s: float = DEFAULT_TRIAL_S,
    confirm: bool = True,
    health_timeout_s: float = 120.0,
    during_call: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Verify and install a bundle, switch to it and (by default) confirm or roll back.

    Refused (CallLive) while a call is live on the box, unless `during_call`: checked before
    any work (verifying a bundle costs a call CPU) and again just before the switch, since
    building the release takes long enough for a call to start. `progress` is told each step
    as it begins (for the technician page's status)."""
    # Releases, wheels and the state are read by the service user: not the CLI's umask 077
    # (the database snapshots get their own 0700 directory).
    previous_umask = os.umask(0o022)
    try:
        with update_lock(target.root) as held:
            if not held:
                raise UpdateBusy("another update is running on this box; wait for it")
            return _import_bundle(
                path, target, trial_s, confirm, health_timeout_s, during_call, progress
            )
    except PermissionError as exc:
        raise OperatorError(
            f"not allowed to write {exc.filename}: run the update as root"
        ) from None
    finally:
        os.umask(previous_umask)


@contextmanager
def update_lock(root: ReleaseRoot) -> Iterator[bool]:
    """One updater at a time (the lock goes with the process, so a cut never leaves it held)."""
    root.state_dir.mkdir(parents=True, exist_ok=True)
    with (root.state_dir / "update.lock").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _import_bundle(
    path: Path,
    target: Target,
    trial_s: float,
    confirm: bool,
    health_timeout_s: float,
    during_call: bool,
    progress: Callable[[str], None] | None,
) -> dict[str, Any]:
    def step(name: str) -> None:
        if progress is not None:
            progress(name)

    root = target.root
    if not during_call:
        check_no_live_call(target.data_dir)
    step("verifying")
    bundle = open_bundle(path, target.keys_dir)
    try:
        manifest = bundle.manifest
        running = root.running_version()
        check_platform(manifest)
        check_order(manifest, running)
        check_space(manifest, root, target.database)
        system = bundle.system_files()
        taken = bundle.store_wheels(root)
    finally:
        bundle.close()
    step(f"verified {manifest.version}; installing")
    install_release(root, manifest, system)
    if system:
        root.keep_system_set(None if running == FACTORY else running)
    if not during_call:
        # The release stays built: run again after the call, and only the switch is left.
        check_no_live_call(target.data_dir)
    step(f"switching to {manifest.version} and restarting")
    state = root.read_state()
    if running is None:  # first release under this root: nothing to fall back to
        root.switch(manifest.version)
        root.place_system_files(manifest.version)
        state.update(current=manifest.version, trial=None)
        record_outcome(state, manifest.version, "installed")
        root.write_state(state)
        return {"version": manifest.version, "outcome": "installed", "bytes_from_bundle": taken}
    snapshot = root.snapshot_database(target.database, manifest.version)
    now = time.time()
    state["trial"] = {
        "version": manifest.version,
        "previous": running,
        "started_at": now,
        "deadline": now + trial_s,
        "boots": 0,
        "failed": None,
        "restore_snapshot": bool(manifest.migrations) and snapshot is not None,
    }
    root.write_state(state)  # before the switch: a cut after it still has a trial to judge
    root.switch(manifest.version)
    # A cut before this finishes is finished by the launcher before the next start.
    root.place_system_files(manifest.version)
    restart_service(target)
    result = {
        "version": manifest.version,
        "previous": running,
        "bytes_from_bundle": taken,
        "full_bytes": manifest.full_bytes,
        "outcome": "on trial",
    }
    if confirm:
        step(f"{manifest.version} on trial: health check (loopback call)")
        result.update(_confirm_trial(target, health_timeout_s))
    return result


def _ssl_context(data_dir: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(data_dir / "tls" / "ca.pem"))


def health_check(target: Target, version: str, timeout_s: float) -> str | None:
    """None when `version` serves and forwards media; else the reason it does not."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    base = f"https://{host}:{target.port}"
    deadline = time.monotonic() + timeout_s
    reason = "did not answer /healthz"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                base + "/healthz", context=_ssl_context(target.data_dir), timeout=5
            ) as resp:
                doc = json.loads(resp.read())
            if doc.get("version") != version:
                reason = f"still serving {doc.get('version')}"
            elif doc.get("status") == "ok":
                break
            else:
                reason = "health is degraded"
        except urllib.error.HTTPError as exc:
            reason = f"/healthz answered {exc.code}"
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    else:
        return reason
    secret = probe_secret(target.data_dir)
    request = urllib.request.Request(
        base + "/healthz/loopback-call", method="POST", headers={PROBE_HEADER: secret}
    )
    try:
        with urllib.request.urlopen(
            request, context=_ssl_context(target.data_dir), timeout=40
        ) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            doc = json.loads(exc.read())
        except ValueError:
            doc = {}
        if not isinstance(doc, dict) or "ok" not in doc:
            return f"loopback call failed ({exc.code})"
    except (OSError, ValueError) as exc:
        return f"loopback call failed ({exc.__class__.__name__})"
    if not doc.get("ok"):
        return (
            f"loopback call forwarded {doc.get('audio_frames')} audio and "
            f"{doc.get('video_frames')} video frames"
        )
    return None


def confirm_trial(target: Target, timeout_s: float = 120.0) -> dict[str, Any]:
    """Commit the release under trial if it is healthy; otherwise fail it and restart, so the
    launcher switches back before the new release runs again."""
    with update_lock(target.root) as held:
        if not held:
            return {"outcome": "an update is running"}
        return _confirm_trial(target, timeout_s)


def _confirm_trial(target: Target, timeout_s: float) -> dict[str, Any]:
    root = target.root
    state = root.read_state()
    trial = state.get("trial")
    if not trial:
        return {"outcome": "nothing on trial"}
    version = trial["version"]
    if root.current_version() != version:
        if time.time() > float(trial["deadline"]):
            state["trial"] = None
            record_outcome(state, version, "abandoned", "the switch never happened")
            root.write_state(state)
        return {"outcome": "not switched yet"}
    probe_secret(target.data_dir)
    budget = max(5.0, min(timeout_s, float(trial["deadline"]) - time.time()))
    reason = health_check(target, version, budget)
    state = root.read_state()
    trial = state.get("trial")
    if not trial or trial["version"] != version:
        return {"outcome": "superseded"}
    if reason is None:
        state["trial"] = None
        state["previous"] = trial["previous"]
        state["current"] = version
        record_outcome(state, version, "committed")
        root.write_state(state)
        return {"outcome": "committed"}
    trial["failed"] = reason
    root.write_state(state)
    restart_service(target)
    return {"outcome": "rolled back", "reason": reason}
