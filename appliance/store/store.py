"""Opening the record store: keys, database, schema, audit log and quarantine."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

from peewee import DatabaseError

from appliance.config import Settings
from appliance.errors import OperatorError
from appliance.files import make_private_dir
from appliance.store import audit, models
from appliance.store.database import RecordDatabase, flush
from appliance.store.keyring import KEYS_FILE, Keyring, StoreLockedError
from appliance.store.migrations import SchemaError, migrate

log = logging.getLogger(__name__)

LOCK_FILE = "store.lock"


class StoreBusyError(OperatorError):
    """Another command holds the store in a way that excludes this one (e.g. a wipe)."""


class Store:
    """The open record store. Models are bound to `db`; the classes are also attributes here."""

    User = models.User
    StaffSession = models.StaffSession
    Patient = models.Patient
    GroupSession = models.GroupSession
    Attendance = models.Attendance
    Consent = models.Consent
    QuestionnaireResponse = models.QuestionnaireResponse
    SessionNote = models.SessionNote
    ChatMessage = models.ChatMessage
    RiskFlag = models.RiskFlag
    Referral = models.Referral
    TelemetryEvent = models.TelemetryEvent
    SessionLive = models.SessionLive
    CoFacilitator = models.CoFacilitator
    PatientCard = models.PatientCard
    ClinicSetting = models.ClinicSetting
    SecureMessage = models.SecureMessage
    MeasureSchedule = models.MeasureSchedule
    MoodEntry = models.MoodEntry
    SafetyPlan = models.SafetyPlan
    LessonAssignment = models.LessonAssignment
    AuditLog = models.AuditLog
    OutboxEntry = models.OutboxEntry
    Quarantine = models.Quarantine

    def __init__(self, settings: Settings, db: RecordDatabase, lock_fd: int) -> None:
        self.settings = settings
        self.db = db
        self.keyring: Keyring = db.keyring
        self._lock_fd = lock_fd
        db.on_integrity_failure = self._integrity_failure

    def transaction(self) -> Any:
        """A write transaction that takes the write lock at once (nested: a savepoint)."""
        if self.db.transaction_depth() == 0:
            return self.db.atomic("IMMEDIATE")
        return self.db.atomic()

    def audit(self, actor: str, action: str, target: str) -> None:
        """Append to the hash-chained audit log. `actor` and `target` are ids, never names."""
        audit.append(self.db, actor, action, target)

    def _integrity_failure(self, table: str, pk: str, column: str) -> None:
        # Runs inside whatever read found the damage; a failure to record it must not hide
        # the IntegrityError the caller is about to get.
        try:
            with self.transaction():
                Q = models.Quarantine  # noqa: N806
                new = not Q.select().where((Q.record_type == table) & (Q.record_id == pk)).exists()
                if new:
                    Q.create(record_type=table, record_id=pk, column=column)
                models.OutboxEntry.update(state="quarantined", leased_until=None).where(
                    (models.OutboxEntry.record_type == table)
                    & (models.OutboxEntry.record_id == pk)
                ).execute()
                if new:
                    # Once per record: repeated reads of a damaged record do not flood the log.
                    log.error("integrity check failed: %s/%s column %s (quarantined)",
                              table, pk, column)
                    self.audit("system", "integrity.failed", f"{table}/{pk}")
        except Exception as exc:  # noqa: BLE001 - reporting only
            log.error("could not record the integrity failure: %s", type(exc).__name__)

    def lock_exclusive(self) -> None:
        """Make sure no other process has the store open (StoreBusyError otherwise)."""
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreBusyError(
                "the record store is open in another process (is clinicbox serve running?); "
                "stop it first"
            ) from None

    def close(self) -> None:
        """Checkpoint the WAL, close the database and release the store lock."""
        flush(self.db)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def passphrase_from_env(env: dict[str, str] | None = None) -> str | None:
    """The store passphrase for an unattended start, if configured.

    `CLINICBOX_STORE_PASSPHRASE_FILE` (e.g. a systemd credential) wins over
    `CLINICBOX_STORE_PASSPHRASE`; with neither the store uses device-secret mode.
    """
    env = dict(os.environ) if env is None else env
    path = env.get("CLINICBOX_STORE_PASSPHRASE_FILE")
    if path:
        try:
            return Path(path).read_text().rstrip("\r\n")
        except OSError as exc:
            raise StoreLockedError(
                f"cannot read the store passphrase file {path} ({exc.strerror})"
            ) from None
    return env.get("CLINICBOX_STORE_PASSPHRASE") or None


def take_lock(data_dir: Path, exclusive: bool) -> int:
    # O_NOFOLLOW: root (factory reset) must not create or open a file where a planted link
    # points; such a link is removed (never its target) and the lock file made afresh.
    path = data_dir / LOCK_FILE
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        path.unlink()
        fd = os.open(path, flags | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        if exclusive:
            raise StoreBusyError(
                "the record store is open (is clinicbox serve running?); stop it first"
            ) from None
        raise StoreBusyError("the record store is being wiped; try again afterwards") from None
    return fd


def _has_store_schema(path: Path) -> bool:
    """True when the database file at `path` already holds the store's tables."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'"
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise _unusable(path, exc) from None
    finally:
        conn.close()
    return row is not None


def _unusable(path: Path, exc: Exception) -> SchemaError:
    return SchemaError(
        f"cannot open the record database {path} ({exc}); move it aside and restore a "
        "backup, or `clinicbox wipe --yes` to start empty"
    )


def _make_database_private(path: Path) -> None:
    """The database file 0600 (created so if new); its WAL and shared-memory files too.

    SQLite gives the -wal and -shm files the main file's mode, so fixing the main file before
    the first connection covers new ones; existing ones (an older release, a loose umask) are
    tightened here.
    """
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        try:
            os.chmod(path.with_name(name), 0o600)
        except FileNotFoundError:
            pass


def open_store(settings: Settings, passphrase: str | None = None) -> Store:
    """Unlock the keys, open the database in `settings.database_path` and upgrade its schema.

    The first open makes the keys: passphrase mode when `passphrase` is given, device-secret
    mode otherwise. A passphrase-protected store needs the same passphrase on every open.
    """
    make_private_dir(settings.data_dir)
    make_private_dir(settings.secrets_dir)
    lock_fd = take_lock(settings.data_dir, exclusive=False)
    try:
        keys_path = settings.secrets_dir / KEYS_FILE
        if not keys_path.exists() and _has_store_schema(settings.database_path):
            raise StoreLockedError(
                f"{keys_path} is missing but {settings.database_path} holds records: restore "
                "the secrets dir from backup, or `clinicbox wipe` to start empty"
            )
        # Creating the keys must happen once even if two processes start together.
        keys_lock = os.open(settings.secrets_dir / ".keys.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(keys_lock, fcntl.LOCK_EX)
            keyring = Keyring.open(settings.secrets_dir, passphrase)
        finally:
            os.close(keys_lock)
        _make_database_private(settings.database_path)
        db = RecordDatabase(settings.database_path, keyring)
        try:
            db.connect()
            db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
            migrate(db)
        except DatabaseError as exc:
            db.close()
            raise _unusable(settings.database_path, exc) from None
    except BaseException:
        os.close(lock_fd)
        raise
    return Store(settings, db, lock_fd)
