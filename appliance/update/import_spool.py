"""Import from the technician page, without giving the web process any power over releases.

The portal runs as the unprivileged service user. It never verifies or installs a bundle: it
puts the technician's choice into a spool directory it owns (`<data dir>/update-import/`,
0700), one small request file (0600) naming either a bundle uploaded through the page (kept
beside the spool in `update-import.files/`) or a bundle file on a mounted stick. A root
systemd path unit (`clinicbox-update-import.path`, DirectoryNotEmpty on the spool) starts
`clinicbox-update-import.service`, which runs `clinicbox update import-spool`: the same code
as `clinicbox update import`, outcome by outcome written to `<release root>/state/import.json`
(0644, root's), which the page shows.

The root side trusts nothing the web user wrote: a request is a few hundred bytes of JSON, an
uploaded bundle is named only by a random id and opened without following links (and made
root's, so the web user cannot rewrite it while it is checked), and a path on a stick must
resolve under one of the removable-media directories.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from appliance.errors import OperatorError
from appliance.live_call import live_participants, pid_alive
from appliance.update.manifest import BundleRefused
from appliance.update.releases import ReleaseRoot, write_atomic

SPOOL_DIR = "update-import"  # watched by the path unit: only whole requests land here
FILES_DIR = "update-import.files"  # uploads, written here first
STATUS_FILE = "import.json"  # under the release root's state/
BUNDLE_SUFFIX = ".cbup"
DEFAULT_MEDIA_DIRS = ("/media", "/run/media", "/mnt")
# A full bundle is ~82 MB; room for a few releases' growth, not for filling the card.
DEFAULT_UPLOAD_MAX_BYTES = 512 * 2**20
# Kept free beside an upload, so the records never run out of room because of one.
UPLOAD_MARGIN_BYTES = 64 * 2**20
MAX_REQUEST_BYTES = 4096
# Where on a stick bundles are looked for: /media/<user>/<label>/<folder>/x.cbup at most.
MAX_DEPTH = 4
MAX_LISTED = 50
_ID = re.compile(r"^[0-9a-f]{32}$")


class ImportQueueRefused(OperatorError):
    """The page cannot queue this import; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FoundBundle:
    """A bundle file on mounted removable media."""

    path: str
    name: str
    size: int


def media_dirs() -> list[Path]:
    """Where removable media are mounted (`CLINICBOX_UPDATE_MEDIA_DIRS`, colon-separated).
    The root runner reads the same variable: set it in both units if you change it."""
    raw = os.environ.get("CLINICBOX_UPDATE_MEDIA_DIRS")
    names = raw.split(":") if raw else list(DEFAULT_MEDIA_DIRS)
    return [Path(n) for n in names if n.strip()]


def upload_max_bytes() -> int:
    raw = os.environ.get("CLINICBOX_UPDATE_UPLOAD_MAX_BYTES", "")
    return int(raw) if raw.isdigit() else DEFAULT_UPLOAD_MAX_BYTES


def status_path(root: ReleaseRoot) -> Path:
    return root.state_dir / STATUS_FILE


# --- the web side (service user) ----------------------------------------------------------
def bundles_on_media(dirs: list[Path] | None = None) -> list[FoundBundle]:
    """Bundle files (`*.cbup`) on mounted media, by name; unreadable folders are skipped."""
    found: list[FoundBundle] = []
    for top in dirs if dirs is not None else media_dirs():
        for path in _walk(top, MAX_DEPTH):
            try:
                info = path.stat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append(FoundBundle(str(path), path.name, info.st_size))
            if len(found) >= MAX_LISTED:
                return sorted(found, key=lambda b: b.path)
    return sorted(found, key=lambda b: b.path)


