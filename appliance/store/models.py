"""What the clinic records, as peewee models over the encrypted store.

Clinical content (names, identity, titles, answers, scores, notes, chat, consent terms, risk
reasons) lives only in `EncryptedField`s. Plaintext columns hold ids, pseudonymous codes,
timestamps, states and keyed blind indexes.

Every `ClinicalModel` write goes to the outbox in the same transaction: `save()` (and so
`Model.create`) seals the encrypted fields, writes the row, and inserts or re-arms the record's
outbox entry. An update bumps `version`, so a record edited after it was sent goes back to
pending as its new version.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from datetime import UTC, date, datetime
from enum import IntEnum
from typing import Any, ClassVar

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    Check,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from appliance.store.fields import EncryptedField, Sealed


class Lane(IntEnum):
    """Outbox priority: lower goes first."""

    URGENT = 0
    CLINICAL = 1
    ROUTINE = 2
    TELEMETRY = 3


def utcnow() -> datetime:
    """Naive UTC now, the form every DateTimeField holds."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_record_id() -> str:
    """A stable record id: random UUID text, also the centre's upsert key."""
    return str(uuid.uuid4())


class BlindIndexField(CharField):
    """A keyed HMAC of a normalised value, for equality lookups on encrypted content."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("null", True)
        kwargs.setdefault("index", True)
        kwargs.setdefault("max_length", 32)
        super().__init__(**kwargs)


def normalise_for_index(text: str) -> str:
    """Case and spacing do not change what a name or code matches."""
    return re.sub(r"\s+", " ", text or "").strip().casefold()


class BaseModel(Model):
    class Meta:
        legacy_table_names = False


class SchemaVersion(BaseModel):
    """One row per applied migration."""

    version = IntegerField(primary_key=True)
    applied_at = DateTimeField(default=utcnow)


class User(BaseModel):
    """A staff account. Not clinical: the username is a login name, not a person's name."""

    id = AutoField()
    username = CharField(unique=True)
    role = CharField(constraints=[Check("role IN ('clinician', 'admin', 'technician')")])
    password_hash = TextField()
    active = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)


class StaffSession(BaseModel):
    """A signed-in staff session. The cookie holds a random token; only its SHA-256 is here,
    so a copy of the database cannot be turned back into a working cookie."""

    token_hash = CharField(primary_key=True, max_length=64)
    user = ForeignKeyField(User, backref="staff_sessions", on_delete="CASCADE")
    # Unix times (seconds): the absolute and idle limits are measured from these.
    created_at = FloatField()
    last_seen = FloatField()

    class Meta:
        table_name = "staff_session"


class AuditLog(BaseModel):
    """Append-only, hash-chained: `hash` is an HMAC over the previous hash and this entry."""

    id = AutoField()
    at = DateTimeField(default=utcnow)
    actor = CharField()
    action = CharField()
    target = CharField()
    prev_hash = CharField()
    hash = CharField()


class OutboxEntry(BaseModel):
    """What must reach the centre: one entry per record, re-armed when the record changes."""

    id = AutoField()
    record_type = CharField()
    record_id = CharField(index=True)
    version = IntegerField()
    lane = IntegerField()
    # pending -> leased -> delivered; quarantined when the record fails its integrity check.
    state = CharField(default="pending")
    attempts = IntegerField(default=0)
    next_attempt_at = FloatField(default=0.0)
    leased_until = FloatField(null=True)
    enqueued_at = FloatField(default=time.time)
    delivered_at = FloatField(null=True)
    # Short transport error from the sync agent; never record content.
    last_error = CharField(null=True, max_length=200)

    class Meta:
        indexes = (
            (("record_type", "record_id"), True),
            (("state", "lane", "enqueued_at"), False),
        )


class Quarantine(BaseModel):
    """A record that failed its integrity check: kept, not served, listed for the operator."""

    id = AutoField()
    record_type = CharField()
    record_id = CharField()
    column = CharField()
    detected_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("record_type", "record_id"), True),)


