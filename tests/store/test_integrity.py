"""Tamper detection: flipped bytes and moved ciphertexts fail loudly for that record only."""

from __future__ import annotations

import sqlite3

import pytest

from appliance.config import Settings
from appliance.store import IntegrityError, Store, open_store
from appliance.store.audit import verify
from appliance.store.models import AuditLog, OutboxEntry, Quarantine
from appliance.store.outbox import Outbox
from tests.store.cli import clinicbox
from tests.store.conftest import make_session

pytestmark = pytest.mark.timeout(60)


def _raw(store: Store, sql: str, params: list) -> None:
    # Straight to SQLite, around the models: what someone with the file in hand could do.
    store.db.execute_sql(sql, params)


def test_flipped_byte_is_an_integrity_error_audited_and_quarantined(store: Store) -> None:
    _user, patient, _session = make_session(store)
    other = store.Patient.create(display_name="Unharmed Person")
    blob = bytearray(
        store.db.execute_sql("SELECT display_name FROM patient WHERE id = ?", [patient.id])
        .fetchone()[0]
    )
    blob[-5] ^= 0x01
    _raw(store, "UPDATE patient SET display_name = ? WHERE id = ?", [bytes(blob), patient.id])

    damaged = store.Patient.get_by_id(patient.id)
    with pytest.raises(IntegrityError) as err:
        _ = damaged.display_name
    assert f"patient/{patient.id}" in str(err.value)
    assert "Test Patient" not in str(err.value)
    # Reading it again fails again, but is audited and quarantined once.
    with pytest.raises(IntegrityError):
        _ = store.Patient.get_by_id(patient.id).display_name
    assert Quarantine.select().where(Quarantine.record_id == patient.id).count() == 1
    audits = AuditLog.select().where(AuditLog.action == "integrity.failed")
    assert [a.target for a in audits] == [f"patient/{patient.id}"]
    assert OutboxEntry.get(OutboxEntry.record_id == patient.id).state == "quarantined"
    # The rest of the store carries on: other records read, the outbox leases around it.
    assert store.Patient.get_by_id(other.id).display_name == "Unharmed Person"
    leased = Outbox(store).lease(1_000_000, 50)
    assert patient.id not in [i.record_id for i in leased]
    assert other.id in [i.record_id for i in leased]
    assert verify(store.db).ok
    store.close()
    listed = clinicbox(store.settings, "audit", "verify")
    assert listed.returncode == 0, listed.stderr
    assert f"quarantined records (1): patient/{patient.id}" in listed.stdout


def test_swapped_rows_and_columns_fail(store: Store) -> None:
    _user, first, _session = make_session(store)
    second = store.Patient.create(display_name="Second Person", identity={"dob": "1990-01-01"})
    rows = dict(store.db.execute_sql("SELECT id, display_name FROM patient").fetchall())
    _raw(store, "UPDATE patient SET display_name = ? WHERE id = ?", [rows[second.id], first.id])
    _raw(store, "UPDATE patient SET display_name = ? WHERE id = ?", [rows[first.id], second.id])
    for pk in (first.id, second.id):
        with pytest.raises(IntegrityError):
            _ = store.Patient.get_by_id(pk).display_name
    # A ciphertext moved to another column of the same row fails too.
    third = store.Patient.create(display_name="Third Person", identity={"x": 1})
    _raw(store, "UPDATE patient SET display_name = identity WHERE id = ?", [third.id])
    with pytest.raises(IntegrityError):
        _ = store.Patient.get_by_id(third.id).display_name
    assert Quarantine.select().count() == 3


def test_relabelled_key_id_fails(store: Store) -> None:
    _user, patient, _session = make_session(store)
    blob = bytearray(
        store.db.execute_sql("SELECT display_name FROM patient WHERE id = ?", [patient.id])
        .fetchone()[0]
    )
    blob[1:5] = (7).to_bytes(4, "big")
    _raw(store, "UPDATE patient SET display_name = ? WHERE id = ?", [bytes(blob), patient.id])
    with pytest.raises(IntegrityError):
        _ = store.Patient.get_by_id(patient.id).display_name


def test_audit_verify_reports_first_broken_link(settings: Settings) -> None:
    store = open_store(settings)
    for n in range(6):
        store.audit(f"user:{n}", "record.read", f"patient/p{n}")
    with pytest.raises(Exception, match="append-only"):
        AuditLog.update(actor="user:99").where(AuditLog.id == 2).execute()
    store.close()

    ok = clinicbox(settings, "audit", "verify")
    assert ok.returncode == 0, ok.stderr
    assert "6 entries verified" in ok.stdout

    conn = sqlite3.connect(settings.database_path)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET actor = 'user:99' WHERE id = 4")
    conn.commit()
    conn.close()
    broken = clinicbox(settings, "audit", "verify")
    assert broken.returncode == 1
    assert "broken at entry 4" in broken.stdout and "altered" in broken.stdout

    conn = sqlite3.connect(settings.database_path)
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.execute("DELETE FROM audit_log WHERE id IN (2, 4)")
    conn.commit()
    conn.close()
    gap = clinicbox(settings, "audit", "verify")
    assert gap.returncode == 1
    assert "broken at entry 3: entry 2 is missing" in gap.stdout


def test_audit_refuses_names(store: Store) -> None:
    with pytest.raises(ValueError):
        store.audit("Ada Lovelace", "record.read", "patient/1")
