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
from appliance.store.keyring import DEVICE_SECRET_FILE, KEYS_FILE, shred_file
from appliance.store.store import take_lock


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def wipe(settings: Settings) -> list[Path]:
    """Destroy the store's keys and delete its database; return what was removed.

    Refuses (StoreBusyError) while any process has the store open.
    """
    if not settings.data_dir.exists():
        return []
    lock_fd = take_lock(settings.data_dir, exclusive=True)
    removed: list[Path] = []
    try:
        for name in (KEYS_FILE, DEVICE_SECRET_FILE):
            path = settings.secrets_dir / name
            if shred_file(path):
                removed.append(path)
        if settings.secrets_dir.exists():
            _fsync_dir(settings.secrets_dir)
        db = settings.database_path
        for path in (db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))):
            if path.exists():
                path.unlink()
                removed.append(path)
        _fsync_dir(settings.data_dir)
    finally:
        os.close(lock_fd)
    return removed