# Insert the record's outbox entry, or re-arm it as pending at the new version. Raw SQL: this
# runs on every clinical write, and building it through peewee cost more than the encryption.
# An entry waiting since an earlier undelivered change keeps its age and attempts.
_ENQUEUE_SQL = """
INSERT INTO outbox_entry
    (record_type, record_id, version, lane, state, attempts, next_attempt_at, enqueued_at)
VALUES (?, ?, ?, ?, 'pending', 0, 0.0, ?)
ON CONFLICT (record_type, record_id) DO UPDATE SET
    version = excluded.version,
    state = 'pending',
    leased_until = NULL,
    next_attempt_at = 0.0,
    enqueued_at = CASE WHEN state = 'delivered' THEN excluded.enqueued_at ELSE enqueued_at END,
    attempts = CASE WHEN state = 'delivered' THEN 0 ELSE attempts END
"""


class ClinicalModel(BaseModel):
    """A record that reaches the centre: uuid id, version, timestamps, outbox on every save."""

    lane: ClassVar[Lane] = Lane.CLINICAL

    id = CharField(primary_key=True, default=new_record_id, max_length=36)
    version = IntegerField(default=1)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Rows read from the database are built with __no_default__; new instances are not.
        self._stored = bool(kwargs.get("__no_default__"))
        super().__init__(*args, **kwargs)

    @classmethod
    def record_type(cls) -> str:
        return cls._meta.table_name

    def before_save(self) -> None:
        """Hook for derived plaintext columns (blind indexes) and checks; runs in the txn."""

    def save(self, force_insert: bool = False, only: Any = None) -> int | bool:
        """Seal, write and enqueue in one IMMEDIATE transaction (savepoint when nested)."""
        db = self._meta.database
        txn = db.atomic("IMMEDIATE") if db.transaction_depth() == 0 else db.atomic()
        with txn:
            # Under the write lock: a key rotation in another process cannot slip in between
            # picking the active key and committing.
            db.keyring.refresh()
            inserting = force_insert or not self._stored
            before = (self.version, self.updated_at)
            if not inserting:
                self.version = (self.version or 1) + 1
                self.updated_at = utcnow()
            plain = self.__data__
            try:
                self.before_save()
                self.__data__ = self._sealed(plain)
                rows = super().save(force_insert=inserting, only=only)
                self.__data__ = plain
                self._enqueue()
            except BaseException:
                # The transaction rolls back; the instance must not claim the new version.
                self.__data__ = plain
                self.version, self.updated_at = before
                raise
            self._stored = True
        return rows

    def _sealed(self, plain: dict[str, Any]) -> dict[str, Any]:
        keyring = self._meta.database.keyring
        table = self._meta.table_name
        out = dict(plain)
        for field in self._meta.sorted_fields:
            if not isinstance(field, EncryptedField) or out.get(field.name) is None:
                continue
            value = out[field.name]
            if isinstance(value, Sealed):
                if keyring.key_id_of(value) == keyring.active_id:
                    continue  # untouched since read and already under the active key
                value = getattr(self, field.name)  # re-seal under the active key
            blob = keyring.seal(field.encode(value), table, str(self.get_id()), field.column_name)
            out[field.name] = Sealed(blob)
        return out

    def _enqueue(self) -> None:
        self._meta.database.execute_sql(
            _ENQUEUE_SQL,
            (self.record_type(), self.get_id(), self.version, int(self.lane), time.time()),
        )

    def to_payload(self) -> bytes:
        """Canonical JSON of the decrypted record, as the centre stores it."""
        fields: dict[str, Any] = {}
        for field in self._meta.sorted_fields:
            if field.name in ("id", "version") or isinstance(field, BlindIndexField):
                continue
            if isinstance(field, ForeignKeyField):
                value = self.__data__.get(field.name)
            else:
                value = getattr(self, field.name)
            if isinstance(value, datetime | date):
                value = value.isoformat()
            fields[field.name] = value
        doc = {"type": self.record_type(), "id": str(self.get_id()), "version": self.version,
               "fields": fields}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def new_patient_code() -> str:
    """A pseudonymous patient code such as `P-7KQ2M9XA`: random, says nothing about the person."""
    alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    return "P-" + "".join(secrets.choice(alphabet) for _ in range(8))


