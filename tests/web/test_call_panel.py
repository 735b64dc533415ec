"""The call view's facilitator panel, through Flask's test client: its state (who waits, the
message, the poll with counts, the split, what was asked), JSON answers from the session's
controls, and a patient admitted while answering a questionnaire led on to the call."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from appliance.box import Box
from tests.web.conftest import csrf_from, sign_in
from tests.web.test_portal import _join, _schedule

JSON = {"Accept": "application/json"}


def _post(client: FlaskClient, url: str, token: str, **form: str) -> Any:
    return client.post(url, data=form, headers={**JSON, "X-CSRF-Token": token})


def _reads(box: Box) -> int:
    log = box.store.AuditLog
    return log.select().where(log.action == "record.read").count()


def test_panel_state_and_json_controls(app: Flask, box: Box) -> None:
    doc = app.test_client()
    sign_in(doc)
    session_url, code = _schedule(doc)
    token = csrf_from(doc, session_url)
    panel = session_url + "/panel"
    reads = _reads(box)
    state = doc.get(panel, headers=JSON).get_json()
    assert state == {
        "state": "scheduled",
        "waiting": [],
        "message": "",
        "poll": None,
        "rooms": 0,
        "asked": [],
    }
    assert _reads(box) == reads  # nobody's name was shown: nothing to audit

    _join(app, code, "Ana")
    _join(app, code, "Ben")
    state = doc.get(panel, headers=JSON).get_json()
    assert [w["name"] for w in state["waiting"]] == ["Ana", "Ben"]
    assert _reads(box) == reads + 1

    assert _post(doc, session_url + "/ask", token, instrument="phq9").get_json() == {"ok": True}
    assert _post(doc, session_url + "/broadcast", token, message="Hello").status_code == 200
    reply = _post(doc, session_url + "/poll", token, question="Week?", options="only one")
    assert reply.status_code == 400
    assert reply.get_json()["message"] == (
        "A poll needs a question and 2 to 5 options, one per line."
    )
    assert (
        _post(
            doc, session_url + "/poll", token, question="Week?", options="Good\nTiring"
        ).status_code
        == 200
    )
    for person in state["waiting"]:
        assert (
            _post(
                doc, session_url + "/admit", token, action="admit", attendance=person["id"]
            ).status_code
            == 200
        )
    assert _post(doc, session_url + "/breakout", token, rooms="2").status_code == 200
    state = doc.get(panel, headers=JSON).get_json()
    assert state["waiting"] == [] and state["asked"] == ["phq9"]
    assert state["message"] == "Hello" and state["rooms"] == 2
    assert state["poll"] == {
        "id": 1,
        "question": "Week?",
        "options": ["Good", "Tiring"],
        "counts": [0, 0],
        "open": True,
    }
    # The session page's plain forms still lead back to it.
    reply = doc.post(session_url + "/broadcast", data={"csrf_token": token, "message": ""})
    assert reply.status_code == 302 and reply.headers["Location"] == session_url


def test_admitted_while_answering_is_led_to_the_call(app: Flask, box: Box) -> None:
    doc = app.test_client()
    sign_in(doc)
    session_url, code = _schedule(doc)
    token = csrf_from(doc, session_url)
    _post(doc, session_url + "/ask", token, instrument="phq9")
    ana = _join(app, code, "Ana")
    form = ana.get("/join/questionnaire/phq9").get_data(as_text=True)
    assert 'id="admitted-note"' in form and 'data-state-url="/join/state"' in form
    assert "questionnaire_watch.js" in form
    waiting = doc.get(session_url + "/panel", headers=JSON).get_json()["waiting"]
    _post(doc, session_url + "/admit", token, action="admit", attendance=waiting[0]["id"])
    assert ana.get("/join/state").get_json()["status"] == "admitted"
    answers = {f"q{n}": "0" for n in range(1, 10)}
    done = ana.post(
        "/join/questionnaire/phq9",
        data={"csrf_token": csrf_from(ana, "/join/questionnaire/phq9"), **answers},
    )
    page = done.get_data(as_text=True)
    assert done.status_code == 200
    assert "The facilitator has let you into the call." in page
    assert 'href="/call">Go to the call</a>' in page
    # The clinician's own form of the questionnaire watches nobody.
    patient_id = box.store.Attendance.get().patient_id
    clinician_form = doc.get(f"/patients/{patient_id}/questionnaire/gad7").get_data(as_text=True)
    assert "admitted-note" not in clinician_form
