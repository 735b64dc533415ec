"""`clinicbox wipe`: crypto-shredding of the record store.

Every ciphertext in the database is useless without the data keys, and the data keys exist
only wrapped by the KEK in the keys file. Wiping overwrites and deletes the keys file and the
device secret first (that is the shredding), then deletes the database and its WAL/journal.
A copy of the old database file taken before the wipe stays unreadable: nothing that could
unwrap its keys is left.
"""

from __future__ import annotations

import os
from pathlib import Path

from appliance.config import Settings
from appliance.files import UnsafePath, unlink_beneath
from appliance.store.keyring import DEVICE_SECRET_FILE, KEYS_FILE, shred_file
from appliance.store.store import take_lock


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def wipe(settings: Settings, refused: list[str] | None = None) -> list[Path]:
    """Destroy the store's keys and delete its database; return what was removed.

    Refuses (StoreBusyError) while any process has the store open. Follows no symbolic link
    below the data dir (root may run this): a key file that is a link, a hard link or not the
    service's is removed as an entry, never overwritten, and described in `refused`.
    """
    if not settings.data_dir.exists():
        return []
    data = settings.data_dir
    lock_fd = take_lock(data, exclusive=True)
    removed: list[Path] = []
    try:
        for name in (KEYS_FILE, DEVICE_SECRET_FILE):
            path = settings.secrets_dir / name
            try:
                if shred_file(path, base=data):
                    removed.append(path)
            except UnsafePath as exc:
                if refused is not None:
                    refused.append(f"{exc.strerror}: removed, not overwritten")
        if settings.secrets_dir.is_dir():
            _fsync_dir(settings.secrets_dir)
        db = settings.database_path
        for path in (db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))):
            if unlink_beneath(data, path.relative_to(data)):
                removed.append(path)
        _fsync_dir(data)
    finally:
        os.close(lock_fd)
    return removed
