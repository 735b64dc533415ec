"""Opening the box's SQLite database with the pragmas every connection needs."""

from __future__ import annotations

from pathlib import Path

from peewee import SqliteDatabase

PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    # FULL: a committed clinical record survives power loss, not just a process crash.
    "synchronous": "full",
    "busy_timeout": 5000,
    # Freed pages are zeroed so deleted ciphertext does not linger in the file.
    "secure_delete": 1,
}


def open_database(path: Path) -> SqliteDatabase:
    """A peewee database at `path`, connected, WAL mode, foreign keys on."""
    db = SqliteDatabase(str(path), pragmas=PRAGMAS, check_same_thread=False)
    db.connect(reuse_if_open=True)
    return db


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
