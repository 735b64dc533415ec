"""The broadcast message, the quick poll (with its counts) and the questionnaires asked for
survive a restart of the box: they live encrypted in the store, not in the process."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from flask import Flask

from appliance.box import Box
from appliance.media_loop import MediaLoop
from appliance.store import open_store
from tests.web.conftest import csrf_from, sign_in
from tests.web.test_portal import _join, _schedule
from web import create_app


def _restart(box: Box) -> tuple[Box, Flask]:
    """Close the store and open the box's data dir again with a fresh portal (new process
    state: nothing carried over in memory); the Flask secret on disk keeps cookies valid."""
    box.store.close()
    store = open_store(box.settings)
    again = Box(
        settings=box.settings, tls=None, db=store.db, media=MediaLoop(),  # type: ignore[arg-type]
        setup_code=box.setup_code, store=store,
    )
    return again, create_app(again, {"TESTING": True})


def test_message_poll_and_asked_survive_a_restart(
    app: Flask, box: Box, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clinician = app.test_client()
    sign_in(clinician)
    session_url, code = _schedule(clinician)
    ana, ben = _join(app, code, "Ana"), _join(app, code, "Ben")
    token = csrf_from(clinician, session_url)
    clinician.post(session_url + "/admit", data={"csrf_token": token, "action": "admit_all"})
    clinician.post(session_url + "/broadcast",
                   data={"csrf_token": token, "message": "Back in five minutes"})
    clinician.post(session_url + "/ask", data={"csrf_token": token, "instrument": "gad7"})
    clinician.post(session_url + "/poll", data={
        "csrf_token": token, "question": "How is your sleep?", "options": "Better\nSame\nWorse"})
    ana_token = csrf_from(ana, "/join")
    ben_token = csrf_from(ben, "/join")
    ana.post("/join/poll", data={"csrf_token": ana_token, "choice": "0"})
    ana.post("/join/poll", data={"csrf_token": ana_token, "choice": "1"})  # changed her mind
    ben.post("/join/poll", data={"csrf_token": ben_token, "choice": "1"})
    poll_id = ana.get("/join/state").get_json()["poll"]["id"]

    raw = sqlite3.connect(box.settings.database_path)
    dump = "\n".join(raw.iterdump())
    raw.close()
    for text in ("Back in five", "How is your sleep", "Better", "gad7"):
        assert text not in dump

    box2, app2 = _restart(box)
    try:
        for client in (clinician, ana, ben):
            client.application = app2  # the same browsers, the restarted box
        state = ana.get("/join/state").get_json()
        assert state["message"] == "Back in five minutes"
        assert [a["code"] for a in state["asked"]] == ["gad7"]
        assert state["poll"] == {"id": poll_id, "question": "How is your sleep?",
                                 "options": ["Better", "Same", "Worse"], "voted": 1}
        page = clinician.get(session_url).get_data(as_text=True)
        assert "(open, 2 answered)" in page
        assert "Better: 0" in page and "Same: 2" in page and "Worse: 0" in page
        # One answer each, still changeable after the restart (not counted twice).
        ben.post("/join/poll", data={"csrf_token": ben_token, "choice": "2"})
        page = clinician.get(session_url).get_data(as_text=True)
        assert "(open, 2 answered)" in page and "Same: 1" in page and "Worse: 1" in page

        clinician.post(session_url + "/poll", data={"csrf_token": token, "action": "close"})
        row = box2.store.SessionLive.get()
        assert row.poll["open"] is False and row.poll["votes"] == {}
        assert row.poll["counts"] == [0, 1, 1]
        assert ana.get("/join/state").get_json()["poll"] is None
        assert "(closed, 2 answered)" in clinician.get(session_url).get_data(as_text=True)
        # A new poll gets a new id, so the call page shows it afresh.
        clinician.post(session_url + "/poll", data={
            "csrf_token": token, "question": "Again?", "options": "Yes\nNo"})
        assert ana.get("/join/state").get_json()["poll"]["id"] == poll_id + 1
        clinician.post(session_url + "/broadcast", data={"csrf_token": token, "message": ""})
        assert ana.get("/join/state").get_json()["message"] == ""
    finally:
        box2.store.close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in ("Back in five", "How is your sleep", "Better"):
        assert text not in logged


def test_poll_needs_question_and_options(app: Flask, box: Box) -> None:
    clinician = app.test_client()
    sign_in(clinician)
    session_url, _ = _schedule(clinician)
    token = csrf_from(clinician, session_url)
    reply = clinician.post(session_url + "/poll", data={
        "csrf_token": token, "question": "", "options": "a\nb"})
    assert reply.status_code == 400
    assert "2 to 5 options" in reply.get_data(as_text=True)
    assert box.store.SessionLive.select().count() == 0
