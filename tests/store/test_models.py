"""Models round-trip through encryption, write their outbox entry, and look up by blind index."""

from __future__ import annotations

import pytest

from appliance.clinical.session_codes import find_open_session
from appliance.store import Store
from appliance.store.models import ChatDisabled, OutboxEntry
from tests.store.conftest import make_session

pytestmark = pytest.mark.timeout(60)


def test_round_trip_and_outbox_entry(store: Store) -> None:
    user, patient, session = make_session(store)
    saved = store.QuestionnaireResponse.create(
        patient=patient, session=session, kind="PHQ9", items=[1, 2, 3, 0, 0, 1, 0, 0, 1], score=8
    )
    again = store.QuestionnaireResponse.get_by_id(saved.id)
    assert again.items == [1, 2, 3, 0, 0, 1, 0, 0, 1]
    assert again.score == 8
    entry = OutboxEntry.get(OutboxEntry.record_id == saved.id)
    assert (entry.record_type, entry.version, entry.state) == ("questionnaire_response", 1,
                                                              "pending")
    again.score = 9
    again.save()
    entry = OutboxEntry.get(OutboxEntry.record_id == saved.id)
    assert entry.version == 2 and again.version == 2


def test_blind_index_lookups(store: Store) -> None:
    _user, patient, session = make_session(store)
    assert [p.id for p in store.Patient.find_by_name("  test   PATIENT ")] == [patient.id]
    assert store.Patient.find_by_name("someone else") == []
    session.set_join_code("123456789")
    session.save()
    assert find_open_session(store.GroupSession, "123456789").id == session.id
    assert find_open_session(store.GroupSession, "987654321") is None
    session.state = "ended"  # an ended session's code may be another's now: never found
    session.save()
    assert find_open_session(store.GroupSession, "123456789") is None


def test_chat_only_kept_when_session_says_so(store: Store) -> None:
    _user, _patient, session = make_session(store, keep_chat=False)
    with pytest.raises(ChatDisabled):
        store.ChatMessage.create(session=session, sender="user:1", text="hello")
    assert store.ChatMessage.select().count() == 0
    assert OutboxEntry.select().where(OutboxEntry.record_type == "chat_message").count() == 0


def test_bulk_update_of_encrypted_field_is_refused(store: Store) -> None:
    _user, patient, _session = make_session(store)
    with pytest.raises(TypeError):
        store.Patient.update(display_name="plain").where(store.Patient.id == patient.id).execute()


def test_failed_save_rolls_back_and_keeps_version(store: Store) -> None:
    _user, _patient, session = make_session(store, keep_chat=True)
    message = store.ChatMessage.create(session=session, sender="user:1", text="kept")
    session.keep_chat = False
    session.save()
    message.text = "changed"
    with pytest.raises(ChatDisabled):
        message.save()
    assert message.version == 1
    stored = store.ChatMessage.get_by_id(message.id)
    assert (stored.text, stored.version) == ("kept", 1)
    assert OutboxEntry.get(OutboxEntry.record_id == message.id).version == 1


def test_every_write_gets_a_fresh_nonce(store: Store) -> None:
    _user, patient, _session = make_session(store)
    blobs = []
    for _ in range(3):
        patient.display_name = "Same Name"
        patient.save()
        blobs.append(bytes(store.db.execute_sql(
            "SELECT display_name FROM patient WHERE id = ?", [patient.id]).fetchone()[0]))
    nonces = {blob[5:17] for blob in blobs}
    assert len(nonces) == 3 and len(set(blobs)) == 3
    assert all(blob[0] == 1 and blob[1:5] == b"\0\0\0\x01" for blob in blobs)
