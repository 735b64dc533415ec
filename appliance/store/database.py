"""Opening the box's SQLite database with the pragmas every connection needs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from peewee import SqliteDatabase

if TYPE_CHECKING:
    from appliance.store.keyring import Keyring

PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    # FULL: a committed clinical record survives power loss, not just a process crash.
    "synchronous": "full",
    "busy_timeout": 5000,
    # Freed pages are zeroed so deleted ciphertext does not linger in the file.
    "secure_delete": 1,
    # Sorts and temporary indexes stay in memory: no temp file can hold decrypted-order data.
    "temp_store": "memory",
}


def open_database(path: Path) -> SqliteDatabase:
    """A peewee database at `path`, connected, WAL mode, foreign keys on."""
    db = SqliteDatabase(str(path), pragmas=PRAGMAS, check_same_thread=False)
    db.connect(reuse_if_open=True)
    return db


class RecordDatabase(SqliteDatabase):
    """The record store's database: a SqliteDatabase that also carries the store's keyring.

    Encrypted fields reach the keyring through `Model._meta.database`, and report ciphertext
    that fails to authenticate through `integrity_failure`.
    """

    def __init__(self, path: Path, keyring: Keyring) -> None:
        super().__init__(str(path), pragmas=PRAGMAS, check_same_thread=False)
        self.keyring = keyring
        self.on_integrity_failure: Callable[[str, str, str], None] | None = None

    def integrity_failure(self, table: str, pk: str, column: str) -> None:
        """Record that a row failed to decrypt (the store audits and quarantines it)."""
        if self.on_integrity_failure is not None:
            self.on_integrity_failure(table, pk, column)


def is_reachable(db: SqliteDatabase) -> bool:
    """True when a trivial query succeeds."""
    try:
        db.execute_sql("SELECT 1").fetchone()
    except Exception:
        return False
    return True


def flush(db: SqliteDatabase) -> None:
    """Checkpoint the WAL into the main file and close."""
    if db.is_closed():
        return
    db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