def _walk(folder: Path, depth: int) -> Iterator[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir(follow_symlinks=False) and depth > 1:
                yield from _walk(Path(entry.path), depth - 1)
            elif entry.name.endswith(BUNDLE_SUFFIX) and entry.is_file(follow_symlinks=False):
                yield Path(entry.path)
        except OSError:
            continue


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def import_in_progress(data_dir: Path, root: ReleaseRoot) -> bool:
    """A request waits in the spool, or the runner's status shows one under way."""
    spool = data_dir / SPOOL_DIR
    if spool.is_dir() and any(spool.glob("*.json")):
        return True
    status = read_status(root)
    return bool(status and status.get("running"))


def refuse_during_call(data_dir: Path) -> None:
    """Say so at once while a call is live (the root runner would refuse it anyway), before a
    technician waits for an upload that cannot be installed now."""
    participants = live_participants(data_dir)
    if participants:
        who = f"{participants} participant{'' if participants == 1 else 's'}"
        raise ImportQueueRefused(
            f"A call with {who} is live: installing restarts the box and would end it. "
            "Choose the bundle again once the call is over.",
            409,
        )


def queue_stick_bundle(data_dir: Path, root: ReleaseRoot, chosen: str) -> str:
    """Queue a bundle found on a stick (it must be one `bundles_on_media` lists now)."""
    refuse_during_call(data_dir)
    if chosen not in {b.path for b in bundles_on_media()}:
        raise ImportQueueRefused(
            "That bundle is not on a mounted stick any more: plug it in and reload the page.", 400
        )
    return _queue(data_dir, root, {"path": chosen, "name": Path(chosen).name})


def queue_upload(
    data_dir: Path, root: ReleaseRoot, stream: IO[bytes], filename: str, length: int | None
) -> str:
    """Copy an uploaded bundle into the spool's files (0600) and queue it.

    Refused (with the HTTP status to answer) when it is too big, would leave too little disk,
    or another import is under way. The bundle itself is checked by the root runner."""
    limit = upload_max_bytes()
    if length is not None and length > limit:
        raise ImportQueueRefused(_too_big(limit), 413)
    refuse_during_call(data_dir)
    if import_in_progress(data_dir, root):
        raise ImportQueueRefused("An update is already under way: wait for its outcome.", 409)
    free = shutil.disk_usage(data_dir).free
    if length is not None and length + UPLOAD_MARGIN_BYTES > free:
        raise ImportQueueRefused(_no_room(length, free), 507)
    files = _private_dir(data_dir / FILES_DIR)
    request_id = secrets.token_hex(16)
    dest = files / f"{request_id}{BUNDLE_SUFFIX}"
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(1 << 20):
                written += len(chunk)
                if written > limit:
                    raise ImportQueueRefused(_too_big(limit), 413)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise ImportQueueRefused(
            f"The upload could not be stored ({exc.strerror or exc}): free some disk space.",
            507,
        ) from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    name = Path(filename or "bundle").name[:120]
    return _queue(data_dir, root, {"upload": request_id, "name": name}, request_id)


def _too_big(limit: int) -> str:
    return (
        f"That file is larger than the {limit // 2**20} MiB a bundle may be here: "
        "it is not an update bundle."
    )


def _no_room(length: int, free: int) -> str:
    return (
        f"Not enough disk space to receive it: {length // 2**20} MiB sent, "
        f"{free // 2**20} MiB free (the records need room too)."
    )


def _queue(
    data_dir: Path, root: ReleaseRoot, request: dict[str, str], request_id: str | None = None
) -> str:
    if import_in_progress(data_dir, root):
        raise ImportQueueRefused("An update is already under way: wait for its outcome.", 409)
    request_id = request_id or secrets.token_hex(16)
    files = _private_dir(data_dir / FILES_DIR)
    spool = _private_dir(data_dir / SPOOL_DIR)
    doc = {**request, "id": request_id, "at": time.time()}
    # Written beside the spool and renamed in: the path unit sees only whole requests.
    tmp = files / f"{request_id}.json"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, spool / f"{request_id}.json")
    return request_id


