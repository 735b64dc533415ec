"""Writing secrets and state files safely: 0600 from the first byte, atomically replaced."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
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


def read_or_create_private(path: Path, make: Callable[[], bytes]) -> bytes:
    """The contents of `path`; if it does not exist, `make()` written there (0600) first.

    Race-free across threads and processes: the first writer wins (the new file appears
    complete, through a hard link from a private temporary file, never half-written), and
    every caller, the losers included, reads what the winner wrote, so a key made on first
    use is the same key for everyone.
    """
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path, make())
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()


def make_private_dir(path: Path) -> None:
    """Create `path` (and parents) with mode 0700 for the final directory."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
