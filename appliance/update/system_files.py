"""The system files a release owns outside its own directory: ClinicBox's systemd units and its
nftables firewall script, and nothing else.

Least privilege: a bundle may replace only the files named in SYSTEM_FILES, by those names;
any other name in a signed manifest (a path, `../`, an absolute path, another unit) refuses
the whole bundle, so even a leaked release key cannot write elsewhere on the box.

Each release keeps its set under `releases/<version>/system/`; the set in effect before the
first bundle that carried one is kept under `state/system/<version or factory>/`. Placing a
release's set (on import, and by the launcher before every start) writes each file whose
content differs, atomically, so the live files always converge on the release `current`
names, and a rollback puts the previous release's files back with it.

Standard library only: the launcher (`/opt/clinicbox/lib/releases.py`) imports this from
beside itself.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# Name in the bundle and under a release's `system/` -> where it lives (under the system root).
SYSTEM_FILES: dict[str, str] = {
    **{
        f"systemd/{unit}": f"etc/systemd/system/{unit}"
        for unit in (
            "clinicbox.service",
            "clinicbox-firstboot.service",
            "clinicbox-update-confirm.service",
            "clinicbox-update-confirm.timer",
            "clinicbox-update-install.service",
            "clinicbox-update-install.timer",
            "clinicbox-update-import.service",
            "clinicbox-update-import.path",
        )
    },
    "firewall.sh": "opt/clinicbox/lib/firewall.sh",
}
EXECUTABLE = frozenset({"firewall.sh"})
# Where each file lives in the source tree a release is built from.
SOURCE_PATHS: dict[str, str] = {name: f"firmware_scripts/{name}" for name in SYSTEM_FILES}
SAVED_MARK = ".saved"


class SystemFileRefused(ValueError):
    """A bundle names a system file no release may replace; the message says which."""


def check_name(name: str) -> str:
    """The name itself if a release may own that file; SystemFileRefused otherwise."""
    if name not in SYSTEM_FILES:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise SystemFileRefused(
            f"bundle names system file {shown!r}, which a release may not replace "
            f"(only {', '.join(sorted(SYSTEM_FILES))})"
        )
    return name


def system_root() -> Path:
    """The root the live files are under: `/` on a box, a staging dir in tests."""
    return Path(os.environ.get("CLINICBOX_SYSTEM_ROOT", "/"))


def live_path(name: str, root: Path | None = None) -> Path:
    return (root if root is not None else system_root()) / SYSTEM_FILES[check_name(name)]


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    # O_NOFOLLOW: a link planted where the temporary file goes is not written through.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def save_live_set(dest: Path, root: Path | None = None) -> None:
    """Keep the live files (those that exist) in `dest`, marked complete last, so a rollback
    to a release that carried no set of its own can put them back. Done once per release."""
    if (dest / SAVED_MARK).is_file():
        return
    for name in SYSTEM_FILES:
        data = _read(live_path(name, root))
        if data is not None:
            _write_atomic(dest / name, data, 0o755 if name in EXECUTABLE else 0o644)
    _write_atomic(dest / SAVED_MARK, b"", 0o644)


def place_set(source: Path, root: Path | None = None) -> list[str]:
    """Make the live files equal the set in `source` (files it lacks are left alone).

    Returns the names that changed; idempotent, so a cut part-way is finished by the next
    call."""
    changed = []
    for name in sorted(SYSTEM_FILES):
        data = _read(source / name)
        if data is None:
            continue
        target = live_path(name, root)
        if _read(target) == data:
            continue
        _write_atomic(target, data, 0o755 if name in EXECUTABLE else 0o644)
        changed.append(name)
    return changed


def activate(changed: list[str], root: Path | None = None) -> None:
    """Tell the running system (only on a real box, root `/`): systemd rereads the units, and
    the firewall script reloads its table. Failures are left to the next start's check."""
    if not changed or (root if root is not None else system_root()) != Path("/"):
        return
    if any(name.startswith("systemd/") for name in changed):
        subprocess.run(["systemctl", "daemon-reload"], check=False, timeout=60)
    if "firewall.sh" in changed:
        subprocess.run([str(live_path("firewall.sh"))], check=False, timeout=60)