def read_status(root: ReleaseRoot) -> dict[str, Any] | None:
    """What the runner last wrote (None before any page import); `running` is dropped when
    the runner is gone (killed, or a power cut), so the page is never stuck "under way"."""
    try:
        doc = json.loads(status_path(root).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    if doc.get("running") and not pid_alive(int(doc.get("pid", 0))):
        doc.update(running=False, outcome="failed", reason="the updater was stopped part-way")
    return doc


# --- the root side (clinicbox-update-import.service) ---------------------------------------
def run_spool(target: Any) -> list[dict[str, Any]]:
    """Import every queued request, oldest first; each is removed before it is worked on, so
    a bad one never makes the path unit start the service again and again."""
    spool = target.data_dir / SPOOL_DIR
    results: list[dict[str, Any]] = []
    while True:
        try:
            pending = sorted(spool.glob("*.json"), key=lambda p: p.stat().st_mtime)
        except OSError:
            pending = []
        if not pending:
            return results
        results.append(_run_one(target, pending[0]))


def _run_one(target: Any, request_file: Path) -> dict[str, Any]:
    request = _take_request(request_file)
    shown = str(request.get("name", "bundle"))[:120] if request else "a broken request"
    status: dict[str, Any] = {
        "bundle": shown,
        "running": True,
        "step": "queued",
        "pid": os.getpid(),
    }

    def progress(step: str) -> None:
        status.update(step=step, at=time.time())
        write_atomic(status_path(target.root), json.dumps(status).encode())

    def finish(outcome: str, reason: str = "", **extra: Any) -> dict[str, Any]:
        status.update(running=False, outcome=outcome, reason=reason, at=time.time(), **extra)
        status.pop("step", None)
        write_atomic(status_path(target.root), json.dumps(status).encode())
        return dict(status)

    if request is None:
        return finish("refused", "the request from the page was not readable")
    progress("opening")
    try:
        fd, upload = _open_requested(target.data_dir, request)
    except BundleRefused as exc:
        return finish("refused", str(exc))
    from appliance.update.apply import CallLive, import_bundle

    try:
        result = import_bundle(Path(f"/proc/self/fd/{fd}"), target, progress=progress)
    except CallLive as exc:
        return finish(
            "refused",
            f"a call with {exc.participants} participant{'' if exc.participants == 1 else 's'} "
            "is live: choose the bundle again after it ends",
        )
    except BundleRefused as exc:
        # The bundle was opened as /proc/self/fd/N: say the name the technician knows.
        return finish("refused", str(exc).replace(f"/proc/self/fd/{fd}", shown))
    except OperatorError as exc:
        return finish("failed", str(exc))
    except Exception as exc:  # the page must show an outcome whatever happened
        print(f"import of {shown} failed: {exc!r}", file=sys.stderr)
        return finish("failed", f"the updater failed ({exc.__class__.__name__}); see its journal")
    finally:
        os.close(fd)
        if upload is not None:
            upload.unlink(missing_ok=True)
    return finish(
        str(result.get("outcome")),
        str(result.get("reason", "")),
        version=result.get("version"),
    )


def _take_request(path: Path) -> dict[str, Any] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        fd = -1
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
    if fd < 0:
        return None
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(MAX_REQUEST_BYTES + 1)
    try:
        doc = json.loads(raw) if len(raw) <= MAX_REQUEST_BYTES else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _open_requested(data_dir: Path, request: dict[str, Any]) -> tuple[int, Path | None]:
    """An fd on the requested bundle (and the uploaded file to remove afterwards)."""
    if "upload" in request:
        upload_id = str(request["upload"])
        if not _ID.match(upload_id):
            raise BundleRefused("the request from the page names no upload")
        path = data_dir / FILES_DIR / f"{upload_id}{BUNDLE_SUFFIX}"
        fd = _open_regular(path, "the uploaded bundle is gone or not a plain file")
        if os.geteuid() == 0:
            # Root's from now on: the web user can no longer write into it while it is checked.
            os.fchown(fd, 0, 0)
            os.fchmod(fd, 0o600)
        return fd, path
    if "path" in request:
        chosen = Path(os.path.realpath(str(request["path"])))
        allowed = [Path(os.path.realpath(d)) for d in media_dirs()]
        if not chosen.name.endswith(BUNDLE_SUFFIX) or not any(
            chosen.is_relative_to(d) for d in allowed
        ):
            raise BundleRefused(
                f"{Path(str(request['path'])).name} is not on removable media "
                f"({', '.join(str(d) for d in allowed)})"
            )
        return _open_regular(chosen, f"{chosen.name} is no longer on the stick"), None
    raise BundleRefused("the request from the page names no bundle")


def _open_regular(path: Path, missing: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        raise BundleRefused(missing) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BundleRefused(f"{path.name} is not a file")
    return fd
