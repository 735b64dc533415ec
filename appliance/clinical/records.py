"""The portal's records until the shared encrypted store (appliance/store) lands.

A stand-in with the same surface the portal uses (`records.User`, `.Patient`, `.GroupSession`,
`.Attendance`, `.Consent`, `.QuestionnaireResponse`, `.SessionNote`, `.ChatMessage`,
`.audit(...)`), so the portal can switch to `appliance.store` by changing one line. Clinical
values (names, titles, answers, scores, notes, chat) are AES-256-GCM encrypted per field with
the table and column as associated data; lookups use only non-clinical columns (ids, codes).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from peewee import (
    BlobField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    SqliteDatabase,
)

from appliance.files import write_private

_NONCE = 12


class _Cipher:
    """The records key; set once by `open_records`."""

    aead: AESGCM | None = None


class EncryptedField(BlobField):
    """A JSON value stored as nonce + AES-GCM ciphertext, bound to its table and column."""

    def _aad(self) -> bytes:
        return f"{self.model._meta.table_name}.{self.column_name}".encode()

    def db_value(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if _Cipher.aead is None:
            raise RuntimeError("records are not open")
        nonce = os.urandom(_NONCE)
        plain = json.dumps(value, separators=(",", ":")).encode()
        return nonce + _Cipher.aead.encrypt(nonce, plain, self._aad())

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        if _Cipher.aead is None:
            raise RuntimeError("records are not open")
        raw = bytes(value)
        return json.loads(_Cipher.aead.decrypt(raw[:_NONCE], raw[_NONCE:], self._aad()))


def _now() -> datetime:
    return datetime.now().replace(microsecond=0)


class _Base(Model):
    created_at = DateTimeField(default=_now)


class User(_Base):
    username = CharField(unique=True)
    password_hash = CharField()
    role = CharField()


class Patient(_Base):
    display_name = EncryptedField()


class GroupSession(_Base):
    title = EncryptedField()
    starts_at = DateTimeField()
    facilitator = ForeignKeyField(User, backref="facilitated")
    capacity = IntegerField()
    keep_chat = BooleanField(default=False)
    code = CharField(index=True)
    invite_token = CharField(unique=True)
    state = CharField(default="scheduled")
    locked = BooleanField(default=False)


class Attendance(_Base):
    session = ForeignKeyField(GroupSession, backref="attendances")
    patient = ForeignKeyField(Patient, backref="attendances")
    display_name = EncryptedField()
    status = CharField(default="waiting")


class Consent(_Base):
    patient = ForeignKeyField(Patient)
    session = ForeignKeyField(GroupSession)
    version = CharField()
    agreed = BooleanField()


class QuestionnaireResponse(_Base):
    patient = ForeignKeyField(Patient, backref="responses")
    session = ForeignKeyField(GroupSession, null=True)
    instrument = CharField()
    answers = EncryptedField()
    score = EncryptedField()
    severity = EncryptedField()
    risk_flag = EncryptedField()


class SessionNote(_Base):
    session = ForeignKeyField(GroupSession, backref="notes")
    author = ForeignKeyField(User)
    body = EncryptedField()


class ChatMessage(_Base):
    session = ForeignKeyField(GroupSession, backref="chat")
    sender = EncryptedField()
    body = EncryptedField()


class AuditLog(_Base):
    actor = CharField()
    action = CharField()
    target = CharField()
    prev_hash = CharField()
    entry_hash = CharField()


MODELS = (User, Patient, GroupSession, Attendance, Consent, QuestionnaireResponse, SessionNote,
          ChatMessage, AuditLog)


class Records:
    """The models bound to one database, plus the hash-chained audit log."""

    User = User
    Patient = Patient
    GroupSession = GroupSession
    Attendance = Attendance
    Consent = Consent
    QuestionnaireResponse = QuestionnaireResponse
    SessionNote = SessionNote
    ChatMessage = ChatMessage
    AuditLog = AuditLog

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    def audit(self, actor: str, action: str, target: str) -> AuditLog:
        """Append an entry whose hash covers the previous entry's hash (tamper evident)."""
        with self.db.atomic("IMMEDIATE"):
            last = AuditLog.select().order_by(AuditLog.id.desc()).first()
            prev = last.entry_hash if last else "0" * 64
            at = _now()
            digest = hashlib.sha256(
                "|".join((prev, at.isoformat(), actor, action, target)).encode()
            ).hexdigest()
            return AuditLog.create(
                created_at=at, actor=actor, action=action, target=target, prev_hash=prev,
                entry_hash=digest,
            )


def open_records(db: SqliteDatabase, secrets_dir: Path) -> Records:
    """Bind the models to `db`, create missing tables and load (or make) the records key."""
    key_path = secrets_dir / "records-key"
    if not key_path.exists():
        secrets_dir.mkdir(parents=True, exist_ok=True)
        write_private(key_path, secrets.token_bytes(32))
    _Cipher.aead = AESGCM(key_path.read_bytes())
    db.bind(MODELS)
    db.create_tables(MODELS, safe=True)
    return Records(db)
