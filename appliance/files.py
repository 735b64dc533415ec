"""Files the box keeps safely: secrets 0600 from the first byte, atomically replaced; and
opening or removing paths under the data dir without following symbolic links (root runs
factory reset and first boot over a directory the service user owns)."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from pathlib import Path


def _temp_name(path: Path) -> Path:
    # Unique per call, not per process: two threads writing the same file at once must not
    # share (and then replace or unlink) one temporary file.
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(8)}")


def _write_temp(path: Path, data: bytes) -> Path:
    tmp = _temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by the owner only, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.chmod(path, 0o600)


def make_private_dir(path: Path) -> None:
    """Create `path` (and parents) with mode 0700 for the final directory."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


class UnsafePath(OSError):
    """A path below the data dir is a symbolic link, not a regular file, or not ours."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parent_fd(base: Path, relative: Path) -> int:
    """An fd of `base/relative`'s parent directory, reached without following any symbolic
    link below `base` (each component is opened relative to the last, O_NOFOLLOW).

    `base` itself is trusted (a root-owned path such as /var/lib/clinicbox); everything below
    it belongs to the service user, who could have planted links for root to follow.
    """
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in relative.parts[:-1]:
            try:
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise UnsafePath(
                    exc.errno,
                    f"{base / relative}: {part} is not a real directory (a symbolic link?)",
                ) from None
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_beneath(base: Path, relative: Path | str, flags: int, mode: int = 0o600) -> int:
    """os.open(base/relative) with no symbolic link followed below `base` (UnsafePath)."""
    relative = Path(relative)
    parent = _parent_fd(base, relative)
    try:
        return os.open(relative.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(exc.errno, f"{base / relative} is a symbolic link") from None
        raise
    finally:
        os.close(parent)


def unlink_beneath(base: Path, relative: Path | str) -> bool:
    """Remove the entry base/relative (a link is removed, never its target); False if absent."""
    relative = Path(relative)
    try:
        parent = _parent_fd(base, relative)
    except FileNotFoundError:
        return False
    try:
        os.unlink(relative.name, dir_fd=parent)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(parent)


def remove_tree_beneath(base: Path, relative: Path | str) -> None:
    """Delete the directory base/relative and all in it without following any symbolic link
    (a link in its place, or inside it, is removed as a link)."""
    relative = Path(relative)
    try:
        parent = _parent_fd(base, relative)
    except FileNotFoundError:
        return
    try:
        try:
            info = os.stat(relative.name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(relative.name, dir_fd=parent)  # fd-based: follows no links
        else:
            os.unlink(relative.name, dir_fd=parent)
    finally:
        os.close(parent)


def check_own_regular_file(fd: int, path: Path, owner_uid: int) -> os.stat_result:
    """fstat(fd), or UnsafePath unless it is a regular file with one link, owned by us or by
    `owner_uid` (the data dir's owner): a hard link to another user's file is refused."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePath(errno.EINVAL, f"{path} is not a regular file")
    if info.st_nlink != 1:
        raise UnsafePath(errno.EMLINK, f"{path} has {info.st_nlink} hard links")
    if info.st_uid not in (os.geteuid(), owner_uid):
        raise UnsafePath(errno.EPERM, f"{path} belongs to uid {info.st_uid}, not the service")
    return info
