"""Release directories, the `current` symlink, the update state and the boot-time decision.

Standard library only: this file is also the launcher (`/opt/clinicbox/lib/releases.py`,
run by the system python3 before every start of the service), so it must work whatever a
broken release did to its own venv.

Layout under the release root (default /opt/clinicbox):
    releases/<version>/venv/        the release's own venv, installed offline from wheels
    releases/<version>/manifest.json
    releases/<version>/.complete    written last: a release without it is never started
    current -> releases/<version>   switched atomically (rename of a temporary symlink)
    wheels/<sha256>/<file>.whl      content-addressed wheels (deltas need only the missing)
    state/update.json               previous release, trial, last outcome (atomic writes)
    state/snapshots/<version>.db    the database as it was before switching to <version>
    releases/<version>/system/      the units and firewall script the release owns
    state/system/<version>/         the live ones before the first release that owned them

Every step is idempotent, and the state is written before the symlink is switched, so a
power cut at any point leaves a root that this launcher can start: the current release if
it is complete and its trial is still running, else the previous one.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

if __package__:
    from appliance.update import system_files
else:  # the launcher: /opt/clinicbox/lib/releases.py, with system_files.py beside it
    import system_files  # type: ignore[no-redef,import-not-found]

# A release under trial may crash and be restarted this many times before it is given up.
MAX_TRIAL_BOOTS = 3
DEFAULT_TRIAL_S = 300.0
DEFAULT_ROOT = Path("/opt/clinicbox")
# The install made by install.sh (its own venv beside `releases/`): what runs while no
# `current` exists, and what the first bundle's trial falls back to.
FACTORY = "factory"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` so a crash leaves either the old or the new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class ReleaseRoot:
    """One box's release root."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.releases = path / "releases"
        self.wheels = path / "wheels"
        self.current = path / "current"
        self.state_dir = path / "state"
        self.state_file = self.state_dir / "update.json"
        self.snapshots = self.state_dir / "snapshots"

    # --- releases -------------------------------------------------------------------
    def release_dir(self, version: str) -> Path:
        return self.releases / version

    def is_complete(self, version: str | None) -> bool:
        if version == FACTORY:
            return self.has_factory()
        return bool(version) and (self.release_dir(str(version)) / ".complete").is_file()

    def has_factory(self) -> bool:
        return (self.path / "venv" / "bin" / "python").exists()

    def running_version(self) -> str | None:
        """The release `current` names, else FACTORY when install.sh's venv runs."""
        return self.current_version() or (FACTORY if self.has_factory() else None)

    def complete_versions(self) -> list[str]:
        if not self.releases.is_dir():
            return []
        found = [d.name for d in self.releases.iterdir() if (d / ".complete").is_file()]
        return sorted(found, key=_numeric)

    def current_version(self) -> str | None:
        try:
            return Path(os.readlink(self.current)).name
        except OSError:
            return None

    def switch(self, version: str) -> None:
        """Point `current` at `version` atomically (rename of a fresh symlink over it)."""
        tmp = self.path / f".current.tmp-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(Path("releases") / version, tmp)
        os.replace(tmp, self.current)
        _fsync_dir(self.path)

    # --- system files (units, firewall) ---------------------------------------------
    def system_set(self, version: str | None) -> Path | None:
        """Where the system files of `version` (None: install.sh's) are kept, if anywhere."""
        name = version or FACTORY
        own = self.release_dir(name) / "system"
        if name != FACTORY and self.is_complete(name) and own.is_dir():
            return own
        saved = self.state_dir / "system" / name
        return saved if (saved / system_files.SAVED_MARK).is_file() else None

    def keep_system_set(self, version: str | None) -> None:
        """Before a release with its own system files replaces `version`, keep the live ones
        so a rollback to `version` can put them back (once; a release that owns a set keeps
        it in its directory)."""
        if self.system_set(version) is None:
            system_files.save_live_set(self.state_dir / "system" / (version or FACTORY))

    def place_system_files(self, version: str | None) -> list[str]:
        """Make the live units and firewall script those of `version`; tell systemd and
        nftables on a real box. Returns the names that changed."""
        source = self.system_set(version)
        if source is None:
            return []
        changed = system_files.place_set(source)
        system_files.activate(changed)
        return changed

    # --- state ----------------------------------------------------------------------
    def read_state(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.state_file.read_text())
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def write_state(self, state: dict[str, Any]) -> None:
        write_atomic(self.state_file, json.dumps(state, indent=2, sort_keys=True).encode())

    # --- the database snapshot ------------------------------------------------------
    def snapshot_path(self, version: str) -> Path:
        return self.snapshots / f"{version}.db"

    def snapshot_database(self, database: Path, version: str) -> Path | None:
        """A consistent copy of the live database (SQLite backup API, safe while it runs)."""
        if not database.exists():
            return None
        dest = self.snapshot_path(version)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(dest.parent, 0o700)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        os.chmod(tmp, 0o600)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
        return dest