class Patient(ClinicalModel):
    """A patient: pseudonymous code in clear, everything identifying encrypted."""

    code = CharField(unique=True, default=new_patient_code)
    display_name = EncryptedField()
    # Full name, date of birth, contact details...: whatever the clinic registers.
    identity = EncryptedField(null=True)
    name_index = BlindIndexField()
    active = BooleanField(default=True)

    def before_save(self) -> None:
        keyring = self._meta.database.keyring
        self.name_index = keyring.blind_index(
            "patient", "display_name", normalise_for_index(self.display_name)
        )

    @classmethod
    def find_by_name(cls, name: str) -> list[Patient]:
        """Patients whose display name equals `name` (case and spacing ignored)."""
        keyring = cls._meta.database.keyring
        digest = keyring.blind_index("patient", "display_name", normalise_for_index(name))
        return list(cls.select().where(cls.name_index == digest))


class GroupSession(ClinicalModel):
    """A group therapy session. The join code is kept only as a keyed hash."""

    lane: ClassVar[Lane] = Lane.ROUTINE

    title = EncryptedField()
    starts_at = DateTimeField()
    facilitator = ForeignKeyField(User, backref="sessions", on_delete="RESTRICT")
    facilitator_id: int  # the foreign key's raw id, which peewee adds beside `facilitator`
    capacity = IntegerField(default=8)
    keep_chat = BooleanField(default=False)
    state = CharField(
        default="scheduled",
        constraints=[Check("state IN ('scheduled', 'live', 'ended', 'cancelled')")],
    )
    # Facilitator closed the door: nobody new is admitted.
    locked = BooleanField(default=False)
    join_code_index = BlindIndexField()
    invite_index = BlindIndexField()

    def set_invite_token(self, token: str) -> None:
        """Store only the keyed hash of an invite-link token (call save() afterwards)."""
        keyring = self._meta.database.keyring
        self.invite_index = keyring.blind_index("group_session", "invite", token.strip())

    @classmethod
    def find_by_invite_token(cls, token: str) -> GroupSession | None:
        """The session this invite-link token opens, or None."""
        keyring = cls._meta.database.keyring
        digest = keyring.blind_index("group_session", "invite", (token or "").strip())
        return cls.get_or_none(cls.invite_index == digest)

    def set_join_code(self, code: str) -> None:
        """Store only the keyed hash of a patient join code (call save() afterwards).

        Patients' codes are looked up with `appliance.clinical.session_codes.find_open_session`
        only: an ended session may hold the code an open one holds now."""
        keyring = self._meta.database.keyring
        self.join_code_index = keyring.blind_index("group_session", "join_code", code.strip())


class CoFacilitator(BaseModel):
    """A clinician who runs a session beside its owner (`GroupSession.facilitator`).

    Access bookkeeping, not clinical content: ids only, kept on the box and not synced.
    The owner or an admin adds and removes them from the session page.
    """

    id = AutoField()
    session = ForeignKeyField(GroupSession, backref="co_facilitators", on_delete="CASCADE")
    user = ForeignKeyField(User, backref="co_facilitating", on_delete="CASCADE")
    user_id: int  # the foreign key's raw id, which peewee adds beside `user`
    added_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    added_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("session", "user"), True),)


class Attendance(ClinicalModel):
    """A patient's presence in a session."""

    lane: ClassVar[Lane] = Lane.ROUTINE

    session = ForeignKeyField(GroupSession, backref="attendance", on_delete="CASCADE")
    patient = ForeignKeyField(Patient, backref="attendance", on_delete="CASCADE")
    # The foreign keys' raw ids, which peewee adds beside `session` and `patient`.
    session_id: str
    patient_id: str
    # The name shown to the group in this session (may differ from the registered name).
    display_name = EncryptedField(null=True)
    status = CharField(
        default="waiting",
        constraints=[Check("status IN ('waiting', 'admitted', 'left', 'removed', 'absent')")],
    )
    joined_at = DateTimeField(default=utcnow)
    left_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("session", "patient"), True),)


class Consent(ClinicalModel):
    """A consent decision: what it covers and whether it was given are both encrypted."""

    patient = ForeignKeyField(Patient, backref="consents", on_delete="CASCADE")
    session = ForeignKeyField(GroupSession, null=True, on_delete="SET NULL")
    # What was consented to, e.g. {"terms": "group-v1"} or "recording".
    scope = EncryptedField()
    granted = EncryptedField()
    details = EncryptedField(null=True)
    recorded_by = ForeignKeyField(User, null=True, on_delete="SET NULL")


