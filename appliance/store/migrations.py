"""Schema migrations: numbered steps that upgrade an existing database in place.

`schema_version` holds one row per applied step. Each step runs in its own transaction, so an
interrupted upgrade leaves the database at the last complete version and the next start
continues from there. Steps never change once released: a new schema is a new step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from appliance.errors import OperatorError
from appliance.store.database import RecordDatabase
from appliance.store.models import SchemaVersion
from appliance.store.schema_v1 import V1_STATEMENTS

log = logging.getLogger(__name__)


class SchemaError(OperatorError):
    """The database file cannot be used by this version of the software."""


def _v1_initial(db: RecordDatabase) -> None:
    for statement in V1_STATEMENTS:
        db.execute_sql(statement)


def _v2_quarantine_and_append_only_audit(db: RecordDatabase) -> None:
    """Quarantine list for records that fail integrity checks; the audit log refuses edits."""
    db.execute_sql(
        'CREATE TABLE "quarantine" ("id" INTEGER NOT NULL PRIMARY KEY, '
        '"record_type" VARCHAR(255) NOT NULL, "record_id" VARCHAR(255) NOT NULL, '
        '"column" VARCHAR(255) NOT NULL, "detected_at" DATETIME NOT NULL)'
    )
    db.execute_sql(
        'CREATE UNIQUE INDEX "quarantine_record_type_record_id" '
        'ON "quarantine" ("record_type", "record_id")'
    )
    # Not a defence against someone holding the file (they can drop a trigger; the keyed hash
    # chain catches that), but no code path in the box can rewrite history by mistake.
    for verb in ("UPDATE", "DELETE"):
        db.execute_sql(
            f'CREATE TRIGGER "audit_log_no_{verb.lower()}" BEFORE {verb} ON "audit_log" '
            "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
        )


def _v3_session_live(db: RecordDatabase) -> None:
    """What a facilitator pushed to a session (message, poll, questionnaires asked)."""
    db.execute_sql(
        'CREATE TABLE "session_live" ("id" VARCHAR(36) NOT NULL PRIMARY KEY, "version" '
        'INTEGER NOT NULL, "created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL, '
        '"session_id" VARCHAR(36) NOT NULL, "message" BLOB, "poll" BLOB, "asked" BLOB, '
        'FOREIGN KEY ("session_id") REFERENCES "group_session" ("id") ON DELETE CASCADE)'
    )
    db.execute_sql(
        'CREATE UNIQUE INDEX "session_live_session_id" ON "session_live" ("session_id")'
    )


def _v4_co_facilitators(db: RecordDatabase) -> None:
    """Clinicians who run a session beside its owner: the session's care team."""
    db.execute_sql(
        'CREATE TABLE "co_facilitator" ("id" INTEGER NOT NULL PRIMARY KEY, '
        '"session_id" VARCHAR(36) NOT NULL, "user_id" INTEGER NOT NULL, "added_by_id" INTEGER, '
        '"added_at" DATETIME NOT NULL, '
        'FOREIGN KEY ("session_id") REFERENCES "group_session" ("id") ON DELETE CASCADE, '
        'FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE, '
        'FOREIGN KEY ("added_by_id") REFERENCES "user" ("id") ON DELETE SET NULL)'
    )
    db.execute_sql(
        'CREATE UNIQUE INDEX "co_facilitator_session_id_user_id" '
        'ON "co_facilitator" ("session_id", "user_id")'
    )
    # "Which sessions does this clinician help run?" is asked on every dashboard and check.
    db.execute_sql('CREATE INDEX "co_facilitator_user_id" ON "co_facilitator" ("user_id")')


def _v5_staff_sessions(db: RecordDatabase) -> None:
    """Server-side staff sessions: revocable on logout, account disable and expiry."""
    db.execute_sql(
        'CREATE TABLE "staff_session" ("token_hash" VARCHAR(64) NOT NULL PRIMARY KEY, '
        '"user_id" INTEGER NOT NULL, "created_at" REAL NOT NULL, "last_seen" REAL NOT NULL, '
        'FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE)'
    )
    db.execute_sql('CREATE INDEX "staff_session_user_id" ON "staff_session" ("user_id")')


def _v6_risk_follow_up(db: RecordDatabase) -> None:
    """What a clinician did about a risk flag, who and when: a flag stays on the care team's
    "needs follow-up" list until this is filled in."""
    db.execute_sql('ALTER TABLE "risk_flag" ADD COLUMN "follow_up" BLOB')
    db.execute_sql(
        'ALTER TABLE "risk_flag" ADD COLUMN "followed_up_by_id" INTEGER '
        'REFERENCES "user" ("id") ON DELETE SET NULL'
    )
    db.execute_sql('ALTER TABLE "risk_flag" ADD COLUMN "followed_up_at" DATETIME')
    # "Which flags are still open?" is asked on every dashboard.
    db.execute_sql('CREATE INDEX "risk_flag_state" ON "risk_flag" ("state")')