def restore_database(snapshot: Path, database: Path) -> None:
    """Put the snapshot back in place of the database (the service is not running)."""
    tmp = database.with_name(f".{database.name}.restore-{os.getpid()}")
    shutil.copyfile(snapshot, tmp)
    stat = database.stat() if database.exists() else None
    if stat is not None:
        os.chown(tmp, stat.st_uid, stat.st_gid)
    os.chmod(tmp, 0o600)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    # The new release's WAL belongs to the database being replaced: applied to the
    # snapshot it would corrupt it.
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, database)
    _fsync_dir(database.parent)


def _numeric(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (-1,)


def _now() -> float:
    return time.time()


def record_outcome(state: dict[str, Any], version: str, outcome: str, reason: str = "") -> None:
    """The last update's outcome, and a short history for the technician."""
    entry = {"version": version, "outcome": outcome, "reason": reason, "at": _now()}
    state["last"] = entry
    state["history"] = ([entry] + list(state.get("history", [])))[:10]


def roll_back(
    root: ReleaseRoot, state: dict[str, Any], reason: str, database: Path | None
) -> dict[str, Any]:
    """Back to the release the trial started from; restore the snapshot if it migrated."""
    trial = state["trial"]
    previous = trial["previous"]
    if trial.get("restore_snapshot") and database is not None:
        snapshot = root.snapshot_path(trial["version"])
        if snapshot.exists():
            restore_database(snapshot, database)
    if previous == FACTORY:
        root.current.unlink(missing_ok=True)
        _fsync_dir(root.path)
    else:
        root.switch(previous)
    state["trial"] = None
    state["current"] = previous
    record_outcome(state, trial["version"], "rolled-back", reason)
    root.write_state(state)
    return state


def prepare(root: ReleaseRoot, database: Path | None) -> str | None:
    """Decide which release starts now (run before every start); return its version.

    A trial release that was failed by its health check, crashed MAX_TRIAL_BOOTS times, or
    outlived its trial window unconfirmed is rolled back here, before anything of it runs.
    The live units and firewall script are then made those of the release that starts (a
    cut between the switch and placing them is finished here).
    """
    version = _choose(root, database)
    root.place_system_files(version)
    return version


def _choose(root: ReleaseRoot, database: Path | None) -> str | None:
    state = root.read_state()
    trial = state.get("trial")
    current = root.current_version()
    if trial and current == trial.get("version"):
        reason = None
        if trial.get("failed"):
            reason = str(trial["failed"])
        elif not root.is_complete(current):
            reason = "release files incomplete"
        elif int(trial.get("boots", 0)) >= MAX_TRIAL_BOOTS:
            reason = f"stopped {trial['boots']} times during its trial"
        elif _now() > float(trial.get("deadline", 0)):
            reason = "not confirmed healthy within the trial window"
        if reason is not None and root.is_complete(trial.get("previous")):
            state = roll_back(root, state, reason, database)
            return None if state["current"] == FACTORY else str(state["current"])
        if reason is None:
            trial["boots"] = int(trial.get("boots", 0)) + 1
            root.write_state(state)
            return str(current)
    if root.is_complete(current):
        return str(current)
    # No usable `current` (a cut before the first switch, or files lost): the newest
    # complete release the state knows of, else any complete one.
    for candidate in (
        state.get("current"),
        state.get("previous"),
        *reversed(root.complete_versions()),
    ):
        if candidate == FACTORY and root.has_factory():
            root.current.unlink(missing_ok=True)
            return None
        if candidate != FACTORY and root.is_complete(candidate):
            root.switch(str(candidate))
            return str(candidate)
    # No bundle ever installed (or none usable): install.sh's own venv runs.
    root.current.unlink(missing_ok=True)
    return None


def main(argv: list[str] | None = None) -> None:
    """`releases.py [--root R] [--database DB] prepare | run ARGS...`

    prepare: choose the release (systemd's ExecStartPre, as root).
    run:     prepare, then exec the chosen release's `clinicbox ARGS` (outside systemd).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    root_path = Path(os.environ.get("CLINICBOX_RELEASE_ROOT", str(DEFAULT_ROOT)))
    data_dir = os.environ.get("CLINICBOX_DATA_DIR")
    database = Path(data_dir) / "clinicbox.db" if data_dir else None
    while args and args[0] in ("--root", "--database"):
        if args[0] == "--root":
            root_path = Path(args[1])
        else:
            database = Path(args[1])
        args = args[2:]
    if not args or args[0] not in ("prepare", "run"):
        raise SystemExit("usage: releases.py [--root R] [--database DB] prepare | run ARGS...")
    root = ReleaseRoot(root_path)
    serving = args[0] == "prepare" or args[1:2] == ["serve"]
    # Only a start of the service is a boot of the release: `run user add` during a trial
    # neither counts against it nor takes the service's pid file.
    version = prepare(root, database) if serving else root.current_version()
    if args[0] == "prepare":
        chosen = f"release {version}" if version else "the installed venv (no bundle yet)"
        print(f"clinicbox-launch: starting {chosen}", file=sys.stderr)
        return
    if serving:
        write_atomic(root.state_dir / "service.pid", f"{os.getpid()}\n".encode())
    program = root.current / "venv" / "bin" / "clinicbox"
    if not program.exists() and root.has_factory():
        program = root.path / "bin" / "clinicbox"
    os.execv(program, [str(program), *args[1:]])


if __name__ == "__main__":
    main()
