"""Risk flags that need follow-up: who sees them, recording what was done, the audit trail."""

from __future__ import annotations

from datetime import datetime

import pytest
from flask import Flask

from appliance.accounts import create_user
from appliance.box import Box
from appliance.clinical.follow_up import FollowUpError, record_follow_up
from appliance.clinical.session_codes import assign_codes
from tests.web.conftest import PASSWORD, csrf_from, sign_in


def _flagged_patient(box: Box, app: Flask, owner_id: int, name: str) -> tuple[str, str, str]:
    """A session of `owner_id` with one admitted patient whose PHQ-9 raised a flag:
    (session id, patient id, flag id)."""
    store = box.store
    group = store.GroupSession(
        title="Thursday group", starts_at=datetime(2031, 1, 9, 10), facilitator=owner_id
    )
    assign_codes(group, app.config["SECRET_KEY"])
    group.save()
    person = store.Patient.create(display_name=name)
    store.Attendance.create(session=group, patient=person, display_name=name, status="admitted")
    flag = store.RiskFlag.create(patient=person, reason="PHQ9 item 9 answered 1")
    return group.id, person.id, flag.id


def test_recording_a_follow_up_closes_the_flag_audited_and_encrypted(app: Flask, box: Box) -> None:
    session_id, _patient_id, flag_id = _flagged_patient(box, app, 1, "Rowan Ash")
    client = app.test_client()
    sign_in(client)
    assert "Rowan Ash" in client.get("/dashboard").get_data(as_text=True)
    assert client.get(f"/sessions/{session_id}/risk").get_json() == {
        "attendances": [box.store.Attendance.get().id]
    }
    token = csrf_from(client, "/follow-up")
    bad = client.post(
        f"/follow-up/{flag_id}", data={"csrf_token": token, "outcome": "x", "note": "kept text"}
    )
    assert bad.status_code == 400
    assert "Choose what was done" in bad.get_data(as_text=True)
    assert "kept text" in bad.get_data(as_text=True)
    note = "Referred to the crisis team, seen the same afternoon"
    done = client.post(
        f"/follow-up/{flag_id}", data={"csrf_token": token, "outcome": "referred", "note": note}
    )
    assert done.status_code == 302
    flag = box.store.RiskFlag.get_by_id(flag_id)
    assert (flag.state, flag.follow_up, flag.followed_up_by_id) == ("referred", note, 1)
    assert box.store.Referral.get().risk_flag_id == flag_id
    raw = box.store.db.execute_sql("SELECT follow_up FROM risk_flag").fetchone()[0]
    assert note.encode() not in bytes(raw)
    entries = [(e.actor, e.action, e.target) for e in box.store.AuditLog.select()]
    assert ("user:1", "risk.follow_up", f"risk_flag/{flag_id}") in entries
    assert "Rowan Ash" not in client.get("/dashboard").get_data(as_text=True)
    assert client.get(f"/sessions/{session_id}/risk").get_json() == {"attendances": []}
    # A second record (a colleague's tab open on the same flag) is refused, the first stands.
    again = client.post(
        f"/follow-up/{flag_id}", data={"csrf_token": token, "outcome": "closed", "note": "late"}
    )
    assert again.status_code == 400
    assert box.store.RiskFlag.get_by_id(flag_id).follow_up == note


def test_only_the_care_team_and_admins_see_a_flag(app: Flask, box: Box) -> None:
    bea = create_user(box.store, "dr.bea", PASSWORD, "clinician")
    admin = create_user(box.store, "admin.ann", PASSWORD, "admin")
    _session_id, patient_id, flag_id = _flagged_patient(box, app, bea.id, "Rowan Ash")
    ada = app.test_client()
    sign_in(ada)
    assert "Rowan Ash" not in ada.get("/follow-up").get_data(as_text=True)
    token = csrf_from(ada, "/follow-up")
    refused = ada.post(
        f"/follow-up/{flag_id}", data={"csrf_token": token, "outcome": "closed", "note": "nosy"}
    )
    assert refused.status_code == 404
    assert box.store.RiskFlag.get_by_id(flag_id).state == "open"
    ann = app.test_client()
    sign_in(ann, "admin.ann")
    # The admin's own dashboard shows no other team's flag; the full list does, audited.
    assert "Rowan Ash" not in ann.get("/dashboard").get_data(as_text=True)
    assert "Rowan Ash" in ann.get("/follow-up").get_data(as_text=True)
    cross = [
        (e.actor, e.target) for e in box.store.AuditLog.select() if e.action == "access.cross_team"
    ]
    assert (f"user:{admin.id}", f"patient/{patient_id}") in cross


def test_follow_up_needs_an_outcome_and_a_note(box: Box, app: Flask) -> None:
    _session_id, _patient_id, flag_id = _flagged_patient(box, app, 1, "Rowan Ash")
    flag = box.store.RiskFlag.get_by_id(flag_id)
    user = box.store.User.get_by_id(1)
    for outcome, note, message in (
        ("closed", "  ", "Write what was done"),
        ("closed", "x" * 2001, "under 2000"),
        ("maybe", "spoke", "Choose what was done"),
    ):
        with pytest.raises(FollowUpError, match=message):
            record_follow_up(box.store, flag, user, outcome, note)
    assert box.store.RiskFlag.get_by_id(flag_id).state == "open"