class QuestionnaireResponse(ClinicalModel):
    """A PHQ-9 or GAD-7: item answers and total score are encrypted."""

    patient = ForeignKeyField(Patient, backref="questionnaires", on_delete="CASCADE")
    patient_id: str  # the foreign key's raw id, which peewee adds beside `patient`
    session = ForeignKeyField(GroupSession, null=True, on_delete="SET NULL")
    kind = CharField(constraints=[Check("kind IN ('PHQ9', 'GAD7')")])
    items = EncryptedField()
    score = EncryptedField()
    severity = EncryptedField(null=True)


class SessionNote(ClinicalModel):
    """A clinician's note about a session and/or a patient."""

    session = ForeignKeyField(GroupSession, null=True, on_delete="SET NULL")
    patient = ForeignKeyField(Patient, null=True, on_delete="CASCADE")
    author = ForeignKeyField(User, on_delete="RESTRICT")
    text = EncryptedField()


class ChatDisabled(ValueError):
    """The session does not keep chat, so its messages are not stored."""


class ChatMessage(ClinicalModel):
    """A chat line from a session whose `keep_chat` setting is on; refused otherwise."""

    lane: ClassVar[Lane] = Lane.ROUTINE

    session = ForeignKeyField(GroupSession, backref="chat", on_delete="CASCADE")
    # Who wrote it, as an id ("user:3", or a patient record id): never a name.
    sender = CharField()
    text = EncryptedField()

    def before_save(self) -> None:
        if not GroupSession.get_by_id(self.__data__["session"]).keep_chat:
            raise ChatDisabled("this session does not keep chat; the message was not stored")


class SessionLive(ClinicalModel):
    """What a facilitator pushed to a running session, kept across a restart: the broadcast
    message, the quick poll and the questionnaires asked for (web/live.py owns the shapes).

    A poll holds its question, options, open state and per-option counts; who chose what is
    kept only while the poll is open (so a vote can be changed) and dropped when it closes.
    """

    lane: ClassVar[Lane] = Lane.ROUTINE

    session = ForeignKeyField(GroupSession, unique=True, backref="live", on_delete="CASCADE")
    message = EncryptedField(null=True)
    poll = EncryptedField(null=True)
    asked = EncryptedField(null=True)


class RiskFlag(ClinicalModel):
    """An urgent concern about a patient (e.g. PHQ-9 item 9 answered above zero).

    Open until a clinician of the patient's care team records what was done (`follow_up`,
    encrypted): then `referred` or `closed` (appliance/clinical/follow_up.py).
    """

    lane: ClassVar[Lane] = Lane.URGENT

    patient = ForeignKeyField(Patient, backref="risk_flags", on_delete="CASCADE")
    source = ForeignKeyField(QuestionnaireResponse, null=True, on_delete="SET NULL")
    patient_id: str  # the foreign key's raw id, which peewee adds beside `patient`
    raised_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    reason = EncryptedField()
    state = CharField(
        default="open", constraints=[Check("state IN ('open', 'referred', 'closed')")]
    )
    follow_up = EncryptedField(null=True)
    followed_up_by = ForeignKeyField(
        User, null=True, on_delete="SET NULL", column_name="followed_up_by_id", backref="+"
    )
    followed_up_at = DateTimeField(null=True)


class Referral(ClinicalModel):
    """A referral to another service, urgent lane."""

    lane: ClassVar[Lane] = Lane.URGENT

    patient = ForeignKeyField(Patient, backref="referrals", on_delete="CASCADE")
    risk_flag = ForeignKeyField(RiskFlag, null=True, on_delete="SET NULL")
    referred_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    details = EncryptedField()


class TelemetryEvent(ClinicalModel):
    """Operational figures for the centre (counts, durations); lowest lane."""

    lane: ClassVar[Lane] = Lane.TELEMETRY

    kind = CharField()
    data = EncryptedField()


class PatientCard(BaseModel):
    """A patient's access card: only the keyed hash of its code is kept, never the code.

    Access bookkeeping, not clinical content (ids, a hash, times): kept on the box and not
    synced. A re-issued card revokes the one before; a revoked card opens nothing.
    """

    id = AutoField()
    patient = ForeignKeyField(Patient, backref="cards", on_delete="CASCADE")
    code_index = BlindIndexField(unique=True, null=False)
    issued_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    issued_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)

    class Meta:
        table_name = "patient_card"


