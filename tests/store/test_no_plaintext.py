"""No clinical content on disk or in logs: marker strings through every encrypted field.

Every encrypted field of every model gets its own marker; the test fails if a model grows an
encrypted field it did not cover. Then every byte of every file in the data dir (database,
WAL, shared memory, journal, keys) is scanned while the store is open and again after close.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from pathlib import Path

import pytest

from appliance.clinical.access_cards import issue_card
from appliance.clinical.session_codes import find_open_session
from appliance.config import Settings
from appliance.store import open_store
from appliance.store.fields import EncryptedField
from appliance.store.models import CLINICAL_MODELS
from appliance.store.outbox import Outbox

pytestmark = pytest.mark.timeout(60)


def _scan(data_dir: Path, markers: list[bytes]) -> list[str]:
    hits = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for marker in markers:
            # UTF-8 and UTF-16 (SQLite can store text as either).
            for form in (marker, marker.decode().encode("utf-16-le")):
                if form in data:
                    hits.append(f"{marker.decode()} in {path.name}")
    return hits


def test_markers_never_reach_disk_or_logs(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = secrets.token_hex(4).upper()
    covered: dict[tuple[str, str], bytes] = {}

    def mark(model: type, field: str) -> str:
        text = f"MARK{token}{model.__name__}{field}"
        covered[(model.__name__, field)] = text.encode()
        return text

    store = open_store(settings)
    s = store
    user = s.User.create(username="dr.ada", role="clinician", password_hash="x")
    patient = s.Patient.create(
        display_name=mark(s.Patient, "display_name"),
        identity={"full_name": mark(s.Patient, "identity"), "dob": "1970-01-01"},
    )
    group = s.GroupSession(
        title=mark(s.GroupSession, "title"), starts_at=datetime(2026, 3, 1), facilitator=user,
        keep_chat=True,
    )
    join_code, invite = f"9{token}", f"INV{token}"
    group.set_join_code(join_code)
    group.set_invite_token(invite)
    group.save()
    s.Attendance.create(session=group, patient=patient,
                        display_name=mark(s.Attendance, "display_name"))
    s.Consent.create(patient=patient, session=group, scope=mark(s.Consent, "scope"),
                     granted=mark(s.Consent, "granted"), details=mark(s.Consent, "details"))
    answer = s.QuestionnaireResponse.create(
        patient=patient, session=group, kind="PHQ9",
        items=[mark(s.QuestionnaireResponse, "items")], score=mark(s.QuestionnaireResponse,
                                                                   "score"),
        severity=mark(s.QuestionnaireResponse, "severity"),
    )
    note = s.SessionNote.create(session=group, patient=patient, author=user,
                                text=mark(s.SessionNote, "text"))
    s.ChatMessage.create(session=group, sender="user:1", text=mark(s.ChatMessage, "text"))
    flag = s.RiskFlag.create(patient=patient, source=answer, reason=mark(s.RiskFlag, "reason"),
                             follow_up=mark(s.RiskFlag, "follow_up"))
    s.Referral.create(patient=patient, risk_flag=flag, details=mark(s.Referral, "details"))
    s.TelemetryEvent.create(kind="uptime", data=mark(s.TelemetryEvent, "data"))
    s.SessionLive.create(
        session=group, message=mark(s.SessionLive, "message"),
        poll={"question": mark(s.SessionLive, "poll")}, asked=[mark(s.SessionLive, "asked")],
    )
    # Between sessions: messages, the mood diary, the safety plan, lessons, the access card.
    s.SecureMessage.create(patient=patient, body=mark(s.SecureMessage, "body"))
    s.MoodEntry.create(
        patient=patient, score=mark(s.MoodEntry, "score"), note=mark(s.MoodEntry, "note")
    )
    s.SafetyPlan.create(patient=patient, sections={"help": mark(s.SafetyPlan, "sections")})
    s.LessonAssignment.create(
        patient=patient,
        lesson=mark(s.LessonAssignment, "lesson"),
        homework=mark(s.LessonAssignment, "homework"),
    )
    card_code = issue_card(s, patient, user)
    # An edit: the first ciphertext's page is freed (and zeroed by secure_delete).
    note.text = mark(s.SessionNote, "text") + " edited"
    note.save()
    # Reads, lookups and a lease go through the decrypting paths too.
    assert s.Patient.find_by_name(patient.display_name)[0].id == patient.id
    assert find_open_session(s.GroupSession, join_code).id == group.id
    assert len(Outbox(s).lease(10_000_000, 100)) == 15
    s.audit("user:1", "record.read", f"patient/{patient.id}")

    expected = {
        (m.__name__, f.name)
        for m in CLINICAL_MODELS
        for f in m._meta.sorted_fields
        if isinstance(f, EncryptedField)
    }
    assert set(covered) == expected, "every encrypted field needs a marker"
    markers = [*covered.values(), join_code.encode(), invite.encode(), card_code.encode()]

    assert settings.database_path.with_name("clinicbox.db-wal").stat().st_size > 0
    assert _scan(settings.data_dir, markers) == []
    store.close()
    assert _scan(settings.data_dir, markers) == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert token not in logged