def _v7_between_sessions(db: RecordDatabase) -> None:
    """Patient access cards (hashes only), clinic settings and secure messages."""
    db.execute_sql(
        'CREATE TABLE "patient_card" ("id" INTEGER NOT NULL PRIMARY KEY, '
        '"patient_id" VARCHAR(36) NOT NULL, "code_index" VARCHAR(32) NOT NULL, '
        '"issued_by_id" INTEGER, "issued_at" DATETIME NOT NULL, "revoked_at" DATETIME, '
        'FOREIGN KEY ("patient_id") REFERENCES "patient" ("id") ON DELETE CASCADE, '
        'FOREIGN KEY ("issued_by_id") REFERENCES "user" ("id") ON DELETE SET NULL)'
    )
    db.execute_sql(
        'CREATE UNIQUE INDEX "patient_card_code_index" ON "patient_card" ("code_index")'
    )
    db.execute_sql('CREATE INDEX "patient_card_patient_id" ON "patient_card" ("patient_id")')
    db.execute_sql(
        'CREATE TABLE "clinic_setting" ("key" VARCHAR(64) NOT NULL PRIMARY KEY, '
        '"value" TEXT NOT NULL, "updated_at" DATETIME NOT NULL)'
    )
    db.execute_sql(
        'CREATE TABLE "secure_message" ("id" VARCHAR(36) NOT NULL PRIMARY KEY, '
        '"version" INTEGER NOT NULL, "created_at" DATETIME NOT NULL, '
        '"updated_at" DATETIME NOT NULL, "patient_id" VARCHAR(36) NOT NULL, '
        '"author_id" INTEGER, "body" BLOB NOT NULL, "read_at" DATETIME, '
        'FOREIGN KEY ("patient_id") REFERENCES "patient" ("id") ON DELETE CASCADE, '
        'FOREIGN KEY ("author_id") REFERENCES "user" ("id") ON DELETE SET NULL)'
    )
    db.execute_sql(
        'CREATE INDEX "secure_message_patient_id_created_at" '
        'ON "secure_message" ("patient_id", "created_at")'
    )


_RECORD_COLUMNS = (
    '"id" VARCHAR(36) NOT NULL PRIMARY KEY, "version" INTEGER NOT NULL, '
    '"created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL, '
)
_PATIENT_FK = 'FOREIGN KEY ("patient_id") REFERENCES "patient" ("id") ON DELETE CASCADE'


def _v8_measures_and_safety_plans(db: RecordDatabase) -> None:
    """Measures scheduled between sessions, daily mood checks, safety plans and lessons."""
    db.execute_sql(
        f'CREATE TABLE "measure_schedule" ({_RECORD_COLUMNS}'
        '"patient_id" VARCHAR(36) NOT NULL, '
        """"kind" VARCHAR(255) NOT NULL CHECK (kind IN ('PHQ9', 'GAD7', 'MOOD')), """
        '"every_days" INTEGER NOT NULL CHECK (every_days BETWEEN 1 AND 90), '
        '"next_due" DATETIME NOT NULL, "active" INTEGER NOT NULL, "scheduled_by_id" INTEGER, '
        f"{_PATIENT_FK}, "
        'FOREIGN KEY ("scheduled_by_id") REFERENCES "user" ("id") ON DELETE SET NULL)'
    )
    db.execute_sql(
        'CREATE INDEX "measure_schedule_patient_id" ON "measure_schedule" ("patient_id")'
    )
    db.execute_sql(
        f'CREATE TABLE "mood_entry" ({_RECORD_COLUMNS}'
        f'"patient_id" VARCHAR(36) NOT NULL, "score" BLOB NOT NULL, "note" BLOB, {_PATIENT_FK})'
    )
    db.execute_sql('CREATE INDEX "mood_entry_patient_id" ON "mood_entry" ("patient_id")')
    db.execute_sql(
        f'CREATE TABLE "safety_plan" ({_RECORD_COLUMNS}'
        '"patient_id" VARCHAR(36) NOT NULL, "sections" BLOB NOT NULL, "written_by_id" INTEGER, '
        f"{_PATIENT_FK}, "
        'FOREIGN KEY ("written_by_id") REFERENCES "user" ("id") ON DELETE SET NULL)'
    )
    db.execute_sql('CREATE UNIQUE INDEX "safety_plan_patient_id" ON "safety_plan" ("patient_id")')
    db.execute_sql(
        f'CREATE TABLE "lesson_assignment" ({_RECORD_COLUMNS}'
        '"patient_id" VARCHAR(36) NOT NULL, "lesson" BLOB NOT NULL, "homework" BLOB, '
        '"assigned_by_id" INTEGER, "done_at" DATETIME, '
        f"{_PATIENT_FK}, "
        'FOREIGN KEY ("assigned_by_id") REFERENCES "user" ("id") ON DELETE SET NULL)'
    )
    db.execute_sql(
        'CREATE INDEX "lesson_assignment_patient_id" ON "lesson_assignment" ("patient_id")'
    )


MIGRATIONS: tuple[tuple[int, Callable[[RecordDatabase], None]], ...] = (
    (1, _v1_initial),
    (2, _v2_quarantine_and_append_only_audit),
    (3, _v3_session_live),
    (4, _v4_co_facilitators),
    (5, _v5_staff_sessions),
    (6, _v6_risk_follow_up),
    (7, _v7_between_sessions),
    (8, _v8_measures_and_safety_plans),
)
LATEST = MIGRATIONS[-1][0]


def current_version(db: RecordDatabase) -> int:
    """The schema version of `db`; 0 for a database without the store's tables."""
    if not db.table_exists(SchemaVersion._meta.table_name):
        return 0
    return SchemaVersion.select(SchemaVersion.version).order_by(
        SchemaVersion.version.desc()
    ).scalar() or 0


def migrate(db: RecordDatabase, target: int = LATEST) -> int:
    """Apply the missing steps up to `target`; return the resulting version."""
    version = current_version(db)
    if version > LATEST:
        raise SchemaError(
            f"database schema v{version} is newer than this software (v{LATEST}); upgrade "
            "ClinicBox before opening it"
        )
    for number, step in MIGRATIONS:
        if version < number <= target:
            with db.atomic("IMMEDIATE"):
                # Re-read under the write lock: another process may have just migrated.
                if current_version(db) >= number:
                    continue
                step(db)
                SchemaVersion.create(version=number)
            log.info("record store schema upgraded to v%s", number)
            version = number
    return current_version(db)