class ClinicSetting(BaseModel):
    """A clinic-wide setting an admin keeps (e.g. the emergency contact shown beside
    messages): public clinic information, never a patient's."""

    key = CharField(primary_key=True, max_length=64)
    value = TextField()
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "clinic_setting"


class SecureMessage(ClinicalModel):
    """A message between a patient and their care team, outside any session.

    `author` is the clinician who wrote it, or NULL when the patient did. `read_at` is when
    the other side first opened it (unread counts on the dashboard and the patient's space).
    """

    patient = ForeignKeyField(Patient, backref="messages", on_delete="CASCADE")
    patient_id: str  # the foreign key's raw id, which peewee adds beside `patient`
    author = ForeignKeyField(User, null=True, on_delete="SET NULL")
    body = EncryptedField()
    read_at = DateTimeField(null=True)

    class Meta:
        table_name = "secure_message"
        indexes = ((("patient", "created_at"), False),)


class MeasureSchedule(ClinicalModel):
    """A measure a clinician asked a patient to fill in between sessions, every `every_days`
    days from `next_due` on: PHQ-9, GAD-7 or the one-tap daily mood check (`MOOD`).

    Which measure and when are scheduling facts (like `QuestionnaireResponse.kind`); the
    answers live encrypted in `QuestionnaireResponse` and `MoodEntry`.
    """

    patient = ForeignKeyField(Patient, backref="schedules", on_delete="CASCADE")
    kind = CharField(constraints=[Check("kind IN ('PHQ9', 'GAD7', 'MOOD')")])
    every_days = IntegerField(constraints=[Check("every_days BETWEEN 1 AND 90")])
    next_due = DateTimeField()
    active = BooleanField(default=True)
    scheduled_by = ForeignKeyField(User, null=True, on_delete="SET NULL")

    class Meta:
        table_name = "measure_schedule"


class MoodEntry(ClinicalModel):
    """A daily mood check: 1 (very low) to 5 (very good) and an optional note, encrypted."""

    patient = ForeignKeyField(Patient, backref="moods", on_delete="CASCADE")
    score = EncryptedField()
    note = EncryptedField(null=True)

    class Meta:
        table_name = "mood_entry"


class SafetyPlan(ClinicalModel):
    """A patient's safety plan (Stanley-Brown sections), written with their clinician: one
    per patient, every section encrypted together (appliance/clinical/safety_plan.py)."""

    lane: ClassVar[Lane] = Lane.URGENT

    patient = ForeignKeyField(Patient, unique=True, backref="+", on_delete="CASCADE")
    sections = EncryptedField()
    written_by = ForeignKeyField(User, null=True, on_delete="SET NULL")

    class Meta:
        table_name = "safety_plan"


class LessonAssignment(ClinicalModel):
    """A lesson (and optional homework) a clinician gave a patient, and when it was done.

    Which lesson it is says something about the patient, so the lesson id is encrypted with
    the homework; `done_at` is a plain time.
    """

    patient = ForeignKeyField(Patient, backref="lessons", on_delete="CASCADE")
    lesson = EncryptedField()
    homework = EncryptedField(null=True)
    assigned_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    done_at = DateTimeField(null=True)

    class Meta:
        table_name = "lesson_assignment"


CLINICAL_MODELS: tuple[type[ClinicalModel], ...] = (
    Patient,
    GroupSession,
    Attendance,
    Consent,
    QuestionnaireResponse,
    SessionNote,
    ChatMessage,
    RiskFlag,
    Referral,
    TelemetryEvent,
    SessionLive,
    SecureMessage,
    MeasureSchedule,
    MoodEntry,
    SafetyPlan,
    LessonAssignment,
)
ALL_MODELS: tuple[type[BaseModel], ...] = (
    SchemaVersion,
    User,
    StaffSession,
    AuditLog,
    OutboxEntry,
    Quarantine,
    *CLINICAL_MODELS,
    CoFacilitator,
    PatientCard,
    ClinicSetting,
)
MODELS_BY_TYPE: dict[str, type[ClinicalModel]] = {m.record_type(): m for m in CLINICAL_MODELS}
