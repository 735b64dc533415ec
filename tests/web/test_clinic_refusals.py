"""The clinic's refusals carry their HTTP status (appliance/clinical/errors.py) and the portal
maps them to responses in one place: the waiting room, record matching and the call API's
seat check answer with the status their exception names, as a page or as JSON."""

from __future__ import annotations

import re

import pytest

from appliance.clinical.errors import ClinicError, Invalid, NotFound
from appliance.clinical.waiting_room import change_seats
from appliance.media.join_token import issue
from tests.web.conftest import csrf_from, sign_in
from tests.web.test_portal import _join, _schedule


def _attendance_ids(page: str) -> list[str]:
    return re.findall(r'name="attendance" value="([0-9a-f-]+)"', page)


def test_waiting_room_refusals_are_pages_and_json_with_their_status(app):
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    _join(app, code, "Ana")
    token = csrf_from(clinician, session_url)
    admit_url = session_url + "/admit"
    gone = clinician.post(
        admit_url, data={"csrf_token": token, "action": "deny", "attendance": "not-waiting"}
    )
    assert gone.status_code == 404
    assert "That person is no longer waiting." in gone.get_data(as_text=True)
    as_json = clinician.post(
        admit_url,
        data={"csrf_token": token, "action": "remove", "attendance": "nobody"},
        headers={"Accept": "application/json"},
    )
    assert as_json.status_code == 404
    assert as_json.get_json() == {
        "error": "Not Found",
        "message": "That person is not in the session.",
    }
    unknown = clinician.post(admit_url, data={"csrf_token": token, "action": "shout"})
    assert unknown.status_code == 400
    assert "Unknown waiting-room action." in unknown.get_data(as_text=True)


def test_matching_onto_a_record_already_in_the_session_is_a_conflict(app, box):
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    _join(app, code, "Ana")
    _join(app, code, "Ben")
    token = csrf_from(clinician, session_url)
    clinician.post(session_url + "/admit", data={"csrf_token": token, "action": "admit_all"})
    ana, ben = (
        box.store.Attendance.get(box.store.Attendance.id == a)
        for a in _attendance_ids(clinician.get(session_url).get_data(as_text=True))[:2]
    )
    reply = clinician.post(
        session_url + "/match",
        data={"csrf_token": token, "attendance": ana.id, "patient": ben.patient_id},
    )
    assert reply.status_code == 409
    assert "already in this session" in reply.get_data(as_text=True)
    # Nothing moved.
    assert box.store.Attendance.get_by_id(ana.id).patient_id == ana.patient_id


def test_call_api_refusals_keep_the_media_topic_and_status(app, box):
    client = app.test_client()
    missing = client.post(
        "/api/media/offer",
        json={
            "token": issue(box, "no-such-session", "attendance/x", "patient"),
            "sdp": "v=0",
            "type": "offer",
        },
    )
    assert missing.status_code == 404
    assert missing.get_json() == {"error": "media", "message": "there is no such session"}
    clinician = app.test_client()
    sign_in(clinician)
    session_url, _code = _schedule(clinician)
    group_id = session_url.rsplit("/", 1)[1]
    box.store.GroupSession.update(state="ended").where(
        box.store.GroupSession.id == group_id
    ).execute()
    ended = client.post(
        "/api/media/offer",
        json={
            "token": issue(box, group_id, "attendance/x", "patient"),
            "sdp": "v=0",
            "type": "offer",
        },
    )
    assert ended.status_code == 403
    assert ended.get_json() == {"error": "media", "message": "this session has ended"}
    not_json = client.post("/api/media/offer", data="x", content_type="text/plain")
    assert not_json.status_code == 400
    assert not_json.get_json()["error"] == "media"


def test_domain_refusals_name_their_status_without_flask(box):
    # An unknown action is refused before anything is written; a seat nobody holds is absent.
    with pytest.raises(Invalid) as unknown:
        change_seats(box.store, "no-session", "shout", "", "user:1")
    assert unknown.value.status == 400
    with pytest.raises(NotFound) as gone:
        change_seats(box.store, "no-session", "admit", "a", "user:1")
    assert gone.value.status == 404 and isinstance(gone.value, ClinicError)
    assert ClinicError("busy", status=503).status == 503


def test_an_ended_session_refuses_to_start_again_with_a_conflict(app, box):
    clinician = app.test_client()
    sign_in(clinician)
    session_url, _code = _schedule(clinician)
    token = csrf_from(clinician, session_url)
    state_url = session_url + "/state"
    asked = clinician.post(state_url, data={"csrf_token": token, "action": "end"})
    assert asked.status_code == 200  # one tap asks again before ending
    ended = clinician.post(state_url, data={"csrf_token": token, "action": "end", "confirm": "yes"})
    assert ended.status_code == 302
    again = clinician.post(state_url, data={"csrf_token": token, "action": "start"})
    assert again.status_code == 409
    assert "This session has ended" in again.get_data(as_text=True)
    group_id = session_url.rsplit("/", 1)[1]
    assert box.store.GroupSession.get_by_id(group_id).state == "ended"
