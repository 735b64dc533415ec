"""Schema migrations upgrade an existing database in place."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import pytest

from appliance.config import Settings
from appliance.store import open_store
from appliance.store.database import RecordDatabase
from appliance.store.keyring import Keyring
from appliance.store.migrations import LATEST, SchemaError, current_version, migrate
from appliance.store.models import ALL_MODELS, GroupSession, Patient, QuestionnaireResponse, User
from tests.store.cli import clinicbox

pytestmark = pytest.mark.timeout(60)


def _tables(path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")
        return {r[0] for r in rows}
    finally:
        conn.close()


def test_v1_database_is_upgraded_in_place(settings: Settings) -> None:
    # Build a database exactly as schema v1 shipped, with records in it.
    settings.secrets_dir.mkdir(parents=True)
    keyring = Keyring.open(settings.secrets_dir)
    db = RecordDatabase(settings.database_path, keyring)
    db.connect()
    db.bind(ALL_MODELS)
    assert migrate(db, target=1) == 1
    user = User.create(username="dr.ada", role="clinician", password_hash="x")
    patient = Patient.create(display_name="Old Record")
    session = GroupSession.create(title="Old group", starts_at=datetime(2025, 5, 1),
                                  facilitator=user)
    answer = QuestionnaireResponse.create(patient=patient, session=session, kind="PHQ9",
                                          items=[0] * 9, score=0)
    db.close()
    assert "quarantine" not in _tables(settings.database_path)

    store = open_store(settings)
    try:
        assert current_version(store.db) == LATEST == 8
        assert {
            "quarantine", "audit_log_no_update", "audit_log_no_delete",
            "session_live", "co_facilitator", "staff_session",
            "patient_card", "clinic_setting", "secure_message",
            "measure_schedule", "mood_entry", "safety_plan",
        } <= _tables(settings.database_path)
        assert store.Patient.get_by_id(patient.id).display_name == "Old Record"
        assert store.QuestionnaireResponse.get_by_id(answer.id).items == [0] * 9
        rows = store.db.execute_sql("SELECT version FROM schema_version ORDER BY version")
        assert [r[0] for r in rows.fetchall()] == [1, 2, 3, 4, 5, 6, 7, 8]
    finally:
        store.close()
    # Opening again is a no-op.
    again = open_store(settings)
    assert current_version(again.db) == LATEST
    again.close()


def test_newer_schema_is_refused(settings: Settings) -> None:
    store = open_store(settings)
    store.db.execute_sql("INSERT INTO schema_version (version, applied_at) VALUES (99, '')")
    store.close()
    with pytest.raises(SchemaError, match="newer than this software"):
        open_store(settings)
    refused = clinicbox(settings, "audit", "verify")
    assert refused.returncode == 2 and "newer than this software" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_unusable_database_file_is_one_line(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True)
    settings.database_path.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(SchemaError, match="cannot open the record database"):
        open_store(settings)
    refused = clinicbox(settings, "keys", "status")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith("clinicbox: error: cannot open the record database")
    assert refused.stderr.strip().count("\n") == 0
